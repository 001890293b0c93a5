import { OID } from '../../x509/oids.ts';
import { decodeKeyUsage } from '../extensions.ts';
import type { LintRule } from '../types.ts';
import { CA_PROFILES } from '../types.ts';

/**
 * RFC 5280 §4.2.1.3 and BR §7.1.2.10.7: a CA certificate's keyUsage is present, critical, with
 * keyCertSign and cRLSign; digitalSignature is allowed (OCSP signing), nothing else.
 */
export const rule: LintRule = {
  id: 'ca-key-usage',
  citation: 'RFC 5280 §4.2.1.3; CA/B Forum BR §7.1.2.10.7',
  severity: 'error',
  profiles: CA_PROFILES,
  check(certificate) {
    const extension = certificate.extension(OID.keyUsage);
    if (!extension) return 'keyUsage is missing from a CA certificate';
    const problems: string[] = [];
    if (!extension.critical) problems.push('keyUsage is not critical');
    const usages = certificate.decode(extension, decodeKeyUsage);
    if (!usages.includes('keyCertSign')) problems.push('keyUsage lacks keyCertSign');
    if (!usages.includes('cRLSign')) problems.push('keyUsage lacks cRLSign');
    for (const usage of usages) {
      if (!['keyCertSign', 'cRLSign', 'digitalSignature'].includes(usage))
        problems.push(`${usage} in a CA certificate`);
    }
    return problems;
  },
};
