import { AlgorithmError, parseSignatureAlgorithm } from '../../x509/algorithms.ts';
import { readDer } from '../../x509/der.ts';
import type { LintRule } from '../types.ts';
import { ALL_PROFILES } from '../types.ts';

/**
 * BR §7.1.3.2: SHA-1 and MD5 are forbidden; RSA PKCS#1 v1.5 with SHA-256/384/512 (parameters
 * NULL, RFC 4055 §5), ECDSA with SHA-256/384/512 (parameters absent, RFC 5758 §3.2), Ed25519
 * (parameters absent, RFC 8410 §3).
 */
export const rule: LintRule = {
  id: 'signature-algorithm-allowed',
  citation: 'CA/B Forum BR §7.1.3.2; RFC 5758 §3.2; RFC 4055 §5; RFC 8410 §3',
  severity: 'error',
  profiles: ALL_PROFILES,
  check(certificate) {
    try {
      parseSignatureAlgorithm(readDer(certificate.signatureAlgorithm, { maxDepth: 8 }));
      return [];
    } catch (error) {
      if (error instanceof AlgorithmError) return `signature algorithm not allowed: ${error.message}`;
      throw error;
    }
  },
};
