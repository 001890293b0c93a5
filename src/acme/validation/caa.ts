import { acmeError } from '../errors.ts';

/**
 * CAA (RFC 8659), checked when a challenge has passed: the relevant record set is the first
 * non-empty one climbing from the name towards the root (§3); it authorises this CA when one of
 * its `issue` properties (`issuewild` for a wildcard, when the set has any, §4.3) names one of
 * the issuer domain names of `acme.caaIdentities` and its parameters allow this request:
 * `accounturi` the account's URL and `validationmethods` the challenge type (RFC 8657 §3, §4).
 * A set with no property of the kind authorises every CA; an unknown property marked critical
 * authorises none (§4.1). A failed lookup refuses (§3: the CA must know the set).
 */

export interface CaaRecord {
  /** The flags octet; 128 is the issuer critical flag. */
  critical: number;
  tag: string;
  value: string;
}

export interface CaaLookup {
  /** The CAA records at exactly `name` (no climbing); [] when there are none. */
  caa(name: string): Promise<CaaRecord[]>;
}

export interface CaaCheck {
  /** The name validated (for a wildcard, the name below `*.`). */
  name: string;
  wildcard: boolean;
  accountUri: string;
  /** The challenge type that passed (RFC 8657 §4 validationmethods). */
  method: string;
}

const KNOWN_TAGS = new Set(['issue', 'issuewild', 'iodef', 'contactemail', 'contactphone']);

export interface CaaValue {
  /** Lowercase; '' for the value ";" (no CA may issue). */
  issuer: string;
  parameters: Map<string, string>;
}

/** RFC 8659 §4.2: issuer-domain-name *(";" parameter), with optional whitespace. */
export function parseCaaValue(value: string): CaaValue | undefined {
  const [issuerPart = '', ...rest] = value.split(';');
  const issuer = issuerPart.trim().toLowerCase();
  if (
    issuer !== '' &&
    !/^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*$/.test(issuer)
  ) {
    return undefined;
  }
  const parameters = new Map<string, string>();
  for (const part of rest) {
    const text = part.trim();
    if (text === '') continue;
    const eq = text.indexOf('=');
    if (eq <= 0) return undefined;
    const tag = text.slice(0, eq).trim();
    const paramValue = text.slice(eq + 1).trim();
    if (!/^[A-Za-z0-9]+$/.test(tag) || /\s/.test(paramValue)) return undefined;
    parameters.set(tag.toLowerCase(), paramValue);
  }
  return { issuer, parameters };
}

/** The relevant record set (RFC 8659 §3): climbing from `name`, the first non-empty one. */
export async function relevantCaaSet(
  lookup: CaaLookup,
  name: string,
): Promise<{ at: string; records: CaaRecord[] }> {
  const labels = name.replace(/\.$/, '').split('.');
  for (let i = 0; i < labels.length; i++) {
    const at = labels.slice(i).join('.');
    const records = await lookup.caa(at);
    if (records.length > 0) return { at, records };
  }
  return { at: '', records: [] };
}

function allows(record: CaaValue, identities: Set<string>, check: CaaCheck): boolean {
  if (!identities.has(record.issuer)) return false;
  const accountUri = record.parameters.get('accounturi');
  if (accountUri !== undefined && accountUri !== check.accountUri) return false;
  const methods = record.parameters.get('validationmethods');
  if (methods !== undefined && !methods.split(',').includes(check.method)) return false;
  return true;
}

/** Resolves when CAA lets this CA issue for the name; throws `caa` (or `dns`) otherwise. */
export async function checkCaa(lookup: CaaLookup, identities: string[], check: CaaCheck): Promise<void> {
  const { at, records } = await relevantCaaSet(lookup, check.name);
  if (records.length === 0) return;
  const where = `the CAA records of ${at}`;
  const critical = records.find((r) => r.critical & 128 && !KNOWN_TAGS.has(r.tag.toLowerCase()));
  if (critical) {
    throw acmeError('caa', `${where} carry the unknown critical property ${critical.tag} (RFC 8659 §4.1)`);
  }
  const wildcardSet = records.filter((r) => r.tag.toLowerCase() === 'issuewild');
  const applicable =
    check.wildcard && wildcardSet.length > 0
      ? wildcardSet
      : records.filter((r) => r.tag.toLowerCase() === 'issue');
  if (applicable.length === 0) return;
  const names = new Set(identities.map((i) => i.toLowerCase()));
  // An unparsable value authorises no one (RFC 8659 §4.2); the others are read one by one.
  const granted = applicable.some((r) => {
    const value = parseCaaValue(r.value);
    return value !== undefined && allows(value, names, check);
  });
  if (!granted) {
    throw acmeError(
      'caa',
      `${where} do not authorize this CA (${identities.join(', ')}) to issue for ${check.wildcard ? `*.${check.name}` : check.name} with account ${check.accountUri} by ${check.method} (RFC 8659, RFC 8657)`,
    );
  }
}
