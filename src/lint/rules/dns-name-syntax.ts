import { dnsNameProblem } from '../dns.ts';
import { subjectAltNames } from '../names.ts';
import type { LintRule } from '../types.ts';
import { ALL_PROFILES } from '../types.ts';

/**
 * RFC 5280 §4.2.1.6 (preferred name syntax of RFC 1034 §3.5 as amended by RFC 1123 §2.1, no
 * trailing dot), RFC 5890 §2.3 (valid A-labels) and BR §7.1.2.7.12 (a wildcard only as the whole
 * leftmost label).
 */
export const rule: LintRule = {
  id: 'dns-name-syntax',
  citation: 'RFC 5280 §4.2.1.6; RFC 1034 §3.5; RFC 5890 §2.3; CA/B Forum BR §7.1.2.7.12',
  severity: 'error',
  profiles: ALL_PROFILES,
  check(certificate) {
    const problems: string[] = [];
    for (const name of subjectAltNames(certificate).names) {
      if (name.type !== 'dns') continue;
      const problem = dnsNameProblem(name.value);
      if (problem) problems.push(`dNSName ${JSON.stringify(name.value)} ${problem}`);
    }
    return problems;
  },
};
