import { createHash } from 'node:crypto';
import { AsnConvert } from '@peculiar/asn1-schema';
import { Certificate, id_ce_subjectKeyIdentifier, SubjectKeyIdentifier } from '@peculiar/asn1-x509';
import { readChildrenOf, readTlvAt, TAG, tlvEncoding } from '../x509/der.ts';
import type { IssuerIdentity } from '../x509/issuer.ts';

/** The CertID hash algorithms an OCSP responder recognises (RFC 6960 §4.1.1; SHA-1 is what most clients send). */
export const CERT_ID_HASHES = ['sha1', 'sha256', 'sha384', 'sha512'] as const;
export type CertIdHash = (typeof CERT_ID_HASHES)[number];

export const CERT_ID_HASH_OIDS: Readonly<Record<CertIdHash, string>> = {
  sha1: '1.3.14.3.2.26',
  sha256: '2.16.840.1.101.3.4.2.1',
  sha384: '2.16.840.1.101.3.4.2.2',
  sha512: '2.16.840.1.101.3.4.2.3',
};

/** What CRLs and OCSP responses need from an issuer certificate, read once. */
export interface IssuerFacts extends IssuerIdentity {
  certificate: Uint8Array;
  /** The subjectPublicKey BIT STRING's value without the unused-bits octet. */
  subjectPublicKey: Uint8Array;
  /**
   * subjectKeyIdentifier (for the AKI of a CRL, RFC 5280 §5.2.1): the issuer's own, else the
   * SHA-1 of the public key (method 1 of §4.2.1.2).
   */
  /** RFC 6960 §4.1.1 issuerNameHash and issuerKeyHash per hash algorithm. */
  nameHash: Readonly<Record<CertIdHash, Uint8Array>>;
  keyHash: Readonly<Record<CertIdHash, Uint8Array>>;
  notAfter: Date;
}

function hashAll(data: Uint8Array): Record<CertIdHash, Uint8Array> {
  const out = {} as Record<CertIdHash, Uint8Array>;
  for (const name of CERT_ID_HASHES) out[name] = createHash(name).update(data).digest();
  return out;
}

/** The subject and SubjectPublicKeyInfo of a DER certificate, exactly as encoded in it. */
function rawSubjectAndSpki(der: Uint8Array): { subject: Uint8Array; spki: Uint8Array } {
  const outer = readTlvAt(der);
  if (outer.tag !== TAG.SEQUENCE || outer.end !== der.byteLength) throw new Error('not a DER SEQUENCE');
  const [tbs] = readChildrenOf(der, outer);
  if (!tbs || tbs.tag !== TAG.SEQUENCE) throw new Error('no tbsCertificate');
  const fields = readChildrenOf(der, tbs);
  // TBSCertificate: [0] version (optional), serialNumber, signature, issuer, validity, subject, spki.
  const base = fields[0]?.tag === 0xa0 ? 1 : 0;
  const subjectTlv = fields[base + 4];
  const spkiTlv = fields[base + 5];
  if (!subjectTlv || !spkiTlv || subjectTlv.tag !== TAG.SEQUENCE || spkiTlv.tag !== TAG.SEQUENCE) {
    throw new Error('tbsCertificate lacks subject or subjectPublicKeyInfo');
  }
  return { subject: tlvEncoding(der, subjectTlv).slice(), spki: tlvEncoding(der, spkiTlv).slice() };
}

/** The SubjectPublicKeyInfo (DER) of a certificate. Throws a plain Error for anything else. */
export function readCertificateSpki(certificate: Uint8Array): Uint8Array {
  try {
    return rawSubjectAndSpki(new Uint8Array(certificate)).spki;
  } catch (error) {
    throw new Error('not a DER X.509 certificate', { cause: error });
  }
}

/** Reads an issuer certificate (DER). Throws a plain Error for anything that is not an X.509 certificate. */
export function readIssuerFacts(certificate: Uint8Array): IssuerFacts {
  const der = new Uint8Array(certificate);
  let subject: Uint8Array;
  let spki: Uint8Array;
  let parsed: Certificate;
  try {
    ({ subject, spki } = rawSubjectAndSpki(der));
    parsed = AsnConvert.parse(der, Certificate);
  } catch (error) {
    throw new Error('issuer certificate is not a DER X.509 certificate', { cause: error });
  }
  const tbs = parsed.tbsCertificate;
  const subjectPublicKey = new Uint8Array(tbs.subjectPublicKeyInfo.subjectPublicKey);
  const skiExtension = tbs.extensions?.find((extension) => extension.extnID === id_ce_subjectKeyIdentifier);
  const keyIdentifier = skiExtension
    ? new Uint8Array(AsnConvert.parse(skiExtension.extnValue.buffer, SubjectKeyIdentifier).buffer)
    : new Uint8Array(createHash('sha1').update(subjectPublicKey).digest());
  return {
    certificate: der,
    subject,
    publicKey: spki,
    subjectPublicKey,
    subjectKeyIdentifier: keyIdentifier,
    nameHash: hashAll(subject),
    keyHash: hashAll(subjectPublicKey),
    notAfter: tbs.validity.notAfter.getTime(),
  };
}
