import { OID } from '../../x509/oids.ts';
import { decodeBasicConstraints } from '../extensions.ts';
import type { LintRule } from '../types.ts';
import { CA_PROFILES } from '../types.ts';

/** RFC 5280 §4.2.1.9 and BR §7.1.2.10.4: a CA certificate has basicConstraints, critical, cA TRUE. */
export const rule: LintRule = {
  id: 'ca-basic-constraints',
  citation: 'RFC 5280 §4.2.1.9; CA/B Forum BR §7.1.2.10.4',
  severity: 'error',
  profiles: CA_PROFILES,
  check(certificate) {
    const extension = certificate.extension(OID.basicConstraints);
    if (!extension) return 'basicConstraints is missing from a CA certificate';
    const problems: string[] = [];
    if (!extension.critical) problems.push('basicConstraints is not critical');
    if (!certificate.decode(extension, decodeBasicConstraints).ca)
      problems.push('basicConstraints cA is not TRUE');
    return problems;
  },
};
