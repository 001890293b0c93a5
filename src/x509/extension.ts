import { TAG, type Tlv } from './der.ts';

/**
 * The parts of one Extension (RFC 5280 §4.1: SEQUENCE { extnID OBJECT IDENTIFIER, critical
 * BOOLEAN DEFAULT FALSE, extnValue OCTET STRING }), or undefined when it has another shape.
 * Certificates, CRLs and CSRs read extensions alike; each reader decides what a present critical
 * field means (a CSR refuses an explicit FALSE, an issuer certificate remembers it).
 */
export function extensionParts(
  extension: Tlv,
): { oid: Tlv; critical: Tlv | undefined; value: Tlv } | undefined {
  const [oid, second, third, ...extra] = extension.children;
  const critical = third ? second : undefined;
  const value = third ?? second;
  if (
    extension.tag !== TAG.SEQUENCE ||
    oid?.tag !== TAG.OID ||
    value?.tag !== TAG.OCTET_STRING ||
    extra.length > 0 ||
    (critical !== undefined && critical.tag !== TAG.BOOLEAN)
  ) {
    return undefined;
  }
  return { oid, critical, value };
}
