import type { LintRule } from '../types.ts';
import { ALL_PROFILES } from '../types.ts';

/** RFC 5280 §4.1.2.5: the validity period runs from notBefore to notAfter. */
export const rule: LintRule = {
  id: 'validity-order',
  citation: 'RFC 5280 §4.1.2.5',
  severity: 'error',
  profiles: ALL_PROFILES,
  check: (certificate) =>
    certificate.notBefore.getTime() <= certificate.notAfter.getTime()
      ? []
      : `notBefore ${certificate.notBefore.toISOString()} is after notAfter ${certificate.notAfter.toISOString()}`,
};
