import { OID } from '../../x509/oids.ts';
import { decodeExtendedKeyUsage } from '../extensions.ts';
import type { LintRule } from '../types.ts';
import { ALL_PROFILES } from '../types.ts';

/** BR §7.1.2.7.10 and §7.1.2.10.6: anyExtendedKeyUsage MUST NOT appear (RFC 5280 §4.2.1.12). */
export const rule: LintRule = {
  id: 'eku-no-any',
  citation: 'CA/B Forum BR §7.1.2.7.10, §7.1.2.10.6; RFC 5280 §4.2.1.12',
  severity: 'error',
  profiles: ALL_PROFILES,
  check(certificate) {
    const extension = certificate.extension(OID.extKeyUsage);
    if (!extension) return [];
    return certificate.decode(extension, decodeExtendedKeyUsage).includes(OID.anyExtendedKeyUsage)
      ? 'extKeyUsage includes anyExtendedKeyUsage'
      : [];
  },
};
