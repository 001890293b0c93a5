import { OID } from '../../x509/oids.ts';
import type { LintRule } from '../types.ts';
import { LEAF_ONLY } from '../types.ts';

/** BR §7.1.2.7.12 (and RFC 6125 for TLS): a subscriber certificate names its subject in subjectAltName. */
export const rule: LintRule = {
  id: 'san-present',
  citation: 'CA/B Forum BR §7.1.2.7.12; RFC 5280 §4.2.1.6',
  severity: 'error',
  profiles: LEAF_ONLY,
  check: (certificate) => (certificate.extension(OID.subjectAltName) ? [] : 'subjectAltName is missing'),
};
