/**
 * Evaluating a request against a policy: a pure function of the policy, the parsed CSR, the
 * request's overrides and who asked. Nothing is allowed unless a rule allows it; a deny rule
 * wins over an allow rule; every problem is reported (not just the first), each with a stable
 * code, the field, the value, the rule that refused it and a sentence. Alongside, `decisions`
 * explains how each requested name and each other choice was decided, for the dry run.
 */

import { AsnConvert } from '@peculiar/asn1-schema';
import { BasicConstraints, KeyUsage, KeyUsageFlags } from '@peculiar/asn1-x509';
import { formatDuration, parseDuration } from '../lib/duration.ts';
import type {
  CertificateTemplate,
  KeyUsageName,
  ParsedCsr,
  RawExtension,
  San,
  SanType,
  SubjectAttribute,
  SubjectAttributeType,
} from '../x509/types.ts';
import { isBoundToPolicy, REQUESTER_NOT_BOUND } from './binding.ts';
import type { PolicyViolationCode } from './codes.ts';
import { checkDnsName, isStrictlyBelow, isWithin } from './dns.ts';
import { checkEmail } from './email.ts';
import { cidrContains, comparable, formatCidr, formatIp, parseIp } from './ip.ts';
import { ANY_EXTENDED_KEY_USAGE, EXTENSION_OIDS, ekuName, ekuOid } from './oids.ts';
import { checkSubjectValue } from './subject.ts';
import { printable } from './text.ts';
import type {
  Decision,
  Evaluation,
  Policy,
  Requester,
  RequestOverrides,
  UriRule,
  Violation,
} from './types.ts';
import { checkUri, matchPath } from './uri.ts';

export interface EvaluateInput {
  policy: Policy;
  csr: ParsedCsr;
  overrides?: RequestOverrides;
  requester: Requester;
}

/**
 * Names beyond this many are not examined one by one (the request is refused for its count
 * anyway); it bounds the work a hostile request can cause. sans.max is at most 1000.
 */
const MAX_EXAMINED_SANS = 1000;
const MAX_VALUE_LENGTH = 256;
const CA_REQUESTED =
  'The CSR asks for a CA certificate (basicConstraints CA:TRUE); policies issue end-entity certificates.';

/** The order attributes take in the certificate's subject, most significant first. */
const SUBJECT_ORDER: SubjectAttributeType[] = [
  'DC',
  'C',
  'ST',
  'L',
  'street',
  'postalCode',
  'O',
  'OU',
  'serialNumber',
  'CN',
  'emailAddress',
];

/** Key usage bits each key type can honour. */
const KEY_USAGE_FOR_KEY: { pattern: RegExp; allowed: KeyUsageName[]; cite: string }[] = [
  {
    pattern: /^ecdsa-/,
    allowed: ['digitalSignature', 'nonRepudiation', 'keyAgreement', 'keyCertSign', 'cRLSign'],
    cite: 'RFC 5480 §3',
  },
  {
    pattern: /^ed25519$/,
    allowed: ['digitalSignature', 'nonRepudiation', 'keyCertSign', 'cRLSign'],
    cite: 'RFC 8410 §5',
  },
  {
    pattern: /^rsa-/,
    allowed: [
      'digitalSignature',
      'nonRepudiation',
      'keyEncipherment',
      'dataEncipherment',
      'keyCertSign',
      'cRLSign',
    ],
    cite: 'RFC 3279 §2.3.1',
  },
];

interface CheckedSan {
  san: San;
  /** How duplicates and the CN are compared: IPv4-mapped IPv6 as IPv4. */
  key: string;
}

export function evaluate({ policy, csr, overrides, requester }: EvaluateInput): Evaluation {
  const violations: Violation[] = [];
  const decisions: Decision[] = [];
  const refuse = (code: PolicyViolationCode, field: string, value: string, rule: string, message: string) =>
    violations.push({ code, field, value: shorten(value), rule, message });
  const decide = (decision: Decision) => decisions.push({ ...decision, value: shorten(decision.value) });

  // Who asked.
  const bound = isBoundToPolicy(requester.policies, policy.name);
  decide({
    field: 'requester',
    kind: 'requester',
    value: requester.id,
    outcome: bound ? 'allowed' : 'refused',
    rule: 'requester.policies',
    reason: bound
      ? `the credential '${printable(requester.id)}' is bound to the policy '${policy.name}'`
      : `the credential '${printable(requester.id)}' is not bound to the policy '${policy.name}'`,
  });
  if (!bound) {
    refuse(
      REQUESTER_NOT_BOUND,
      'requester',
      requester.id,
      'requester.policies',
      `The credential '${printable(requester.id)}' may not use the policy '${policy.name}'.`,
    );
  }

  // The key.
  if (!policy.keyAlgorithms.includes(csr.keyAlgorithm)) {
    refuse(
      'policy.key_algorithm_not_allowed',
      'keyAlgorithm',
      csr.keyAlgorithm,
      'key_algorithms',
      `The key is ${printable(csr.keyAlgorithm)}; this policy accepts ${policy.keyAlgorithms.join(', ')}.`,
    );
  }
  const keyUsage = keyUsageFor(policy, csr.keyAlgorithm, decide);
  if (keyUsage.length === 0) {
    refuse(
      'policy.key_usage_incompatible',
      'keyAlgorithm',
      csr.keyAlgorithm,
      'key_usage',
      `None of the policy's key usages (${policy.keyUsage.join(', ')}) is valid for a ${printable(csr.keyAlgorithm)} key.`,
    );
  }

  // Validity.
  let validitySeconds = policy.validity.defaultSeconds;
  if (overrides?.validity !== undefined) {
    const requested = String(overrides.validity);
    const parsed = parseDuration(requested);
    if (!policy.overrides.validity) {
      refuse(
        'policy.override_not_allowed',
        'overrides.validity',
        requested,
        'overrides.validity',
        `This policy does not let a request choose its validity; it issues for ${formatDuration(validitySeconds)}.`,
      );
    } else if (!parsed.ok) {
      refuse(
        'policy.validity_invalid',
        'overrides.validity',
        requested,
        'builtin.duration_syntax',
        `${parsed.reason}.`,
      );
    } else if (parsed.seconds > policy.validity.maxSeconds) {
      refuse(
        'policy.validity_too_long',
        'overrides.validity',
        requested,
        'validity.max',
        `The requested validity ${requested} is longer than this policy's maximum, ${formatDuration(policy.validity.maxSeconds)}.`,
      );
    } else if (parsed.seconds < policy.validity.minSeconds) {
      refuse(
        'policy.validity_too_short',
        'overrides.validity',
        requested,
        'validity.min',
        `The requested validity ${requested} is shorter than this policy's minimum, ${formatDuration(policy.validity.minSeconds)}.`,
      );
    } else {
      validitySeconds = parsed.seconds;
    }
  }
  decide({
    field: 'validity',
    kind: 'validity',
    value: formatDuration(validitySeconds),
    outcome: 'allowed',
    rule:
      overrides?.validity !== undefined && validitySeconds !== policy.validity.defaultSeconds
        ? 'overrides.validity'
        : 'validity.default',
    reason: `the certificate is valid for ${formatDuration(validitySeconds)}, backdated by ${formatDuration(policy.validity.backdateSeconds)}`,
  });

  // SANs: from the CSR, or from the request body where the policy lets it override them.
  let requested: readonly San[] = Array.isArray(csr.sans) ? csr.sans : [];
  let sansField = 'sans';
  if (overrides?.sans !== undefined) {
    if (!policy.overrides.sans) {
      refuse(
        'policy.override_not_allowed',
        'overrides.sans',
        `${Array.isArray(overrides.sans) ? overrides.sans.length : 0} SANs`,
        'overrides.sans',
        'This policy does not let a request replace the SANs of its CSR.',
      );
    } else {
      requested = Array.isArray(overrides.sans) ? overrides.sans : [];
      sansField = 'overrides.sans';
    }
  }
  const checked = checkSans(policy, requested, sansField, refuse, decide);

  // Subject, once the SANs are known (the CN must be one of them).
  const subject = checkSubject(policy, csr.subject ?? [], checked, refuse, decide);

  // Requested extensions.
  const passthroughExtensions = checkExtensions(policy, csr, refuse, decide);

  if (violations.length > 0) {
    return { allowed: false, policy: policy.name, requester: requester.id, violations, decisions };
  }
  const template: CertificateTemplate = {
    policy: policy.name,
    issuer: policy.issuer,
    subject,
    sans: checked.map(({ san }) => san),
    publicKey: csr.publicKey,
    keyAlgorithm: csr.keyAlgorithm,
    validitySeconds,
    backdateSeconds: policy.validity.backdateSeconds,
    keyUsage,
    extendedKeyUsage: [...policy.extendedKeyUsage],
    policyOids: [...policy.certificatePolicies],
    ocspMustStaple: policy.ocspMustStaple,
    passthroughExtensions,
  };
  return { allowed: true, policy: policy.name, requester: requester.id, template, decisions };
}

/**
 * The names alone against the policy's SAN rules, as `evaluate` judges them: for an ACME newOrder
 * (RFC 8555 §7.4), which names identifiers before there is a CSR. `field` is `sans[i]`, the
 * index of the name in `sans`.
 */
export function evaluateNames(
  policy: Policy,
  sans: readonly San[],
): { violations: Violation[]; decisions: Decision[] } {
  const violations: Violation[] = [];
  const decisions: Decision[] = [];
  checkSans(
    policy,
    sans,
    'sans',
    (code, field, value, rule, message) =>
      violations.push({ code, field, value: shorten(value), rule, message }),
    (decision) => decisions.push({ ...decision, value: shorten(decision.value) }),
  );
  return { violations, decisions };
}

type Refuse = (
  code: PolicyViolationCode,
  field: string,
  value: string,
  rule: string,
  message: string,
) => void;
type Decide = (decision: Decision) => void;

function keyUsageFor(policy: Policy, keyAlgorithm: string, decide: Decide): KeyUsageName[] {
  const family = KEY_USAGE_FOR_KEY.find(({ pattern }) => pattern.test(keyAlgorithm));
  if (!family) return [...policy.keyUsage];
  const kept: KeyUsageName[] = [];
  for (const usage of policy.keyUsage) {
    if (family.allowed.includes(usage)) {
      kept.push(usage);
      continue;
    }
    decide({
      field: 'keyUsage',
      kind: 'key',
      value: usage,
      outcome: 'dropped',
      rule: 'key_usage',
      reason: `${usage} is left out: ${keyAlgorithm} keys cannot be used for it (${family.cite})`,
    });
  }
  return kept;
}

const TYPE_NAME: Record<SanType, string> = {
  dns: 'DNS name',
  ip: 'IP address',
  email: 'email address',
  uri: 'URI',
};

function checkSans(
  policy: Policy,
  requested: readonly San[],
  field: string,
  refuse: Refuse,
  decide: Decide,
): CheckedSan[] {
  const { sans } = policy;
  if (requested.length < sans.min) {
    refuse(
      'policy.no_sans',
      field,
      String(requested.length),
      'sans.min',
      requested.length === 0
        ? 'The request names no subject alternative names; this policy needs at least one.'
        : `The request has ${requested.length} SANs; this policy needs at least ${sans.min}.`,
    );
  }
  if (requested.length > sans.max) {
    refuse(
      'policy.too_many_sans',
      field,
      String(requested.length),
      'sans.max',
      `The request has ${requested.length} SANs; this policy allows at most ${sans.max}.`,
    );
  }
  const perType: Record<string, number> = {};
  for (const san of requested.slice(0, MAX_EXAMINED_SANS)) perType[san?.type] = (perType[san?.type] ?? 0) + 1;
  for (const type of ['dns', 'ip', 'email', 'uri'] as const) {
    const max = sans[type]?.max;
    const n = perType[type] ?? 0;
    if (max !== undefined && n > max) {
      refuse(
        'policy.too_many_sans',
        field,
        String(n),
        `sans.${type}.max`,
        `The request has ${n} ${TYPE_NAME[type]}s; this policy allows at most ${max}.`,
      );
    }
  }

  const out: CheckedSan[] = [];
  const seen = new Map<string, number>();
  for (const [i, san] of requested.entries()) {
    const sanField = `${field}[${i}]`;
    if (i >= MAX_EXAMINED_SANS) {
      decide({
        field: `${field}[${i}..]`,
        kind: 'dns',
        value: `${requested.length - i} more`,
        outcome: 'refused',
        rule: 'sans.max',
        reason: `names after the first ${MAX_EXAMINED_SANS} were not examined`,
      });
      break;
    }
    const type = san?.type;
    const value = typeof san?.value === 'string' ? san.value : String(san?.value);
    const result = checkOneSan(policy, type, value);
    if (!result.ok) {
      refuse(result.code, sanField, value, result.rule, result.message);
      decide({
        field: sanField,
        kind: isSanType(type) ? type : 'dns',
        value,
        outcome: 'refused',
        rule: result.rule,
        reason: result.message,
      });
      continue;
    }
    const earlier = seen.get(result.key);
    if (earlier !== undefined) {
      const message = `${printable(value)} repeats ${field}[${earlier}]; each name is requested once.`;
      refuse('policy.san_duplicate', sanField, value, 'builtin.no_duplicate_sans', message);
      decide({
        field: sanField,
        kind: type,
        value,
        outcome: 'refused',
        rule: 'builtin.no_duplicate_sans',
        reason: message,
      });
      continue;
    }
    seen.set(result.key, i);
    decide({
      field: sanField,
      kind: type,
      value,
      outcome: 'allowed',
      rule: result.rule,
      reason: result.reason,
    });
    out.push({ san: { type, value: result.value }, key: result.key });
  }
  return out;
}

function isSanType(type: unknown): type is SanType {
  return type === 'dns' || type === 'ip' || type === 'email' || type === 'uri';
}

type SanResult =
  | { ok: true; value: string; key: string; rule: string; reason: string }
  | { ok: false; code: PolicyViolationCode; rule: string; message: string };

function checkOneSan(policy: Policy, type: unknown, value: string): SanResult {
  const shown = printable(value);
  if (!isSanType(type)) {
    return {
      ok: false,
      code: 'policy.san_not_allowed',
      rule: 'builtin.san_types',
      message: `'${printable(String(type))}' is not a SAN type Signet issues (dns, ip, email, uri).`,
    };
  }
  if (!policy.sans[type]) {
    return {
      ok: false,
      code: 'policy.san_not_allowed',
      rule: 'sans',
      message: `This policy allows no ${TYPE_NAME[type]}s, so '${shown}' cannot be included.`,
    };
  }
  switch (type) {
    case 'dns':
      return checkDnsSan(policy, value);
    case 'ip':
      return checkIpSan(policy, value);
    case 'email':
      return checkEmailSan(policy, value);
    case 'uri':
      return checkUriSan(policy, value);
  }
}

function checkDnsSan(policy: Policy, value: string): SanResult {
  const rules = policy.sans.dns!;
  const checked = checkDnsName(value);
  if (!checked.ok)
    return { ok: false, code: checked.code, rule: 'builtin.dns_syntax', message: `${checked.reason}.` };
  const { name, wildcard } = checked;
  const shown = checked.unicode === name ? `'${name}'` : `'${name}' (${checked.unicode})`;
  if (wildcard && !rules.wildcards) {
    return {
      ok: false,
      code: 'policy.wildcard_not_allowed',
      rule: 'sans.dns.wildcards',
      message: `${shown} is a wildcard, and this policy issues no wildcard names.`,
    };
  }
  if (checked.labels.length > rules.maxLabels) {
    return {
      ok: false,
      code: 'policy.dns_too_many_labels',
      rule: 'sans.dns.max_labels',
      message: `${shown} has ${checked.labels.length} labels; this policy allows at most ${rules.maxLabels}.`,
    };
  }
  // A wildcard *.B covers every name one label below B: it is denied if any name it covers is.
  const base = wildcard ? name.slice(2) : name;
  for (const [j, denied] of rules.deny.entries()) {
    const hit = wildcard ? isWithin(base, denied) || parentOf(denied) === base : isWithin(name, denied);
    if (hit) {
      return {
        ok: false,
        code: 'policy.san_denied',
        rule: `sans.dns.deny[${j}]`,
        message:
          wildcard && !isWithin(base, denied)
            ? `${shown} would cover ${denied}, which this policy denies.`
            : `${shown} is ${name === denied ? '' : 'below '}${denied}, which this policy denies.`,
      };
    }
  }
  const exact = rules.allow.exact.indexOf(name);
  if (exact >= 0) {
    return ok(name, `dns:${name}`, `sans.dns.allow.exact[${exact}]`, `${shown} is listed exactly`);
  }
  for (const [k, parent] of rules.allow.subdomainsOf.entries()) {
    if (wildcard ? isWithin(base, parent) : isStrictlyBelow(name, parent)) {
      return ok(name, `dns:${name}`, `sans.dns.allow.subdomains_of[${k}]`, `${shown} is below ${parent}`);
    }
  }
  const allowed = [
    ...rules.allow.exact,
    ...rules.allow.subdomainsOf.map((parent) => `names below ${parent}`),
  ];
  return {
    ok: false,
    code: 'policy.dns_not_allowed',
    rule: 'sans.dns.allow',
    message: `${shown} is not allowed by this policy${allowed.length ? `, which allows ${summarise(allowed)}` : ', which lists no DNS names'}.`,
  };
}

function parentOf(name: string): string {
  const dot = name.indexOf('.');
  return dot < 0 ? '' : name.slice(dot + 1);
}

function checkIpSan(policy: Policy, value: string): SanResult {
  const rules = policy.sans.ip!;
  const parsed = parseIp(value);
  if (!parsed.ok) {
    return {
      ok: false,
      code: 'policy.ip_invalid',
      rule: 'builtin.ip_syntax',
      message: `'${printable(value)}' is not an IP address: ${parsed.reason}.`,
    };
  }
  const text = formatIp(parsed.address);
  const key = `ip:${formatIp(comparable(parsed.address))}`;
  for (const [j, block] of rules.deny.entries()) {
    if (cidrContains(block, parsed.address)) {
      return {
        ok: false,
        code: 'policy.san_denied',
        rule: `sans.ip.deny[${j}]`,
        message: `${text} is in ${formatCidr(block)}, which this policy denies.`,
      };
    }
  }
  for (const [k, block] of rules.allow.entries()) {
    if (cidrContains(block, parsed.address))
      return ok(text, key, `sans.ip.allow[${k}]`, `${text} is in ${formatCidr(block)}`);
  }
  const allowed = rules.allow.map(formatCidr);
  return {
    ok: false,
    code: 'policy.ip_not_allowed',
    rule: 'sans.ip.allow',
    message: `${text} is not in any block this policy allows${allowed.length ? ` (${summarise(allowed)})` : ''}.`,
  };
}

function checkEmailSan(policy: Policy, value: string): SanResult {
  const rules = policy.sans.email!;
  const checked = checkEmail(value);
  if (!checked.ok) {
    return {
      ok: false,
      code: 'policy.email_invalid',
      rule: 'builtin.email_syntax',
      message: `${checked.reason}.`,
    };
  }
  const { address, domain } = checked;
  const deniedExact = rules.deny.exact.indexOf(address);
  const deniedDomain = rules.deny.domains.indexOf(domain);
  if (deniedExact >= 0 || deniedDomain >= 0) {
    return {
      ok: false,
      code: 'policy.san_denied',
      rule:
        deniedExact >= 0
          ? `sans.email.deny.exact[${deniedExact}]`
          : `sans.email.deny.domains[${deniedDomain}]`,
      message:
        deniedExact >= 0
          ? `${address} is denied by this policy.`
          : `Addresses at ${domain} are denied by this policy.`,
    };
  }
  const exact = rules.allow.exact.indexOf(address);
  if (exact >= 0)
    return ok(
      address,
      `email:${address}`,
      `sans.email.allow.exact[${exact}]`,
      `${address} is listed exactly`,
    );
  const byDomain = rules.allow.domains.indexOf(domain);
  if (byDomain >= 0) {
    return ok(
      address,
      `email:${address}`,
      `sans.email.allow.domains[${byDomain}]`,
      `${address} is at ${domain}`,
    );
  }
  const allowed = [...rules.allow.exact, ...rules.allow.domains.map((d) => `addresses at ${d}`)];
  return {
    ok: false,
    code: 'policy.email_not_allowed',
    rule: 'sans.email.allow',
    message: `${address} is not allowed by this policy${allowed.length ? `, which allows ${summarise(allowed)}` : ''}.`,
  };
}

function uriRuleMatches(
  rule: UriRule,
  uri: { scheme: string; host: string; port?: number; segments: string[] },
) {
  return (
    rule.scheme === uri.scheme &&
    rule.host === uri.host &&
    rule.port === uri.port &&
    matchPath(rule.path, uri.segments)
  );
}

function describeUriRule(rule: UriRule): string {
  return `${rule.scheme}://${rule.host}${rule.port === undefined ? '' : `:${rule.port}`}${rule.path.text}`;
}

function checkUriSan(policy: Policy, value: string): SanResult {
  const rules = policy.sans.uri!;
  const checked = checkUri(value);
  if (!checked.ok)
    return {
      ok: false,
      code: 'policy.uri_invalid',
      rule: 'builtin.uri_syntax',
      message: `${checked.reason}.`,
    };
  for (const [j, rule] of rules.deny.entries()) {
    if (uriRuleMatches(rule, checked)) {
      return {
        ok: false,
        code: 'policy.san_denied',
        rule: `sans.uri.deny[${j}]`,
        message: `${checked.uri} matches ${describeUriRule(rule)}, which this policy denies.`,
      };
    }
  }
  for (const [k, rule] of rules.allow.entries()) {
    if (uriRuleMatches(rule, checked)) {
      return ok(
        checked.uri,
        `uri:${checked.uri}`,
        `sans.uri.allow[${k}]`,
        `${checked.uri} matches ${describeUriRule(rule)}`,
      );
    }
  }
  const allowed = rules.allow.map(describeUriRule);
  return {
    ok: false,
    code: 'policy.uri_not_allowed',
    rule: 'sans.uri.allow',
    message: `${checked.uri} matches no URI rule of this policy${allowed.length ? ` (${summarise(allowed)})` : ''}.`,
  };
}

function ok(value: string, key: string, rule: string, reason: string): SanResult {
  return { ok: true, value, key, rule, reason };
}

function checkSubject(
  policy: Policy,
  requested: readonly SubjectAttribute[],
  sans: CheckedSan[],
  refuse: Refuse,
  decide: Decide,
): SubjectAttribute[] {
  const rules = policy.subject.attributes;
  const kept: SubjectAttribute[] = [];
  const occurrences: Partial<Record<SubjectAttributeType, number>> = {};
  for (const attribute of requested) {
    const { type } = attribute;
    const value = typeof attribute.value === 'string' ? attribute.value : String(attribute.value);
    const field = `subject.${printable(String(type))}`;
    const rule = rules[type];
    const n = (occurrences[type] ?? 0) + 1;
    occurrences[type] = n;
    const problems: [PolicyViolationCode, string, string][] = [];
    if (!rule) {
      problems.push([
        'policy.subject_attribute_not_allowed',
        'subject.attributes',
        `This policy allows no ${printable(String(type))} in the subject.`,
      ]);
    } else {
      const invalid = checkSubjectValue(type, value);
      if (invalid)
        problems.push(['policy.subject_attribute_invalid', 'builtin.subject_syntax', `${type}: ${invalid}.`]);
      if (n > 1 && !rule.multiple) {
        problems.push([
          'policy.subject_attribute_repeated',
          `subject.attributes.${type}.multiple`,
          `${type} appears more than once; this policy allows one.`,
        ]);
      }
      if (rule.fixed !== undefined && value !== rule.fixed) {
        problems.push([
          'policy.subject_attribute_mismatch',
          `subject.attributes.${type}.fixed`,
          `${type} must be '${printable(rule.fixed)}' under this policy, not '${printable(value)}'.`,
        ]);
      }
      // An invalid value (possibly very long) is never run through the policy's pattern.
      if (rule.pattern && !invalid && !rule.pattern.test(value)) {
        problems.push([
          'policy.subject_attribute_mismatch',
          `subject.attributes.${type}.pattern`,
          `${type} '${printable(value)}' does not match the pattern ${rule.pattern.source.slice(4, -2)}.`,
        ]);
      }
    }
    if (problems.length === 0 && type === 'CN') {
      const match = findInSans(value, sans);
      if (match === undefined) {
        if (policy.subject.cnNotInSans === 'drop') {
          decide({
            field,
            kind: 'subject',
            value,
            outcome: 'dropped',
            rule: 'subject.cn_not_in_sans',
            reason: `the CN '${printable(value)}' is not one of the SANs, so it is left out of the subject`,
          });
          continue;
        }
        problems.push([
          'policy.cn_not_in_sans',
          'subject.cn_not_in_sans',
          `The CN '${printable(value)}' is not one of the requested SANs; a CN must repeat one of them.`,
        ]);
      } else {
        decide({
          field,
          kind: 'subject',
          value,
          outcome: 'allowed',
          rule: 'subject.attributes.CN',
          reason: `the CN is the SAN ${match}`,
        });
        kept.push({ type, value: match });
        continue;
      }
    }
    for (const [code, ruleName, message] of problems) refuse(code, field, value, ruleName, message);
    decide({
      field,
      kind: 'subject',
      value,
      outcome: problems.length ? 'refused' : 'allowed',
      rule: problems[0]?.[1] ?? `subject.attributes.${type}`,
      reason: problems[0]?.[2] ?? `${type} is allowed`,
    });
    if (problems.length === 0) kept.push({ type, value });
  }
  for (const [type, rule] of Object.entries(rules) as [
    SubjectAttributeType,
    (typeof rules)[SubjectAttributeType],
  ][]) {
    if (!rule) continue;
    const present = kept.some((attribute) => attribute.type === type) || occurrences[type];
    if (rule.fixed !== undefined && !present) {
      kept.push({ type, value: rule.fixed });
      decide({
        field: `subject.${type}`,
        kind: 'subject',
        value: rule.fixed,
        outcome: 'allowed',
        rule: `subject.attributes.${type}.fixed`,
        reason: `the policy sets ${type} to '${printable(rule.fixed)}'`,
      });
    } else if (rule.required && !present) {
      refuse(
        'policy.subject_attribute_required',
        `subject.${type}`,
        '',
        `subject.attributes.${type}.required`,
        `This policy requires a ${type} in the subject.`,
      );
    }
  }
  return kept
    .map((attribute, index) => ({ attribute, index }))
    .sort(
      (a, b) =>
        SUBJECT_ORDER.indexOf(a.attribute.type) - SUBJECT_ORDER.indexOf(b.attribute.type) ||
        a.index - b.index,
    )
    .map(({ attribute }) => attribute);
}

/** The SAN value the CN names, compared as each SAN type compares (DNS case-insensitively...). */
function findInSans(cn: string, sans: CheckedSan[]): string | undefined {
  const keys: string[] = [];
  const dns = checkDnsName(cn);
  if (dns.ok) keys.push(`dns:${dns.name}`);
  const ip = parseIp(cn);
  if (ip.ok) keys.push(`ip:${formatIp(comparable(ip.address))}`);
  const email = checkEmail(cn);
  if (email.ok) keys.push(`email:${email.address}`);
  const uri = checkUri(cn);
  if (uri.ok) keys.push(`uri:${uri.uri}`);
  return sans.find(({ key }) => keys.includes(key))?.san.value;
}

function checkExtensions(policy: Policy, csr: ParsedCsr, refuse: Refuse, decide: Decide): RawExtension[] {
  const passthrough: RawExtension[] = [];
  const seen = new Set<string>();
  const extensions = Array.isArray(csr.extensions) ? csr.extensions : [];
  for (const extension of extensions) {
    const { oid } = extension;
    const field = `extensions[${oid}]`;
    if (seen.has(oid)) {
      refuse(
        'policy.extension_not_allowed',
        field,
        oid,
        'builtin.unique_extensions',
        `The extension ${oid} is requested twice (RFC 5280 §4.2).`,
      );
      continue;
    }
    seen.add(oid);
    const handled = handledExtension(oid, extension, csr.requestedCa === true);
    if (handled) {
      if (handled.caRequested) {
        refuse('policy.ca_requested', field, oid, 'builtin.no_ca', handled.caRequested);
        decide({
          field,
          kind: 'extension',
          value: oid,
          outcome: 'refused',
          rule: 'builtin.no_ca',
          reason: handled.caRequested,
        });
      } else {
        decide({
          field,
          kind: 'extension',
          value: oid,
          outcome: 'ignored',
          rule: handled.rule,
          reason: handled.reason,
        });
      }
      continue;
    }
    const index = policy.extensions.passthrough.indexOf(oid);
    if (index >= 0) {
      passthrough.push(extension);
      decide({
        field,
        kind: 'extension',
        value: oid,
        outcome: 'allowed',
        rule: `extensions.passthrough[${index}]`,
        reason: `${oid} is copied into the certificate as requested`,
      });
    } else if (policy.extensions.others === 'ignore') {
      decide({
        field,
        kind: 'extension',
        value: oid,
        outcome: 'ignored',
        rule: 'extensions.others',
        reason: `${oid} is not passed through, so the certificate leaves it out`,
      });
    } else {
      const message = `The CSR requests the extension ${oid}${extension.critical ? ' (critical)' : ''}, which this policy does not pass through.`;
      refuse('policy.extension_not_allowed', field, oid, 'extensions.passthrough', message);
      decide({
        field,
        kind: 'extension',
        value: oid,
        outcome: 'refused',
        rule: 'extensions.passthrough',
        reason: message,
      });
    }
  }

  if (csr.requestedCa === true && !seen.has(EXTENSION_OIDS.basicConstraints)) {
    refuse('policy.ca_requested', 'extensions[2.5.29.19]', 'CA:TRUE', 'builtin.no_ca', CA_REQUESTED);
  }
  const allowedEku = new Set(policy.extendedKeyUsage.map(ekuOid));
  for (const oid of csr.requestedEku ?? []) {
    const name = ekuName(oid);
    if (oid === ANY_EXTENDED_KEY_USAGE) {
      refuse(
        'policy.eku_not_allowed',
        'extensions[2.5.29.37]',
        'anyExtendedKeyUsage',
        'builtin.no_any_eku',
        'The CSR asks for anyExtendedKeyUsage, which would let the certificate be used for any purpose.',
      );
    } else if (!allowedEku.has(oid)) {
      refuse(
        'policy.eku_not_allowed',
        'extensions[2.5.29.37]',
        name,
        'extended_key_usage',
        `The CSR asks for the key purpose ${name}; this policy issues for ${policy.extendedKeyUsage.join(', ')}.`,
      );
    }
  }
  return passthrough;
}

/** Extensions the CA writes itself: requesting them is fine, except asking to be a CA. */
function handledExtension(
  oid: string,
  extension: RawExtension,
  requestedCa: boolean,
): { rule: string; reason: string; caRequested?: string } | undefined {
  switch (oid) {
    case EXTENSION_OIDS.subjectAltName:
      return { rule: 'sans', reason: 'the SANs are decided name by name above' };
    case EXTENSION_OIDS.subjectKeyIdentifier:
      return { rule: 'builtin.ca_extensions', reason: 'the CA computes the subject key identifier itself' };
    case EXTENSION_OIDS.tlsFeature:
      return {
        rule: 'ocsp_must_staple',
        reason: 'whether the certificate requires OCSP stapling comes from the policy',
      };
    case EXTENSION_OIDS.extendedKeyUsage:
      return { rule: 'extended_key_usage', reason: "the certificate's key purposes come from the policy" };
    case EXTENSION_OIDS.basicConstraints:
      return requestedCa || extensionAsksForCa(extension)
        ? {
            rule: 'builtin.no_ca',
            reason: '',
            caRequested: CA_REQUESTED,
          }
        : { rule: 'builtin.ca_extensions', reason: 'the CA writes basicConstraints itself (CA:FALSE)' };
    case EXTENSION_OIDS.keyUsage: {
      const flags = keyUsageFlags(extension.value);
      if (flags === undefined) {
        return {
          rule: 'builtin.no_ca',
          reason: '',
          caRequested:
            'The CSR requests a key usage that does not parse; it is refused rather than guessed at.',
        };
      }
      if (flags & (KeyUsageFlags.keyCertSign | KeyUsageFlags.cRLSign)) {
        return {
          rule: 'builtin.no_ca',
          reason: '',
          caRequested:
            'The CSR asks for keyCertSign or cRLSign, which only CA certificates carry (RFC 5280 §4.2.1.3).',
        };
      }
      return { rule: 'key_usage', reason: "the certificate's key usage comes from the policy" };
    }
    default:
      return undefined;
  }
}

function keyUsageFlags(value: Uint8Array): number | undefined {
  try {
    return AsnConvert.parse(value, KeyUsage).toNumber();
  } catch {
    return undefined;
  }
}

// RFC 5280 §4.2.1.9. The parsed CSR reports cA as requestedCa; the extension is read here too,
// so that no shape of request can slip a CA:TRUE past, and one that does not parse is refused.
function extensionAsksForCa(extension: RawExtension): boolean {
  try {
    return AsnConvert.parse(extension.value, BasicConstraints).cA;
  } catch {
    return true;
  }
}

function summarise(items: string[]): string {
  const shown = items.slice(0, 5);
  const more = items.length - shown.length;
  return `${shown.join(', ')}${more > 0 ? ` and ${more} more` : ''}`;
}

function shorten(value: string): string {
  const text = printable(value);
  return text.length > MAX_VALUE_LENGTH ? `${text.slice(0, MAX_VALUE_LENGTH)}...` : text;
}
