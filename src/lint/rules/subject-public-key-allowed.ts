import { inspectPublicKey, KeyError } from '../../x509/keys.ts';
import type { LintRule } from '../types.ts';
import { ALL_PROFILES } from '../types.ts';

/**
 * BR §6.1.5, §6.1.6: RSA of at least 2048 bits (multiple of 8, exponent 65537 here, no close
 * primes), ECDSA on P-256 or P-384 with a valid point, or Ed25519 (RFC 8410).
 */
export const rule: LintRule = {
  id: 'subject-public-key-allowed',
  citation: 'CA/B Forum BR §6.1.5, §6.1.6; RFC 5480 §2; RFC 8410 §4',
  severity: 'error',
  profiles: ALL_PROFILES,
  check(certificate) {
    try {
      inspectPublicKey(certificate.publicKey);
      return [];
    } catch (error) {
      if (error instanceof KeyError) return `subject public key not allowed: ${error.message}`;
      throw error;
    }
  },
};
