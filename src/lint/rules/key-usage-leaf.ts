import { OID } from '../../x509/oids.ts';
import { decodeKeyUsage, type KeyUsageBit } from '../extensions.ts';
import type { LintRule } from '../types.ts';
import { END_ENTITIES } from '../types.ts';

/** What each key type can do (RFC 4055 §1.2, RFC 5480 §3, RFC 8410 §5). */
const ALLOWED: Record<string, ReadonlySet<KeyUsageBit>> = {
  [OID.rsaEncryption]: new Set(['digitalSignature', 'nonRepudiation', 'keyEncipherment', 'dataEncipherment']),
  [OID.ecPublicKey]: new Set([
    'digitalSignature',
    'nonRepudiation',
    'keyAgreement',
    'encipherOnly',
    'decipherOnly',
  ]),
  [OID.ed25519]: new Set(['digitalSignature', 'nonRepudiation']),
};

/**
 * RFC 5280 §4.2.1.3 (critical, at least one bit, keyCertSign only for CAs) and BR §7.1.2.7.11:
 * the bits must be ones the key type can perform — no keyEncipherment for EC or Ed25519.
 */
export const rule: LintRule = {
  id: 'key-usage-leaf',
  citation: 'RFC 5280 §4.2.1.3; RFC 5480 §3; RFC 8410 §5; CA/B Forum BR §7.1.2.7.11',
  severity: 'error',
  profiles: END_ENTITIES,
  check(certificate) {
    const extension = certificate.extension(OID.keyUsage);
    if (!extension) return 'keyUsage is missing';
    const problems: string[] = [];
    if (!extension.critical) problems.push('keyUsage is not critical');
    const usages = certificate.decode(extension, decodeKeyUsage);
    if (usages.length === 0) problems.push('keyUsage has no bit set');
    const keyOid = certificate.publicKeyAlgorithm;
    const allowed = ALLOWED[keyOid];
    for (const usage of usages) {
      if (usage === 'keyCertSign' || usage === 'cRLSign') problems.push(`${usage} in a leaf certificate`);
      else if (allowed && !allowed.has(usage)) problems.push(`${usage} is impossible for a ${keyOid} key`);
    }
    if (keyOid !== OID.rsaEncryption && !usages.includes('digitalSignature')) {
      problems.push('digitalSignature is missing, and EC and Ed25519 leaf keys sign');
    }
    if (
      (usages.includes('encipherOnly') || usages.includes('decipherOnly')) &&
      !usages.includes('keyAgreement')
    ) {
      problems.push('encipherOnly/decipherOnly without keyAgreement');
    }
    return problems;
  },
};
