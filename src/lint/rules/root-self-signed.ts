import { equalBytes } from '../../x509/der.ts';
import { OID } from '../../x509/oids.ts';
import type { LintRule } from '../types.ts';

/**
 * RFC 5280 §3.2 and §6.1: a root is self-signed — its issuer is its subject and its key is the
 * one that signs it; BR §7.1.2.1.2: a root has no extKeyUsage.
 */
export const rule: LintRule = {
  id: 'root-self-signed',
  citation: 'RFC 5280 §3.2, §6.1; CA/B Forum BR §7.1.2.1.2',
  severity: 'error',
  profiles: ['root'],
  check(certificate, { issuer }) {
    const problems: string[] = [];
    if (!equalBytes(certificate.issuer, certificate.subject))
      problems.push('the issuer of a root is not its subject');
    if (!equalBytes(certificate.publicKey, issuer.publicKey))
      problems.push('the root is not signed by its own key');
    if (certificate.extension(OID.extKeyUsage)) problems.push('a root carries extKeyUsage');
    return problems;
  },
};
