import { isInternalName } from '../dns.ts';
import { subjectAltNames } from '../names.ts';
import type { LintRule } from '../types.ts';
import { LEAF_ONLY } from '../types.ts';

/**
 * BR §4.2.2 and §7.1.2.7.12: no internal names (single labels, .local, .internal, reserved TLDs)
 * unless the policy is a private one that says so (`allowInternalNames`).
 */
export const rule: LintRule = {
  id: 'dns-name-not-internal',
  citation: 'CA/B Forum BR §4.2.2, §7.1.2.7.12; RFC 6761; RFC 6762; RFC 8375',
  severity: 'error',
  profiles: LEAF_ONLY,
  check(certificate, { allowInternalNames }) {
    if (allowInternalNames) return [];
    return subjectAltNames(certificate)
      .names.filter((name) => name.type === 'dns' && isInternalName(name.value))
      .map((name) => `dNSName ${JSON.stringify(name.value)} is an internal name`);
  },
};
