/** A requested IP address against the policy's IP rules. */

import { cidrContains, comparable, formatCidr, formatIp, parseIp } from '../ip.ts';
import { printable } from '../text.ts';
import type { Policy } from '../types.ts';
import { ok, type SanResult, summarise } from './shared.ts';

export function checkIpSan(policy: Policy, value: string): SanResult {
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
