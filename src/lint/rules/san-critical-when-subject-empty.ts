import { OID } from '../../x509/oids.ts';
import type { LintRule } from '../types.ts';
import { ALL_PROFILES } from '../types.ts';

/**
 * RFC 5280 §4.2.1.6: if the subject is empty, the identity is only in subjectAltName, which
 * MUST then be marked critical (and MUST be present: §4.1.2.6).
 */
export const rule: LintRule = {
  id: 'san-critical-when-subject-empty',
  citation: 'RFC 5280 §4.1.2.6, §4.2.1.6',
  severity: 'error',
  profiles: ALL_PROFILES,
  check(certificate) {
    if (certificate.subjectValues.length > 0) return [];
    const extension = certificate.extension(OID.subjectAltName);
    if (!extension) return 'the subject is empty and there is no subjectAltName';
    return extension.critical ? [] : 'the subject is empty and subjectAltName is not critical';
  },
};
