/** Every requested subject alternative name, each checked by the rule of its type. */

import type { San, SanType } from '../../x509/types.ts';
import { printable } from '../text.ts';
import type { Policy } from '../types.ts';
import { checkDnsSan } from './dns.ts';
import { checkEmailSan } from './email.ts';
import { checkIpSan } from './ip.ts';
import { type CheckedSan, type Decide, MAX_EXAMINED_SANS, type Refuse, type SanResult } from './shared.ts';
import { checkUriSan } from './uri.ts';

export const TYPE_NAME: Record<SanType, string> = {
  dns: 'DNS name',
  ip: 'IP address',
  email: 'email address',
  uri: 'URI',
};
// biome-ignore lint/complexity/noExcessiveLinesPerFunction: one pass over the requested names, deciding and recording each in the same loop
export function checkSans(
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
export function isSanType(type: unknown): type is SanType {
  return type === 'dns' || type === 'ip' || type === 'email' || type === 'uri';
}
export function checkOneSan(policy: Policy, type: unknown, value: string): SanResult {
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
