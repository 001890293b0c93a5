import { checkDnsName, isStrictlyBelow, isWithin } from '../dns.ts';
import type { Policy } from '../types.ts';
import { ok, type SanResult, summarise } from './shared.ts';

export function checkDnsSan(policy: Policy, value: string): SanResult {
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
export function parentOf(name: string): string {
  const dot = name.indexOf('.');
  return dot < 0 ? '' : name.slice(dot + 1);
}
