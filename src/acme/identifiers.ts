/**
 * ACME identifiers: DNS names (RFC 8555 §9.7.7) and IP addresses (RFC 8738). An order names
 * them as the client wrote them; they are normalised once here (lower case, IDNA A-labels, IPs in
 * their canonical text) so that orders, authorisations and CSRs compare by value.
 */
import { checkDnsName } from '../policy/dns.ts';
import { canonicalIp, parseIp } from '../x509/names.ts';
import { type AcmeIdentifier, type AcmeSubproblem, acmeError } from './errors.ts';

/** What an authorisation is for: a wildcard order's `*.example.com` is `example.com`, wildcard. */
export interface AuthorizationTarget extends AcmeIdentifier {
  wildcard: boolean;
}

/** Identifiers one order may name; a policy's own sans.max may be lower. */
export const MAX_ORDER_IDENTIFIERS = 100;

/**
 * Reads newOrder's `identifiers`. Duplicates collapse into one; unsupported types are
 * `unsupportedIdentifier`, names that are not names are `rejectedIdentifier`, each with a
 * subproblem naming the identifier (RFC 8555 §6.7.1).
 */
export function parseOrderIdentifiers(raw: unknown): AcmeIdentifier[] {
  if (!Array.isArray(raw) || raw.length === 0) {
    throw acmeError('malformed', 'newOrder needs "identifiers": a non-empty array of {type, value}');
  }
  if (raw.length > MAX_ORDER_IDENTIFIERS) {
    throw acmeError('rejectedIdentifier', `an order may name at most ${MAX_ORDER_IDENTIFIERS} identifiers`);
  }
  const identifiers: AcmeIdentifier[] = [];
  const seen = new Set<string>();
  const problems: AcmeSubproblem[] = [];
  for (const item of raw) {
    const { type, value } = (item ?? {}) as { type?: unknown; value?: unknown };
    if (typeof type !== 'string' || typeof value !== 'string' || value.length > 1024) {
      throw acmeError('malformed', 'each identifier is an object {type, value} of two strings');
    }
    if (type !== 'dns' && type !== 'ip') {
      problems.push({
        type: 'unsupportedIdentifier',
        detail: `identifier type "${type.slice(0, 32)}" is not supported; this server issues for dns and ip`,
        identifier: { type: 'dns', value: value.slice(0, 255) },
      });
      continue;
    }
    const normalised = normaliseIdentifier({ type, value });
    if (!normalised.ok) {
      problems.push({
        type: 'rejectedIdentifier',
        detail: normalised.reason,
        identifier: { type, value: value.slice(0, 255) },
      });
      continue;
    }
    const key = `${type}:${normalised.value}`;
    if (seen.has(key)) continue;
    seen.add(key);
    identifiers.push({ type, value: normalised.value });
  }
  if (problems.length > 0) {
    const only = problems.every((p) => p.type === 'unsupportedIdentifier');
    throw acmeError(
      only ? 'unsupportedIdentifier' : 'rejectedIdentifier',
      `the order names ${problems.length} identifier${problems.length === 1 ? '' : 's'} this server cannot issue for`,
      { subproblems: problems },
    );
  }
  return identifiers;
}

export function normaliseIdentifier(
  identifier: AcmeIdentifier,
): { ok: true; value: string } | { ok: false; reason: string } {
  if (identifier.type === 'ip') {
    // RFC 8738 §3: the textual form of the address; no zone, no brackets.
    const canonical = /^[0-9A-Fa-f:.]+$/.test(identifier.value) ? canonicalIp(identifier.value) : undefined;
    if (!canonical) return { ok: false, reason: `"${identifier.value.slice(0, 64)}" is not an IP address` };
    return { ok: true, value: canonical };
  }
  const checked = checkDnsName(identifier.value);
  if (!checked.ok) return { ok: false, reason: checked.reason };
  return { ok: true, value: checked.name };
}

/** The authorisation an order identifier needs (RFC 8555 §7.1.4 for wildcards). */
export function authorizationTarget(identifier: AcmeIdentifier): AuthorizationTarget {
  if (identifier.type === 'dns' && identifier.value.startsWith('*.')) {
    return { type: 'dns', value: identifier.value.slice(2), wildcard: true };
  }
  return { ...identifier, wildcard: false };
}

export const identifierKey = (identifier: AcmeIdentifier): string => `${identifier.type}:${identifier.value}`;

/**
 * The reverse-mapping name of an IP address (RFC 8738 §6: the TLS SNI of tls-alpn-01 for an IP
 * identifier): `10.2.0.192.in-addr.arpa`, or the nibbles of an IPv6 address under ip6.arpa.
 */
export function reverseName(ip: string): string {
  const bytes = parseIp(ip);
  if (!bytes) throw new RangeError(`not an IP address: ${ip}`);
  if (bytes.length === 4) return `${[...bytes].reverse().join('.')}.in-addr.arpa`;
  const nibbles = [...bytes].flatMap((b) => [b >> 4, b & 0xf]).map((n) => n.toString(16));
  return `${nibbles.reverse().join('.')}.ip6.arpa`;
}
