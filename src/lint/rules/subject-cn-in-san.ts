import { canonicalIp } from '../../x509/names.ts';
import { commonNames, subjectAltNames } from '../names.ts';
import type { LintRule } from '../types.ts';
import { LEAF_ONLY } from '../types.ts';

/**
 * BR §7.1.4.3 (§7.1.2.7.2): a subject commonName, if present, MUST be one of the values in
 * subjectAltName (a dNSName, or an IP address in its text form). At most one CN.
 */
export const rule: LintRule = {
  id: 'subject-cn-in-san',
  citation: 'CA/B Forum BR §7.1.4.3, §7.1.2.7.2',
  severity: 'error',
  profiles: LEAF_ONLY,
  check(certificate) {
    const cns = commonNames(certificate);
    if (cns.length === 0) return [];
    const problems: string[] = [];
    if (cns.length > 1) problems.push('more than one commonName');
    const names = subjectAltNames(certificate).names;
    const dns = new Set(names.filter((name) => name.type === 'dns').map((name) => name.value.toLowerCase()));
    const ips = new Set(names.filter((name) => name.type === 'ip').map((name) => canonicalIp(name.value)));
    for (const cn of cns) {
      const ip = canonicalIp(cn);
      if (ip ? !ips.has(ip) : !dns.has(cn.toLowerCase()))
        problems.push(`commonName ${JSON.stringify(cn)} is not a SAN`);
    }
    return problems;
  },
};
