import { equalBytes } from '../../x509/der.ts';
import type { LintRule } from '../types.ts';
import { ALL_PROFILES } from '../types.ts';

/**
 * RFC 5280 §4.1.2.4 and §6.1.3 (a)(4): the issuer field is the issuing CA's subject. Copied byte
 * for byte, so every path builder matches it, whatever its name comparison.
 */
export const rule: LintRule = {
  id: 'issuer-name-matches',
  citation: 'RFC 5280 §4.1.2.4, §6.1.3 (a)(4)',
  severity: 'error',
  profiles: ALL_PROFILES,
  check: (certificate, { issuer }) =>
    equalBytes(certificate.issuer, issuer.subject)
      ? []
      : `the issuer name is not the subject of issuer ${issuer.id}`,
};
