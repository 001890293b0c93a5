import type { Policy, UriRule } from '../types.ts';
import { checkUri, matchPath } from '../uri.ts';
import { ok, type SanResult, summarise } from './shared.ts';

export function uriRuleMatches(
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
export function describeUriRule(rule: UriRule): string {
  return `${rule.scheme}://${rule.host}${rule.port === undefined ? '' : `:${rule.port}`}${rule.path.text}`;
}
export function checkUriSan(policy: Policy, value: string): SanResult {
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
