import { dnsNameProblem } from '../dns.ts';
import { subjectAltNames } from '../names.ts';
import type { LintRule } from '../types.ts';
import { ALL_PROFILES } from '../types.ts';

const LOCAL_PART = /^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*$/;

/**
 * RFC 5280 §4.2.1.6: an rfc822Name is a Mailbox of RFC 5321 §4.1.2 (local-part "@" domain),
 * without display name or angle brackets. Quoted local parts are refused.
 */
export const rule: LintRule = {
  id: 'san-email-syntax',
  citation: 'RFC 5280 §4.2.1.6; RFC 5321 §4.1.2',
  severity: 'error',
  profiles: ALL_PROFILES,
  check(certificate) {
    const problems: string[] = [];
    for (const name of subjectAltNames(certificate).names) {
      if (name.type !== 'email') continue;
      const at = name.value.lastIndexOf('@');
      const local = name.value.slice(0, at);
      const domain = name.value.slice(at + 1);
      const domainProblem = at > 0 ? dnsNameProblem(domain) : 'is missing';
      if (at <= 0 || !LOCAL_PART.test(local) || local.length > 64 || domainProblem || domain.includes('*')) {
        problems.push(`rfc822Name ${JSON.stringify(name.value)} is not a mailbox`);
      }
    }
    return problems;
  },
};
