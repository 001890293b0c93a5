import { checkEmail } from '../email.ts';
import type { Policy } from '../types.ts';
import { ok, type SanResult, summarise } from './shared.ts';

export function checkEmailSan(policy: Policy, value: string): SanResult {
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
