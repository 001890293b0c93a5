import { createPublicKey, verify as nodeVerify } from 'node:crypto';
import type { KeyManager, SignMechanism } from '../hsm/types.ts';
import { ecdsaP1363ToDer } from '../x509/algorithms.ts';
import {
  encodeAuthorityInfoAccess,
  encodeAuthorityKeyIdentifier,
  encodeBasicConstraints,
  encodeCertificatePolicies,
  encodeCrlDistributionPoints,
  encodeExtendedKeyUsage,
  encodeExtension,
  encodeKeyUsage,
  encodeTbsCertificate,
} from '../x509/certificate.ts';
import { octetString } from '../x509/der.ts';
import { type IssuerContext, subjectKeyIdentifier } from '../x509/issuer.ts';
import { encodeNameConstraints, type NameConstraintInput } from '../x509/name-constraints.ts';
import { encodeName } from '../x509/names.ts';
import { OID } from '../x509/oids.ts';
import type { SubjectAttribute } from '../x509/types.ts';
import type { CertificateProfile, CrossProfile, SubjectConfig } from './config.ts';
import { CeremonyError } from './errors.ts';

/**
 * CA certificates from a ceremony's certificate profile. The TBSCertificate is composed from
 * src/x509's DER builders (encodeTbsCertificate and the extension encoders); the ceremony adds
 * only the choice of extensions a CA certificate carries. Signing is src/issuance's signCertificate
 * with the issuance token of a passing lint, through the partition's WebCrypto facade.
 */

/** The subject in X.500 order, most significant first (C, ST, L, O, OU, CN). */
export function subjectAttributes(subject: SubjectConfig): SubjectAttribute[] {
  const out: SubjectAttribute[] = [];
  if (subject.country) out.push({ type: 'C', value: subject.country });
  if (subject.state) out.push({ type: 'ST', value: subject.state });
  if (subject.locality) out.push({ type: 'L', value: subject.locality });
  if (subject.organization) out.push({ type: 'O', value: subject.organization });
  if (subject['organizational-unit']) out.push({ type: 'OU', value: subject['organizational-unit'] });
  out.push({ type: 'CN', value: subject['common-name'] });
  return out;
}

export interface CaTbsRequest {
  profile: CertificateProfile | CrossProfile;
  /** Subject Name, DER. */
  subject: Uint8Array;
  /** SubjectPublicKeyInfo of the certified key, DER. */
  publicKey: Uint8Array;
  /** Who signs; for a root, itself (createSelfIssuerContext). */
  issuer: IssuerContext;
  serial: Uint8Array;
}

function nameConstraintInputs(
  set: { dns: string[]; ip: string[]; email: string[]; uri: string[] } | undefined,
) {
  if (!set) return [];
  const out: NameConstraintInput[] = [];
  for (const value of set.dns) out.push({ type: 'dns', value });
  for (const value of set.ip) out.push({ type: 'ip', value });
  for (const value of set.email) out.push({ type: 'email', value });
  for (const value of set.uri) out.push({ type: 'uri', value });
  return out;
}

/** A CA certificate's TBSCertificate (RFC 5280 §4.1), with exactly the profile's validity. */
export function buildCaTbs(request: CaTbsRequest): Uint8Array {
  const { profile, issuer } = request;
  const extensions: Uint8Array[] = [
    // RFC 5280 §4.2.1.9: CA certificates MUST mark basicConstraints critical.
    encodeExtension(OID.basicConstraints, true, encodeBasicConstraints(true, profile['path-length'])),
    // RFC 5280 §4.2.1.3: SHOULD be critical.
    encodeExtension(OID.keyUsage, true, encodeKeyUsage(profile['key-usages'])),
    // RFC 5280 §4.2.1.2: CA certificates MUST carry a subjectKeyIdentifier.
    encodeExtension(OID.subjectKeyIdentifier, false, octetString(subjectKeyIdentifier(request.publicKey))),
    // RFC 5280 §4.2.1.1: MUST be present except in self-signed certificates, where it MAY be.
    encodeExtension(
      OID.authorityKeyIdentifier,
      false,
      encodeAuthorityKeyIdentifier(issuer.subjectKeyIdentifier),
    ),
  ];
  const eku = profile['extended-key-usages'];
  if (eku && eku.length > 0)
    extensions.push(encodeExtension(OID.extKeyUsage, false, encodeExtendedKeyUsage(eku)));
  const nc = profile['name-constraints'];
  if (nc) {
    extensions.push(
      encodeExtension(
        OID.nameConstraints,
        nc.critical,
        encodeNameConstraints({
          permitted: nameConstraintInputs(nc.permitted),
          excluded: nameConstraintInputs(nc.excluded),
        }),
      ),
    );
  }
  if (profile['policy-oids'].length > 0) {
    extensions.push(
      encodeExtension(OID.certificatePolicies, false, encodeCertificatePolicies(profile['policy-oids'])),
    );
  }
  if (profile['crl-url']) {
    extensions.push(
      encodeExtension(OID.crlDistributionPoints, false, encodeCrlDistributionPoints(profile['crl-url'])),
    );
  }
  if (profile['issuer-url'] || profile['ocsp-url']) {
    // RFC 5280 §4.2.2.1: MUST be non-critical.
    extensions.push(
      encodeExtension(
        OID.authorityInfoAccess,
        false,
        encodeAuthorityInfoAccess({
          ...(profile['ocsp-url'] ? { ocspUrl: profile['ocsp-url'] } : {}),
          ...(profile['issuer-url'] ? { caIssuersUrl: profile['issuer-url'] } : {}),
        }),
      ),
    );
  }
  return encodeTbsCertificate({
    serial: request.serial,
    signatureAlgorithm: issuer.signatureAlgorithm.identifier,
    issuer: issuer.subject,
    notBefore: new Date(profile['not-before']),
    notAfter: new Date(profile['not-after']),
    subject: request.subject,
    publicKey: request.publicKey,
    extensions,
  });
}

export const encodeSubject = (subject: SubjectConfig) => encodeName(subjectAttributes(subject));

/**
 * A positive serial of 17 octets from the partition's generator (C_GenerateRandom): the first
 * octet in 0x40..0x7f keeps the INTEGER positive and of fixed length, 134 random bits in all
 * (RFC 5280 §4.1.2.2; BR §7.1 asks for at least 64). Same form as src/x509's generateSerial.
 */
export async function serialFromPartition(keys: KeyManager): Promise<Uint8Array> {
  const serial = new Uint8Array(await keys.generateRandom({ length: 17 }));
  if (serial.length !== 17)
    throw new CeremonyError('ceremony.partition_failed', 'the partition returned too few random octets');
  serial[0] = 0x40 | (serial[0]! & 0x3f);
  return serial;
}

/** The signature value X.509 carries: ECDSA as DER Ecdsa-Sig-Value (RFC 5480 §2.2), others as returned. */
export function signatureValue(mechanism: SignMechanism, raw: Uint8Array): Uint8Array {
  return mechanism.startsWith('ecdsa-') ? ecdsaP1363ToDer(raw) : raw;
}

export function nodeVerifyParams(mechanism: SignMechanism): { hash: string | null; dsaEncoding?: 'der' } {
  if (mechanism === 'ed25519') return { hash: null };
  const hash = mechanism.endsWith('sha512') ? 'sha512' : mechanism.endsWith('sha384') ? 'sha384' : 'sha256';
  return mechanism.startsWith('ecdsa-') ? { hash, dsaEncoding: 'der' } : { hash };
}

/** Checks a signature over `data` with an SPKI, the way a relying party would. */
export function signatureVerifies(
  mechanism: SignMechanism,
  spki: Uint8Array,
  data: Uint8Array,
  signature: Uint8Array,
): boolean {
  const { hash, dsaEncoding } = nodeVerifyParams(mechanism);
  try {
    const key = createPublicKey({ key: Buffer.from(spki), format: 'der', type: 'spki' });
    return nodeVerify(hash, data, dsaEncoding ? { key, dsaEncoding } : key, signature);
  } catch {
    return false;
  }
}
