import { OID } from '../../x509/oids.ts';
import { decodeBasicConstraints } from '../extensions.ts';
import type { LintRule } from '../types.ts';
import { END_ENTITIES } from '../types.ts';

/**
 * RFC 5280 §4.2.1.9, BR §7.1.2.7.8: a subscriber certificate is not a CA (cA FALSE, no
 * pathLenConstraint). We always write the extension, critical, so no verifier can take it for
 * a v1-style CA.
 */
export const rule: LintRule = {
  id: 'basic-constraints-leaf',
  citation: 'RFC 5280 §4.2.1.9; CA/B Forum BR §7.1.2.7.8',
  severity: 'error',
  profiles: END_ENTITIES,
  check(certificate) {
    const extension = certificate.extension(OID.basicConstraints);
    if (!extension) return 'basicConstraints is missing';
    const problems: string[] = [];
    if (!extension.critical) problems.push('basicConstraints is not critical');
    const value = certificate.decode(extension, decodeBasicConstraints);
    if (value.ca) problems.push('basicConstraints says cA TRUE in a leaf');
    if (value.pathLen !== undefined) problems.push('pathLenConstraint in a leaf');
    return problems;
  },
};
