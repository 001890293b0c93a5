import type { LintRule } from '../types.ts';
import { ALL_PROFILES } from '../types.ts';

/**
 * RFC 5280 §4.1: certificates are DER encoded (X.690 §10, §11); what is signed must have exactly
 * one encoding. Checked while parsing (src/lint/certificate.ts); this entry names the rule.
 */
export const rule: LintRule = {
  id: 'tbs-der',
  citation: 'RFC 5280 §4.1; ITU-T X.690 §10-11',
  severity: 'error',
  profiles: ALL_PROFILES,
  check: () => [],
};
