import type { LintRule } from '../types.ts';
import { ALL_PROFILES } from '../types.ts';

/**
 * RFC 5280 §4.1: the TBSCertificate has the fields of §4.1.2 in order. Checked while parsing
 * (src/lint/certificate.ts); this entry names the rule.
 */
export const rule: LintRule = {
  id: 'tbs-structure',
  citation: 'RFC 5280 §4.1',
  severity: 'error',
  profiles: ALL_PROFILES,
  check: () => [],
};
