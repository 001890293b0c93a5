/**
 * From a document that has the right shape (schema.ts) to a Policy whose every value means
 * something: names are valid names, CIDR blocks are blocks, durations are ordered, patterns
 * compile. Each problem names the key path it is about, so the loader can point at the line.
 */

import { formatDuration, parseDuration } from '../lib/duration.ts';
import type { KeyUsageName, SubjectAttributeType } from '../x509/types.ts';
import { checkDnsName } from './dns.ts';
import { checkEmail } from './email.ts';
import { type Cidr, formatCidr, parseCidr } from './ip.ts';
import { ANY_EXTENDED_KEY_USAGE, CA_CONTROLLED_EXTENSIONS, EKU_OIDS, ekuName, isOid } from './oids.ts';
import type { PolicyDocument } from './schema.ts';
import { checkSubjectValue } from './subject.ts';
import type { Policy, SubjectAttributeRule, UriRule } from './types.ts';
import { isSpiffeSegment, isSpiffeTrustDomain, parsePathPattern } from './uri.ts';

export type KeyPath = (string | number)[];
export interface Problem {
  path: KeyPath;
  message: string;
}

/** The six partition key names (DESIGN.md "Key and algorithm names"); other RSA sizes as rsa-<bits>. */
export const KEY_ALGORITHM_NAMES = [
  'ecdsa-p256',
  'ecdsa-p384',
  'rsa-2048',
  'rsa-3072',
  'rsa-4096',
  'ed25519',
];

const SLUG = /^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$/;
const MAX_BACKDATE_SECONDS = 86_400;
const MAX_DNS_LABELS = 127;

// biome-ignore lint/complexity/noExcessiveLinesPerFunction: a flat list of field compilations, one per policy key, in the order of the file
export function compilePolicy(
  document: PolicyDocument,
  { name, file, lines }: { name: string; file: string; lines: Record<string, number> },
): { ok: true; policy: Policy } | { ok: false; problems: Problem[] } {
  const problems: Problem[] = [];
  const problem = (path: KeyPath, message: string): undefined => {
    problems.push({ path, message });
  };
  /** Records a problem and contributes nothing to a flatMap. */
  const skip = (path: KeyPath, message: string): [] => {
    problem(path, message);
    return [];
  };
  const duplicates = (path: KeyPath, values: readonly string[]) => {
    const seen = new Set<string>();
    for (const [i, value] of values.entries()) {
      if (seen.has(value)) problem([...path, i], `'${value}' is listed twice`);
      seen.add(value);
    }
  };

  if (!SLUG.test(document.issuer)) {
    problem(['issuer'], `'${document.issuer}' is not an issuer id (lower-case letters, digits and hyphens)`);
  }

  // Validity. The schema has already refused strings that are not durations.
  const seconds = (text: string) => {
    const parsed = parseDuration(text);
    return parsed.ok ? parsed.seconds : Number.NaN;
  };
  const validity = {
    defaultSeconds: seconds(document.validity.default),
    minSeconds: seconds(document.validity.min),
    maxSeconds: seconds(document.validity.max),
    backdateSeconds: seconds(document.validity.backdate),
  };
  if (validity.minSeconds < 1)
    problem(['validity', 'min'], 'the minimum validity must be at least one second');
  if (validity.minSeconds > validity.maxSeconds) {
    problem(['validity', 'min'], `min ${document.validity.min} is longer than max ${document.validity.max}`);
  }
  if (validity.defaultSeconds > validity.maxSeconds) {
    problem(
      ['validity', 'default'],
      `default ${document.validity.default} is longer than max ${document.validity.max}`,
    );
  } else if (validity.defaultSeconds < validity.minSeconds) {
    problem(
      ['validity', 'default'],
      `default ${document.validity.default} is shorter than min ${document.validity.min}`,
    );
  }
  if (validity.backdateSeconds > MAX_BACKDATE_SECONDS) {
    problem(
      ['validity', 'backdate'],
      `backdating by more than ${formatDuration(MAX_BACKDATE_SECONDS)} hides when a certificate was issued`,
    );
  }

  for (const [i, algorithm] of document.key_algorithms.entries()) {
    const rsa = /^rsa-(\d{1,5})$/.exec(algorithm);
    const bits = rsa ? Number(rsa[1]) : 0;
    if (
      !KEY_ALGORITHM_NAMES.includes(algorithm) &&
      !(rsa && bits >= 2048 && bits <= 16_384 && bits % 8 === 0)
    ) {
      problem(
        ['key_algorithms', i],
        `'${algorithm}' is not a key algorithm; use ${KEY_ALGORITHM_NAMES.join(', ')} or rsa-<bits> (2048 or more)`,
      );
    }
  }
  duplicates(['key_algorithms'], document.key_algorithms);

  // Subject.
  const attributes: Partial<Record<SubjectAttributeType, SubjectAttributeRule>> = {};
  for (const [type, rule] of Object.entries(document.subject.attributes) as [
    SubjectAttributeType,
    NonNullable<PolicyDocument['subject']['attributes'][SubjectAttributeType]>,
  ][]) {
    if (!rule) continue;
    const path = ['subject', 'attributes', type];
    let pattern: RegExp | undefined;
    if (rule.pattern !== undefined) {
      try {
        // Compiled alone first, so that a pattern such as `a)|(.*` cannot break out of the group.
        new RegExp(rule.pattern, 'u');
        // Patterns match the whole value: an unanchored pattern is a classic way to allow too much.
        pattern = new RegExp(`^(?:${rule.pattern})$`, 'u');
      } catch (error) {
        problem([...path, 'pattern'], `the pattern does not compile: ${(error as Error).message}`);
      }
    }
    if (rule.fixed !== undefined) {
      if (type === 'CN') {
        problem([...path, 'fixed'], 'CN cannot be fixed: it must be one of the requested SANs');
      }
      const reason = checkSubjectValue(type, rule.fixed);
      if (reason) problem([...path, 'fixed'], reason);
      if (pattern && !pattern.test(rule.fixed))
        problem([...path, 'fixed'], 'the fixed value does not match the pattern');
      if (rule.multiple) problem([...path, 'multiple'], 'a fixed attribute appears once');
    }
    if (type === 'CN' && rule.required && document.subject.cn_not_in_sans === 'drop') {
      problem([...path, 'required'], 'a required CN cannot also be dropped (subject.cn_not_in_sans: drop)');
    }
    attributes[type] = {
      required: rule.required,
      multiple: rule.multiple,
      ...(rule.fixed === undefined ? {} : { fixed: rule.fixed }),
      ...(pattern ? { pattern } : {}),
    };
  }

  // SANs.
  const sans = document.sans;
  const sanTypes = (['dns', 'ip', 'email', 'uri'] as const).filter((type) => sans[type] !== undefined);
  if (sans.min > sans.max) problem(['sans', 'min'], `min ${sans.min} is greater than max ${sans.max}`);
  if (sans.min > 0 && sanTypes.length === 0) {
    problem(['sans'], `sans.min is ${sans.min} but no SAN type (dns, ip, email, uri) is allowed`);
  }
  for (const type of sanTypes) {
    const max = sans[type]?.max;
    if (max !== undefined && max > sans.max) {
      problem(['sans', type, 'max'], `${max} is greater than sans.max (${sans.max})`);
    }
  }

  let dns: Policy['sans']['dns'];
  if (sans.dns) {
    const rules = sans.dns;
    const maxLabels = rules.max_labels ?? MAX_DNS_LABELS;
    const name = (path: KeyPath, text: string, { wildcard }: { wildcard: boolean }): string | undefined => {
      const checked = checkDnsName(text);
      if (!checked.ok) return problem(path, checked.reason);
      if (checked.wildcard && !wildcard)
        return problem(path, `'${text}' is a wildcard, which is not allowed here`);
      if (checked.wildcard && !rules.wildcards) {
        return problem(path, `'${text}' is a wildcard but sans.dns.wildcards is false`);
      }
      if (checked.labels.length > maxLabels) {
        return problem(
          path,
          `'${text}' has more labels than max_labels (${maxLabels}), so it could never be issued`,
        );
      }
      return checked.name;
    };
    const exact = rules.allow.exact.map((text, i) =>
      name(['sans', 'dns', 'allow', 'exact', i], text, { wildcard: true }),
    );
    const subdomainsOf = rules.allow.subdomains_of.map((text, i) => {
      const path = ['sans', 'dns', 'allow', 'subdomains_of', i];
      const normalised = name(path, text, { wildcard: false });
      if (normalised && !normalised.includes('.')) {
        problem(path, `'${text}' is a top-level domain: allowing every name under it is never what is meant`);
      }
      if (normalised && normalised.split('.').length >= maxLabels) {
        problem(path, `no name below '${text}' fits within max_labels (${maxLabels})`);
      }
      return normalised;
    });
    const deny = rules.deny.map((text, i) => name(['sans', 'dns', 'deny', i], text, { wildcard: false }));
    duplicates(
      ['sans', 'dns', 'allow', 'exact'],
      rules.allow.exact.map((n) => n.toLowerCase()),
    );
    duplicates(
      ['sans', 'dns', 'allow', 'subdomains_of'],
      rules.allow.subdomains_of.map((n) => n.toLowerCase()),
    );
    duplicates(
      ['sans', 'dns', 'deny'],
      rules.deny.map((n) => n.toLowerCase()),
    );
    dns = {
      allow: { exact: exact.filter(isString), subdomainsOf: subdomainsOf.filter(isString) },
      deny: deny.filter(isString),
      wildcards: rules.wildcards,
      maxLabels,
      ...(rules.max === undefined ? {} : { max: rules.max }),
    };
  }

  let ip: Policy['sans']['ip'];
  if (sans.ip) {
    const blocks = (list: string[], key: 'allow' | 'deny'): Cidr[] =>
      list.flatMap((text, i) => {
        const path = ['sans', 'ip', key, i];
        const parsed = parseCidr(text);
        if (!parsed.ok) return skip(path, `'${text}' is not a CIDR block: ${parsed.reason}`);
        if (key === 'allow' && parsed.cidr.prefix === 0) {
          return skip(path, `'${text}' allows every ${parsed.cidr.version === 4 ? 'IPv4' : 'IPv6'} address`);
        }
        return [parsed.cidr];
      });
    const allow = blocks(sans.ip.allow, 'allow');
    const deny = blocks(sans.ip.deny, 'deny');
    duplicates(['sans', 'ip', 'allow'], allow.map(formatCidr));
    duplicates(['sans', 'ip', 'deny'], deny.map(formatCidr));
    ip = { allow, deny, ...(sans.ip.max === undefined ? {} : { max: sans.ip.max }) };
  }

  let email: Policy['sans']['email'];
  if (sans.email) {
    const list = (key: 'allow' | 'deny') => {
      const rules = sans.email![key];
      const exact = rules.exact.flatMap((text, i) => {
        const checked = checkEmail(text);
        if (!checked.ok) return skip(['sans', 'email', key, 'exact', i], checked.reason);
        return [checked.address];
      });
      const domains = rules.domains.flatMap((text, i) => {
        const checked = checkDnsName(text);
        if (!checked.ok || checked.wildcard) {
          const reason = checked.ok ? `'${text}' is a wildcard; list the domain itself` : checked.reason;
          return skip(['sans', 'email', key, 'domains', i], reason);
        }
        return [checked.name];
      });
      duplicates(['sans', 'email', key, 'exact'], exact);
      duplicates(['sans', 'email', key, 'domains'], domains);
      return { exact, domains };
    };
    email = {
      allow: list('allow'),
      deny: list('deny'),
      ...(sans.email.max === undefined ? {} : { max: sans.email.max }),
    };
  }

  let uri: Policy['sans']['uri'];
  if (sans.uri) {
    const rules = (key: 'allow' | 'deny'): UriRule[] =>
      sans.uri![key].flatMap((rule, i) => {
        const path = ['sans', 'uri', key, i];
        const before = problems.length;
        if (!/^[a-z][a-z0-9+.-]*$/.test(rule.scheme)) {
          problem([...path, 'scheme'], `'${rule.scheme}' is not a URI scheme in lower case (RFC 3986 §3.1)`);
        }
        const spiffe = rule.scheme === 'spiffe';
        let host = rule.host;
        if (spiffe) {
          if (!isSpiffeTrustDomain(rule.host)) {
            problem([...path, 'host'], `'${rule.host}' is not a SPIFFE trust domain (SPIFFE-ID §2.1)`);
          }
          if (rule.port !== undefined) problem([...path, 'port'], 'a SPIFFE ID has no port (SPIFFE-ID §2.1)');
        } else {
          const checked = checkDnsName(rule.host);
          if (!checked.ok) problem([...path, 'host'], checked.reason);
          else if (checked.wildcard)
            problem([...path, 'host'], 'the host is matched exactly and cannot be a wildcard');
          else host = checked.name;
        }
        const pattern = parsePathPattern(rule.path);
        if (!pattern.ok) {
          problem([...path, 'path'], pattern.reason);
        } else if (spiffe) {
          const bad = pattern.pattern.segments.find((s) => s !== '*' && s !== '**' && !isSpiffeSegment(s));
          if (bad !== undefined)
            problem([...path, 'path'], `'${bad}' is not a valid SPIFFE ID path segment (SPIFFE-ID §2.2)`);
        }
        if (problems.length > before || !pattern.ok) return [];
        return [
          {
            scheme: rule.scheme,
            host,
            ...(rule.port === undefined ? {} : { port: rule.port }),
            path: pattern.pattern,
          },
        ];
      });
    uri = {
      allow: rules('allow'),
      deny: rules('deny'),
      ...(sans.uri.max === undefined ? {} : { max: sans.uri.max }),
    };
  }

  // Extensions and usages.
  for (const [i, oid] of document.extensions.passthrough.entries()) {
    const path = ['extensions', 'passthrough', i];
    if (!isOid(oid)) problem(path, `'${oid}' is not a dotted object identifier`);
    else if (CA_CONTROLLED_EXTENSIONS[oid]) {
      problem(
        path,
        `${CA_CONTROLLED_EXTENSIONS[oid]} (${oid}) is set by the CA and cannot be passed through`,
      );
    }
  }
  duplicates(['extensions', 'passthrough'], document.extensions.passthrough);

  for (const [i, usage] of document.key_usage.entries()) {
    if (usage === 'keyCertSign' || usage === 'cRLSign') {
      problem(['key_usage', i], `${usage} makes a CA certificate; policies issue end-entity certificates`);
    }
  }
  duplicates(['key_usage'], document.key_usage);

  const extendedKeyUsage = document.extended_key_usage.map((value, i) => {
    const path = ['extended_key_usage', i];
    if (value === 'anyExtendedKeyUsage' || value === ANY_EXTENDED_KEY_USAGE) {
      problem(path, 'anyExtendedKeyUsage lets a certificate be used for anything; list the purposes');
    } else if (!(value in EKU_OIDS) && !isOid(value)) {
      problem(
        path,
        `'${value}' is neither a key purpose (${Object.keys(EKU_OIDS).join(', ')}) nor a dotted OID`,
      );
    }
    return ekuName(value);
  });
  duplicates(['extended_key_usage'], extendedKeyUsage);

  for (const [i, oid] of document.certificate_policies.entries()) {
    if (!isOid(oid)) problem(['certificate_policies', i], `'${oid}' is not a dotted object identifier`);
  }
  duplicates(['certificate_policies'], document.certificate_policies);

  if (problems.length > 0) return { ok: false, problems };
  return {
    ok: true,
    policy: {
      name,
      description: document.description,
      issuer: document.issuer,
      validity,
      keyAlgorithms: [...document.key_algorithms],
      subject: { attributes, cnNotInSans: document.subject.cn_not_in_sans },
      sans: {
        min: sans.min,
        max: sans.max,
        ...(dns ? { dns } : {}),
        ...(ip ? { ip } : {}),
        ...(email ? { email } : {}),
        ...(uri ? { uri } : {}),
      },
      extensions: { passthrough: [...document.extensions.passthrough], others: document.extensions.others },
      keyUsage: [...document.key_usage] as KeyUsageName[],
      extendedKeyUsage,
      certificatePolicies: [...document.certificate_policies],
      ocspMustStaple: document.ocsp_must_staple,
      overrides: { ...document.overrides },
      source: { file, lines },
      document,
    },
  };
}

function isString(value: string | undefined): value is string {
  return typeof value === 'string';
}
