import type { LintRule } from '../types.ts';
import { ALL_PROFILES } from '../types.ts';

/**
 * RFC 5280 §4.1: certificates are DER encoded (X.690 §10, §11); what is signed must have exactly
 * one encoding. The encoding itself is checked while parsing (src/lint/certificate.ts refuses
 * anything the strict reader refuses); here, what the reader cannot see: X.690 §11.5, a value
 * equal to its DEFAULT (critical FALSE) is omitted.
 */
export const rule: LintRule = {
  id: 'tbs-der',
  citation: 'RFC 5280 §4.1; ITU-T X.690 §10-11',
  severity: 'error',
  profiles: ALL_PROFILES,
  check: (certificate) =>
    certificate.raw.extensionList
      .filter((extension) => extension.explicitFalse)
      .map((extension) => `extension ${extension.oid} writes critical FALSE, which DER omits (X.690 §11.5)`),
};
