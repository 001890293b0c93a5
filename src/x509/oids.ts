/** Object identifiers used by intake, the builder and the linter, with where they are defined. */

import type { ExtendedKeyUsageName, KeyUsageName, SubjectAttributeType } from './types.ts';

export const OID = {
  // RFC 5280 §4.2.1 certificate extensions
  subjectKeyIdentifier: '2.5.29.14',
  keyUsage: '2.5.29.15',
  subjectAltName: '2.5.29.17',
  issuerAltName: '2.5.29.18',
  basicConstraints: '2.5.29.19',
  nameConstraints: '2.5.29.30',
  crlDistributionPoints: '2.5.29.31',
  freshestCrl: '2.5.29.46',
  certificatePolicies: '2.5.29.32',
  policyConstraints: '2.5.29.36',
  authorityKeyIdentifier: '2.5.29.35',
  extKeyUsage: '2.5.29.37',
  inhibitAnyPolicy: '2.5.29.54',
  authorityInfoAccess: '1.3.6.1.5.5.7.1.1',
  // RFC 5280 §5.2, §5.3 CRL and CRL entry extensions
  crlNumber: '2.5.29.20',
  crlReason: '2.5.29.21',
  invalidityDate: '2.5.29.24',
  deltaCrlIndicator: '2.5.29.27',
  issuingDistributionPoint: '2.5.29.28',
  // RFC 7633
  tlsFeature: '1.3.6.1.5.5.7.1.24',
  // RFC 5280 §4.2.2.1
  ocsp: '1.3.6.1.5.5.7.48.1',
  // RFC 6960 §4.2.2.2.1: id-pkix-ocsp-nocheck
  ocspNoCheck: '1.3.6.1.5.5.7.48.1.5',
  caIssuers: '1.3.6.1.5.5.7.48.2',
  anyPolicy: '2.5.29.32.0',
  anyExtendedKeyUsage: '2.5.29.37.0',
  // RFC 2985 §5.4.2 (PKCS#9)
  extensionRequest: '1.2.840.113549.1.9.14',
  challengePassword: '1.2.840.113549.1.9.7',
  emailAddress: '1.2.840.113549.1.9.1',
  // RFC 3279 / RFC 5480 / RFC 8410 key algorithms
  rsaEncryption: '1.2.840.113549.1.1.1',
  rsassaPss: '1.2.840.113549.1.1.10',
  ecPublicKey: '1.2.840.10045.2.1',
  secp256r1: '1.2.840.10045.3.1.7',
  secp384r1: '1.3.132.0.34',
  secp521r1: '1.3.132.0.35',
  ed25519: '1.3.101.112',
  ed448: '1.3.101.113',
  // Signature algorithms: RFC 4055, RFC 5758, RFC 8410, and the legacy ones we refuse (RFC 3279)
  md2WithRSAEncryption: '1.2.840.113549.1.1.2',
  md5WithRSAEncryption: '1.2.840.113549.1.1.4',
  sha1WithRSAEncryption: '1.2.840.113549.1.1.5',
  sha256WithRSAEncryption: '1.2.840.113549.1.1.11',
  sha384WithRSAEncryption: '1.2.840.113549.1.1.12',
  sha512WithRSAEncryption: '1.2.840.113549.1.1.13',
  ecdsaWithSha1: '1.2.840.10045.4.1',
  ecdsaWithSha256: '1.2.840.10045.4.3.2',
  ecdsaWithSha384: '1.2.840.10045.4.3.3',
  ecdsaWithSha512: '1.2.840.10045.4.3.4',
  dsaWithSha1: '1.2.840.10040.4.3',
  mgf1: '1.2.840.113549.1.1.8',
  sha1: '1.3.14.3.2.26',
  sha256: '2.16.840.1.101.3.4.2.1',
  sha384: '2.16.840.1.101.3.4.2.2',
  sha512: '2.16.840.1.101.3.4.2.3',
} as const;

/** RFC 5280 §4.1.2.4 / RFC 4519 attribute types. */
export const SUBJECT_ATTRIBUTE_OIDS: Record<SubjectAttributeType, string> = {
  CN: '2.5.4.3',
  serialNumber: '2.5.4.5',
  C: '2.5.4.6',
  L: '2.5.4.7',
  ST: '2.5.4.8',
  street: '2.5.4.9',
  O: '2.5.4.10',
  OU: '2.5.4.11',
  postalCode: '2.5.4.17',
  DC: '0.9.2342.19200300.100.1.25',
  emailAddress: OID.emailAddress,
};

export const SUBJECT_ATTRIBUTE_BY_OID: ReadonlyMap<string, SubjectAttributeType> = new Map(
  Object.entries(SUBJECT_ATTRIBUTE_OIDS).map(([name, oid]) => [oid, name as SubjectAttributeType]),
);

/** RFC 5280 Appendix A upper bounds (ub-*) on attribute value lengths, in characters. */
export const SUBJECT_ATTRIBUTE_MAX_LENGTH: Record<SubjectAttributeType, number> = {
  CN: 64,
  serialNumber: 64,
  C: 2,
  L: 128,
  ST: 128,
  street: 128,
  O: 64,
  OU: 64,
  postalCode: 40,
  DC: 63,
  emailAddress: 255,
};

/** RFC 5280 §4.2.1.12. */
export const EKU_OIDS: Record<ExtendedKeyUsageName, string> = {
  serverAuth: '1.3.6.1.5.5.7.3.1',
  clientAuth: '1.3.6.1.5.5.7.3.2',
  codeSigning: '1.3.6.1.5.5.7.3.3',
  emailProtection: '1.3.6.1.5.5.7.3.4',
  timeStamping: '1.3.6.1.5.5.7.3.8',
  ocspSigning: '1.3.6.1.5.5.7.3.9',
};

export function ekuOid(name: ExtendedKeyUsageName | string): string {
  return (EKU_OIDS as Record<string, string>)[name] ?? name;
}

/** RFC 5280 §4.2.1.3: bit positions of KeyUsage. */
export const KEY_USAGE_BITS: Record<KeyUsageName, number> = {
  digitalSignature: 0,
  nonRepudiation: 1,
  keyEncipherment: 2,
  dataEncipherment: 3,
  keyAgreement: 4,
  keyCertSign: 5,
  cRLSign: 6,
};
