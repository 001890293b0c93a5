/**
 * What the builder and the linter need to know about an issuing CA, read once from its
 * certificate (or, for a root being created, from its own name and key) and then reused for
 * every certificate it signs.
 */

import { createHash } from 'node:crypto';
import { type SignatureAlgorithm, signatureAlgorithmForKey } from './algorithms.ts';
import {
  bitStringBytes,
  content,
  contextTag,
  decodeInteger,
  decodeOid,
  decodeTime,
  encoding,
  readDer,
  TAG,
  type Tlv,
} from './der.ts';
import { extensionParts } from './extension.ts';
import { inspectPublicKey } from './keys.ts';
import { type NameConstraintsInfo, parseNameConstraints } from './name-constraints.ts';
import { encodeName } from './names.ts';
import { OID } from './oids.ts';
import { certificateDer } from './pem.ts';
import type { PublicKeyAlgorithmName, SubjectAttribute } from './types.ts';

export interface IssuerUrls {
  /** RFC 5280 §4.2.1.13 CRL distribution point (http). */
  crlUrl?: string;
  /** RFC 5280 §4.2.2.1 id-ad-ocsp. */
  ocspUrl?: string;
  /** RFC 5280 §4.2.2.1 id-ad-caIssuers: where the issuer's certificate is (DER). */
  caIssuersUrl?: string;
  /**
   * How many CRL shards new certificates are spread over (signet.yaml `crl.shards`, default 1): a
   * certificate names its shard's CRL (src/x509/crl-urls.ts). Only with `crlUrl`.
   */
  crlShards?: number;
  /** Delta CRLs are published (`crl.deltaInterval`): certificates carry a Freshest CRL pointer. */
  deltaCrls?: boolean;
}

/**
 * The one issuer shape: what every signer of certificates, CRLs and OCSP responses is known by.
 * The issuing core, the linter and the ceremony use IssuerContext (below); revocation extends it
 * with the CertID hashes OCSP needs (src/revocation/issuer.ts).
 */
export interface IssuerIdentity {
  /** The issuer's subject Name, DER, exactly as in its certificate (RFC 5280 §4.1.2.4). */
  readonly subject: Uint8Array;
  /** For the AKI of what it signs (RFC 5280 §4.2.1.1, §5.2.1). */
  readonly subjectKeyIdentifier: Uint8Array;
  /** SubjectPublicKeyInfo, DER. */
  readonly publicKey: Uint8Array;
}

export interface IssuerContext extends IssuerIdentity, IssuerUrls {
  /** The issuer's short stable id (slug). */
  readonly id: string;
  /** The issuer's certificate, DER; absent for a root that is being created. */
  readonly certificate?: Uint8Array;
  readonly keyAlgorithm: PublicKeyAlgorithmName;
  /** Chosen by the issuer's key, never by a request. */
  readonly signatureAlgorithm: SignatureAlgorithm;
  readonly notBefore: Date;
  readonly notAfter: Date;
  /** basicConstraints pathLenConstraint; undefined means unlimited. */
  readonly pathLenConstraint?: number;
  readonly nameConstraints?: NameConstraintsInfo;
  /**
   * The name constraints of the CAs above this issuer, nearest first (from path validation of its
   * chain): a relying party holds a leaf's names to every one of them, not only to the issuer's
   * own (RFC 5280 §6.1.3 (b), (c)), so the linter does too.
   */
  readonly superiorNameConstraints?: readonly NameConstraintsInfo[];
}

export interface CreateIssuerContextOptions extends IssuerUrls {
  id: string;
  /** The issuer's certificate, DER or PEM. */
  certificate: Uint8Array | string;
  /** The name constraints of the CAs above it (ValidatedPath.superiorNameConstraints). */
  superiorNameConstraints?: readonly NameConstraintsInfo[];
}

/** RFC 7093 §2 method 1: the leftmost 160 bits of the SHA-256 of the subjectPublicKey bits. */
export function subjectKeyIdentifier(spki: Uint8Array): Uint8Array {
  const root = readDer(spki, { maxDepth: 4 });
  const key = root.children[1];
  if (!key || key.tag !== TAG.BIT_STRING) throw new RangeError('not a SubjectPublicKeyInfo');
  const digest = createHash('sha256').update(bitStringBytes(key).bytes).digest();
  return new Uint8Array(digest.subarray(0, 20));
}

/** The fields of a certificate's TBSCertificate, as offsets into the certificate DER. */
export interface CertificateFields {
  tbs: Tlv;
  version: number;
  serial: Tlv;
  signature: Tlv;
  issuer: Tlv;
  validity: Tlv;
  notBefore: Date;
  notAfter: Date;
  subject: Tlv;
  spki: Tlv;
  /** issuerUniqueID or subjectUniqueID present (RFC 5280 §4.1.2.8). */
  uniqueIdentifiers: boolean;
  /** Every extension in order, duplicates included; `explicitFalse` marks a critical FALSE written out. */
  extensionList: { oid: string; critical: boolean; value: Uint8Array; explicitFalse?: true }[];
  /** By OID; the first of duplicates. */
  extensions: Map<string, { critical: boolean; value: Uint8Array }>;
}

/** Reads a certificate's (or a bare TBSCertificate's) fields. Throws on anything malformed. */
export function readCertificateFields(der: Uint8Array | Tlv, bare = false): CertificateFields {
  const root = der instanceof Uint8Array ? readDer(der, { maxDepth: 16 }) : der;
  const tbs = bare ? root : root.children[0];
  if (!tbs || tbs.tag !== TAG.SEQUENCE) throw new Error('not a certificate');
  const fields = [...tbs.children];
  let version = 1;
  if (fields[0]?.tag === contextTag(0, true)) {
    const versionTlv = fields.shift()!.children[0];
    if (!versionTlv || versionTlv.tag !== TAG.INTEGER) throw new Error('malformed version');
    version = Number(decodeInteger(versionTlv)) + 1;
  }
  const [serial, signature, issuer, validity, subject, spki, ...rest] = fields;
  if (!serial || !signature || !issuer || !validity || !subject || !spki)
    throw new Error('truncated TBSCertificate');
  const [notBefore, notAfter] = validity.children;
  if (!notBefore || !notAfter) throw new Error('malformed validity');
  const extensions = new Map<string, { critical: boolean; value: Uint8Array }>();
  const extensionList: CertificateFields['extensionList'] = [];
  const extensionsField = rest.find((field) => field.tag === contextTag(3, true));
  const extensionsTlv = extensionsField?.children[0];
  if (extensionsField && (extensionsField.children.length !== 1 || extensionsTlv?.tag !== TAG.SEQUENCE)) {
    throw new Error('malformed extensions');
  }
  for (const field of rest) {
    if (
      field.tag !== contextTag(1, false) &&
      field.tag !== contextTag(2, false) &&
      field !== extensionsField
    ) {
      throw new Error('unexpected field in TBSCertificate');
    }
  }
  for (const extension of extensionsTlv?.children ?? []) {
    const parts = extensionParts(extension);
    if (!parts) throw new Error('malformed extension');
    const critical = parts.critical !== undefined && content(parts.critical)[0] === 0xff;
    const entry = { oid: decodeOid(parts.oid), critical, value: content(parts.value) };
    extensionList.push(parts.critical !== undefined && !critical ? { ...entry, explicitFalse: true } : entry);
    if (!extensions.has(entry.oid)) extensions.set(entry.oid, { critical, value: entry.value });
  }
  if (
    serial.tag !== TAG.INTEGER ||
    signature.tag !== TAG.SEQUENCE ||
    issuer.tag !== TAG.SEQUENCE ||
    validity.tag !== TAG.SEQUENCE ||
    validity.children.length !== 2 ||
    subject.tag !== TAG.SEQUENCE ||
    spki.tag !== TAG.SEQUENCE
  ) {
    throw new Error('malformed TBSCertificate');
  }
  return {
    tbs,
    version,
    serial,
    signature,
    issuer,
    validity,
    notBefore: decodeTime(notBefore),
    notAfter: decodeTime(notAfter),
    subject,
    spki,
    uniqueIdentifiers: rest.some(
      (field) => field.tag === contextTag(1, false) || field.tag === contextTag(2, false),
    ),
    extensionList,
    extensions,
  };
}

/** basicConstraints value → { ca, pathLen }. */
export function readBasicConstraints(value: Uint8Array): { ca: boolean; pathLen?: number } {
  const root = readDer(value, { maxDepth: 2 });
  let ca = false;
  let pathLen: number | undefined;
  for (const field of root.children) {
    if (field.tag === TAG.BOOLEAN) ca = content(field)[0] === 0xff;
    else if (field.tag === TAG.INTEGER) pathLen = Number(decodeInteger(field));
  }
  return pathLen === undefined ? { ca } : { ca, pathLen };
}

/**
 * Reads an issuer's certificate once. Refuses a certificate that cannot issue: not a CA, no
 * keyCertSign, no subjectKeyIdentifier (RFC 5280 §4.2.1.1 needs it for the AKI), or a key we
 * cannot sign with.
 */
export function createIssuerContext(options: CreateIssuerContextOptions): IssuerContext {
  const der = Uint8Array.from(certificateDer(options.certificate));
  const fields = readCertificateFields(der);
  const spki = Uint8Array.from(encoding(fields.spki));
  const key = inspectPublicKey(spki);
  const basic = fields.extensions.get(OID.basicConstraints);
  const constraints = basic ? readBasicConstraints(basic.value) : { ca: false };
  if (!constraints.ca)
    throw new Error(`issuer ${options.id}: the certificate is not a CA (basicConstraints cA)`);
  const keyUsage = fields.extensions.get(OID.keyUsage);
  if (keyUsage) {
    const bits = bitStringBytes(readDer(keyUsage.value, { maxDepth: 1 })).bytes;
    // RFC 5280 §4.2.1.3: keyCertSign is bit 5.
    if (((bits[0] ?? 0) & 0x04) === 0) throw new Error(`issuer ${options.id}: keyUsage lacks keyCertSign`);
  }
  const ski = fields.extensions.get(OID.subjectKeyIdentifier);
  if (!ski) throw new Error(`issuer ${options.id}: the certificate has no subjectKeyIdentifier`);
  const skiValue = readDer(ski.value, { maxDepth: 1 });
  const nameConstraints = fields.extensions.get(OID.nameConstraints);
  return Object.freeze({
    id: options.id,
    certificate: der,
    subject: Uint8Array.from(encoding(fields.subject)),
    subjectKeyIdentifier: Uint8Array.from(content(skiValue)),
    publicKey: spki,
    keyAlgorithm: key.name,
    signatureAlgorithm: signatureAlgorithmForKey(key.name),
    notBefore: fields.notBefore,
    notAfter: fields.notAfter,
    ...(constraints.pathLen === undefined ? {} : { pathLenConstraint: constraints.pathLen }),
    ...(nameConstraints ? { nameConstraints: parseNameConstraints(nameConstraints.value) } : {}),
    ...(options.superiorNameConstraints?.length
      ? { superiorNameConstraints: options.superiorNameConstraints }
      : {}),
    ...urls(options),
  });
}

export interface SelfIssuerOptions extends IssuerUrls {
  id: string;
  subject: readonly SubjectAttribute[];
  /** SubjectPublicKeyInfo, DER. */
  publicKey: Uint8Array;
  notBefore: Date;
  notAfter: Date;
  pathLenConstraint?: number;
}

/** The issuer of a self-signed root: itself. */
export function createSelfIssuerContext(options: SelfIssuerOptions): IssuerContext {
  const spki = Uint8Array.from(options.publicKey);
  const key = inspectPublicKey(spki);
  return Object.freeze({
    id: options.id,
    subject: encodeName(options.subject),
    subjectKeyIdentifier: subjectKeyIdentifier(spki),
    publicKey: spki,
    keyAlgorithm: key.name,
    signatureAlgorithm: signatureAlgorithmForKey(key.name),
    notBefore: options.notBefore,
    notAfter: options.notAfter,
    ...(options.pathLenConstraint === undefined ? {} : { pathLenConstraint: options.pathLenConstraint }),
    ...urls(options),
  });
}

function urls(options: IssuerUrls): IssuerUrls {
  const out: IssuerUrls = {};
  for (const name of ['crlUrl', 'ocspUrl', 'caIssuersUrl'] as const) {
    const url = options[name];
    if (url === undefined) continue;
    if (!/^https?:\/\/[^\s]+$/.test(url) || /[^\x21-\x7e]/.test(url)) {
      throw new Error(`${name} must be an absolute http(s) URL in ASCII: ${url}`);
    }
    out[name] = url;
  }
  if (options.crlShards !== undefined) {
    if (!Number.isInteger(options.crlShards) || options.crlShards < 1 || options.crlShards > 65_536) {
      throw new Error(`crlShards must be an integer from 1 to 65536: ${options.crlShards}`);
    }
    out.crlShards = options.crlShards;
  }
  if (options.deltaCrls) out.deltaCrls = true;
  return out;
}
