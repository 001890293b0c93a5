import { equalBytes } from '../../x509/der.ts';
import type { LintRule } from '../types.ts';
import { ALL_PROFILES } from '../types.ts';

/**
 * RFC 5280 §4.1.2.3: the signature field names the algorithm the CA signs with, which the
 * issuer's key decides (ecdsa-p256 → ecdsa-with-SHA256, p384 → SHA384, RSA → sha256WithRSA,
 * Ed25519 → Ed25519; BR §7.1.3.2), byte for byte as the Certificate's signatureAlgorithm.
 */
export const rule: LintRule = {
  id: 'signature-algorithm-matches-issuer',
  citation: 'RFC 5280 §4.1.2.3; CA/B Forum BR §7.1.3.2',
  severity: 'error',
  profiles: ALL_PROFILES,
  check: (certificate, { issuer }) =>
    equalBytes(certificate.signatureAlgorithm, issuer.signatureAlgorithm.identifier)
      ? []
      : `the signature algorithm is not ${issuer.signatureAlgorithm.name}, which the issuer's ${issuer.keyAlgorithm} key signs with`,
};
