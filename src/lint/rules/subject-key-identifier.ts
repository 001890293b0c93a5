import { OID } from '../../x509/oids.ts';
import { decodeSubjectKeyIdentifier } from '../extensions.ts';
import type { LintRule } from '../types.ts';
import { ALL_PROFILES } from '../types.ts';

/**
 * RFC 5280 §4.2.1.2: MUST appear in CA certificates, SHOULD in end-entity ones (we require it);
 * MUST be non-critical (extension-criticality).
 */
export const rule: LintRule = {
  id: 'subject-key-identifier',
  citation: 'RFC 5280 §4.2.1.2',
  severity: 'error',
  profiles: ALL_PROFILES,
  check(certificate) {
    const extension = certificate.extension(OID.subjectKeyIdentifier);
    if (!extension) return 'subjectKeyIdentifier is missing';
    return certificate.decode(extension, decodeSubjectKeyIdentifier).length === 0
      ? 'subjectKeyIdentifier is empty'
      : [];
  },
};
