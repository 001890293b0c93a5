import { createPublicKey, verify as nodeVerify } from 'node:crypto';
import type { KeyManager, SignMechanism } from '../hsm/types.ts';
import { ecdsaP1363ToDer } from '../x509/algorithms.ts';
import { encodeCaTbs } from '../x509/ca-certificate.ts';
import type { IssuerContext } from '../x509/issuer.ts';
import type { NameConstraintInput } from '../x509/name-constraints.ts';
import { encodeName } from '../x509/names.ts';
import type { SubjectAttribute } from '../x509/types.ts';
import type { CertificateProfile, CrossProfile, SubjectConfig } from './config.ts';
import { CeremonyError } from './errors.ts';

/**
 * CA certificates from a ceremony's certificate profile. The TBSCertificate is src/x509's one
 * CA-certificate builder (encodeCaTbs); the ceremony maps its reviewed profile onto it. Signing is src/issuance's signCertificate
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
  const { profile } = request;
  const nc = profile['name-constraints'];
  return encodeCaTbs({
    serial: request.serial,
    issuer: request.issuer,
    subject: request.subject,
    publicKey: request.publicKey,
    notBefore: new Date(profile['not-before']),
    notAfter: new Date(profile['not-after']),
    pathLength: profile['path-length'],
    keyUsages: profile['key-usages'],
    extendedKeyUsages: profile['extended-key-usages'],
    nameConstraints: nc && {
      critical: nc.critical,
      value: { permitted: nameConstraintInputs(nc.permitted), excluded: nameConstraintInputs(nc.excluded) },
    },
    policyOids: profile['policy-oids'],
    crlUrl: profile['crl-url'],
    ocspUrl: profile['ocsp-url'],
    caIssuersUrl: profile['issuer-url'],
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
