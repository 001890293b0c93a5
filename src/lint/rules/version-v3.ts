import type { LintRule } from '../types.ts';
import { ALL_PROFILES } from '../types.ts';

/** RFC 5280 §4.1.2.1: when extensions are used, as in this profile, version MUST be 3. */
export const rule: LintRule = {
  id: 'version-v3',
  citation: 'RFC 5280 §4.1.2.1',
  severity: 'error',
  profiles: ALL_PROFILES,
  check: (certificate) => (certificate.version === 3 ? [] : `version is v${certificate.version}, not v3`),
};
