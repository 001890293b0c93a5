import { OID } from '../../x509/oids.ts';
import { decodeExtendedKeyUsage } from '../extensions.ts';
import type { LintRule } from '../types.ts';
import { END_ENTITIES } from '../types.ts';

/** BR §7.1.2.7.10: subscriber certificates carry extKeyUsage naming their purposes (RFC 5280 §4.2.1.12). */
export const rule: LintRule = {
  id: 'eku-present',
  citation: 'CA/B Forum BR §7.1.2.7.10; RFC 5280 §4.2.1.12',
  severity: 'error',
  profiles: END_ENTITIES,
  check(certificate) {
    const extension = certificate.extension(OID.extKeyUsage);
    if (!extension) return 'extKeyUsage is missing';
    return certificate.decode(extension, decodeExtendedKeyUsage).length === 0 ? 'extKeyUsage is empty' : [];
  },
};
