import type { LintRule } from '../types.ts';
import { CA_PROFILES } from '../types.ts';

/** RFC 5280 §4.1.2.6: a CA's subject MUST be a non-empty distinguished name (BR §7.1.2.10.2: O and CN). */
export const rule: LintRule = {
  id: 'ca-subject-present',
  citation: 'RFC 5280 §4.1.2.6; CA/B Forum BR §7.1.2.10.2',
  severity: 'error',
  profiles: CA_PROFILES,
  check: (certificate) =>
    certificate.subjectValues.length > 0 ? [] : 'a CA certificate has an empty subject',
};
