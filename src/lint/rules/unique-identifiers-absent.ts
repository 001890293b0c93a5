import type { LintRule } from '../types.ts';
import { ALL_PROFILES } from '../types.ts';

/** RFC 5280 §4.1.2.8: conforming CAs MUST NOT generate certificates with unique identifiers. */
export const rule: LintRule = {
  id: 'unique-identifiers-absent',
  citation: 'RFC 5280 §4.1.2.8',
  severity: 'error',
  profiles: ALL_PROFILES,
  check: (certificate) =>
    certificate.raw.uniqueIdentifiers ? 'issuerUniqueID or subjectUniqueID is present' : [],
};
