/**
 * The parts of an X.509 certificate PKCS#11 repeats as attributes of a certificate object
 * (CKA_SERIAL_NUMBER, CKA_ISSUER, CKA_SUBJECT), sliced from its DER as they are, octet for octet.
 */

export interface Tlv {
  tag: number;
  start: number;
  contentStart: number;
  end: number;
}

/** One DER TLV at `offset` (X.690 §8.1); throws on anything malformed. */
export function tlv(der: Buffer, offset: number, limit = der.length): Tlv {
  if (offset + 2 > limit) throw new Error('truncated');
  const tag = der[offset]!;
  let length = der[offset + 1]!;
  let contentStart = offset + 2;
  if (length & 0x80) {
    const octets = length & 0x7f;
    if (octets === 0 || octets > 4 || contentStart + octets > limit) throw new Error('bad length');
    length = 0;
    for (let i = 0; i < octets; i++) length = length * 256 + der[contentStart + i]!;
    contentStart += octets;
  }
  const end = contentStart + length;
  if (end > limit) throw new Error('truncated');
  return { tag, start: offset, contentStart, end };
}

export interface CertificateFields {
  /** The DER of the serialNumber INTEGER, of the issuer Name and of the subject Name (CKA_SERIAL_NUMBER, CKA_ISSUER, CKA_SUBJECT). */
  serialNumber: Buffer;
  issuer: Buffer;
  subject: Buffer;
}

/** The fields PKCS#11 repeats as attributes, sliced from the TBSCertificate (RFC 5280 §4.1). */
export function readCertificateFields(der: Uint8Array): CertificateFields {
  const bytes = Buffer.from(der.buffer, der.byteOffset, der.byteLength);
  const certificate = tlv(bytes, 0);
  const tbs = tlv(bytes, certificate.contentStart, certificate.end);
  let at = tbs.contentStart;
  const next = () => {
    const field = tlv(bytes, at, tbs.end);
    at = field.end;
    return field;
  };
  let field = next();
  if (field.tag === 0xa0) field = next(); // [0] EXPLICIT version
  const serialNumber = field;
  next(); // signature AlgorithmIdentifier
  const issuer = next();
  next(); // validity
  const subject = next();
  const slice = (t: Tlv) => Buffer.from(bytes.subarray(t.start, t.end));
  return { serialNumber: slice(serialNumber), issuer: slice(issuer), subject: slice(subject) };
}
