import { OID } from '../../x509/oids.ts';
import { decodeBasicConstraints } from '../extensions.ts';
import type { LintRule } from '../types.ts';

/**
 * RFC 5280 §4.2.1.9 and §6.1.4 (l)-(m): an issuer with pathLenConstraint n may have at most n
 * CAs below it, so a subordinate CA needs an issuer allowing at least one and gets a smaller
 * constraint than its issuer's.
 */
export const rule: LintRule = {
  id: 'ca-path-length',
  citation: 'RFC 5280 §4.2.1.9, §6.1.4 (l)-(m)',
  severity: 'error',
  profiles: ['intermediate'],
  check(certificate, { issuer }) {
    if (issuer.pathLenConstraint === undefined) return [];
    if (issuer.pathLenConstraint === 0)
      return `issuer ${issuer.id} has pathLenConstraint 0 and cannot issue CAs`;
    const extension = certificate.extension(OID.basicConstraints);
    const pathLen = extension ? certificate.decode(extension, decodeBasicConstraints).pathLen : undefined;
    if (pathLen === undefined)
      return `pathLenConstraint must be set below the issuer's ${issuer.pathLenConstraint}`;
    return pathLen < issuer.pathLenConstraint
      ? []
      : `pathLenConstraint ${pathLen} is not below the issuer's ${issuer.pathLenConstraint}`;
  },
};
