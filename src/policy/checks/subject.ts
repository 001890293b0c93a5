import type { SubjectAttribute, SubjectAttributeType } from '../../x509/types.ts';
import type { PolicyViolationCode } from '../codes.ts';
import { checkDnsName } from '../dns.ts';
import { checkEmail } from '../email.ts';
import { comparable, formatIp, parseIp } from '../ip.ts';
import { checkSubjectValue } from '../subject.ts';
import { printable } from '../text.ts';
import type { Policy } from '../types.ts';
import { checkUri } from '../uri.ts';
import type { CheckedSan, Decide, Refuse } from './shared.ts';

/** The order attributes take in the certificate's subject, most significant first. */
export const SUBJECT_ORDER: SubjectAttributeType[] = [
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
// biome-ignore lint/complexity/noExcessiveLinesPerFunction: a flat list of independent checks, one per subject attribute rule
export function checkSubject(
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
export function findInSans(cn: string, sans: CheckedSan[]): string | undefined {
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
