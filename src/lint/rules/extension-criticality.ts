import { OID } from '../../x509/oids.ts';
import type { LintRule } from '../types.ts';
import { ALL_PROFILES } from '../types.ts';

/** Extensions whose criticality RFC 5280 fixes with a MUST. */
const REQUIRED: [oid: string, name: string, critical: boolean, section: string][] = [
  [OID.authorityKeyIdentifier, 'authorityKeyIdentifier', false, '§4.2.1.1'],
  [OID.subjectKeyIdentifier, 'subjectKeyIdentifier', false, '§4.2.1.2'],
  [OID.nameConstraints, 'nameConstraints', true, '§4.2.1.10'],
  [OID.policyConstraints, 'policyConstraints', true, '§4.2.1.11'],
  [OID.inhibitAnyPolicy, 'inhibitAnyPolicy', true, '§4.2.1.14'],
  [OID.authorityInfoAccess, 'authorityInfoAccess', false, '§4.2.2.1'],
  [OID.crlDistributionPoints, 'cRLDistributionPoints', false, '§4.2.1.13 (SHOULD)'],
  [OID.freshestCrl, 'freshestCRL', false, '§4.2.1.15'],
];

/** RFC 5280 §4.2.1.1, §4.2.1.2, §4.2.1.10, §4.2.1.11, §4.2.1.13, §4.2.1.14, §4.2.1.15, §4.2.2.1. */
export const rule: LintRule = {
  id: 'extension-criticality',
  citation: 'RFC 5280 §4.2.1.1, §4.2.1.2, §4.2.1.10, §4.2.1.11, §4.2.1.13, §4.2.1.14, §4.2.1.15, §4.2.2.1',
  severity: 'error',
  profiles: ALL_PROFILES,
  check(certificate) {
    const problems: string[] = [];
    for (const [oid, name, critical, section] of REQUIRED) {
      const extension = certificate.extension(oid);
      if (extension && extension.critical !== critical) {
        problems.push(`${name} must be ${critical ? 'critical' : 'non-critical'} (RFC 5280 ${section})`);
      }
    }
    return problems;
  },
};
