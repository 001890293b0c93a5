import {
  constants,
  createHash,
  createPublicKey,
  type KeyObject,
  verify,
  type webcrypto,
  X509Certificate,
} from 'node:crypto';
import { readFile } from 'node:fs/promises';
import * as asn1js from 'asn1js';
import * as pkijs from 'pkijs';
import type { KeyManager, KeyRef, SignMechanism } from '../hsm/types.ts';
import { createPartitionCrypto, getCryptoKey } from '../hsm/webcrypto.ts';
import { canonicalJson } from '../lib/canonical-json.ts';
import { ecdsaP1363ToDer } from '../x509/algorithms.ts';
import { SignetCryptoEngine } from '../x509/crypto-engine.ts';
import { bitStringBytes, compareEncodings, readDer } from '../x509/der.ts';
import { readCertificateFields } from '../x509/issuer.ts';
import { OID } from '../x509/oids.ts';
import { PathValidationError, validateCertificatePath } from '../x509/path-validation.ts';
import { certificateDer } from '../x509/pem.ts';
import { CeremonyError } from './errors.ts';
import { resolvePath, sha256Hex } from './outputs.ts';
import { TRANSCRIPT_FORMAT, type Transcript } from './transcript.ts';

/**
 * The transcript's detached signatures over the exact bytes of the transcript file:
 *
 * - a raw signature (`.json.sig`), as `openssl dgst -sha256|-sha384 -verify PUB -signature SIG FILE`
 *   checks it (ECDSA as a DER Ecdsa-Sig-Value, RFC 3279 §2.2.3; RSA PKCS#1 v1.5, RFC 8017 §8.2)
 *   or, for Ed25519, `openssl pkeyutl -verify -rawin` (RFC 8032 §5.1: pure EdDSA signs the message
 *   itself); it needs only the signer's public key;
 * - when the signing key has a certificate, a detached CMS SignedData (`.json.p7s`, RFC 5652 §5)
 *   that carries the signer's certificate and its chain, so `openssl cms -verify -binary -content
 *   FILE -inform DER -in FILE.p7s -CAfile root.pem` checks it with the ceremony root as the only
 *   trust anchor. It is built and checked with pkijs, Ed25519 through SignetCryptoEngine (RFC 8419).
 */

export async function signTranscriptBytes(
  keys: KeyManager,
  key: KeyRef,
  mechanism: SignMechanism,
  data: Uint8Array,
): Promise<Uint8Array> {
  const raw = await keys.sign({ key, mechanism, purpose: 'other', data });
  // The partition answers ECDSA in IEEE P1363 (r||s); openssl wants the DER form.
  return mechanism.startsWith('ecdsa-') ? ecdsaP1363ToDer(raw) : raw;
}

export interface TrustAnchor {
  key: KeyObject;
  /** SHA-256 of the SubjectPublicKeyInfo, hex. */
  publicKeySha256: string;
  /** Present when the anchor was a certificate. */
  certificate?: X509Certificate;
}

/** Reads a verifier's anchor: a certificate or a public key, PEM or DER. */
export function parseAnchor(data: Uint8Array): TrustAnchor {
  const text = Buffer.from(data).toString('latin1');
  let certificate: X509Certificate | undefined;
  let spki: Buffer;
  try {
    if (text.includes('-----BEGIN CERTIFICATE-----')) {
      certificate = new X509Certificate(text);
      spki = certificate.publicKey.export({ type: 'spki', format: 'der' });
    } else if (text.includes('-----BEGIN PUBLIC KEY-----')) {
      spki = createPublicKey({ key: text, format: 'pem' }).export({ type: 'spki', format: 'der' });
    } else {
      try {
        spki = createPublicKey({ key: Buffer.from(data), format: 'der', type: 'spki' }).export({
          type: 'spki',
          format: 'der',
        });
      } catch {
        certificate = new X509Certificate(Buffer.from(data));
        spki = certificate.publicKey.export({ type: 'spki', format: 'der' });
      }
    }
  } catch (error) {
    throw new CeremonyError(
      'ceremony.anchor_invalid',
      'the anchor is neither a certificate nor a public key (PEM or DER)',
      {},
      { cause: error },
    );
  }
  const key = createPublicKey({ key: spki, format: 'der', type: 'spki' });
  return { key, publicKeySha256: sha256Hex(spki), ...(certificate ? { certificate } : {}) };
}

/** RFC 5280 §4.2.1.3: no keyUsage, or one with digitalSignature (bit 0). */
function mayDigitallySign(certificate: Uint8Array): boolean {
  const ku = readCertificateFields(certificate).extensions.get(OID.keyUsage);
  return !ku || ((bitStringBytes(readDer(ku.value, { maxDepth: 1 })).bytes[0] ?? 0) & 0x80) !== 0;
}

export interface VerifiedTranscript {
  transcript: Transcript;
  anchor: TrustAnchor;
}

const invalid = (code: string, message: string) => new CeremonyError(code, message);

/**
 * Checks a transcript against a key the verifier already trusts. Throws CeremonyError:
 * `ceremony.transcript_malformed`, `ceremony.transcript_anchor_not_allowed` (an anchor
 * certificate without digitalSignature, RFC 5280 §4.2.1.3), `ceremony.transcript_algorithm_mismatch`,
 * `ceremony.transcript_signature_invalid`, `ceremony.transcript_signer_mismatch`.
 */
export function verifyTranscript({
  transcript: bytes,
  signature,
  anchor: anchorBytes,
}: {
  transcript: Uint8Array;
  signature: Uint8Array;
  anchor: Uint8Array;
}): VerifiedTranscript {
  const anchor = parseAnchor(anchorBytes);
  if (anchor.certificate && !mayDigitallySign(new Uint8Array(anchor.certificate.raw))) {
    throw invalid(
      'ceremony.transcript_anchor_not_allowed',
      "the anchor certificate's key usage omits digitalSignature: its key may not sign transcripts (RFC 5280 §4.2.1.3)",
    );
  }
  const text = Buffer.from(bytes).toString('utf8');
  let transcript: Transcript;
  try {
    transcript = JSON.parse(text) as Transcript;
  } catch {
    throw invalid('ceremony.transcript_malformed', 'the transcript is not JSON');
  }
  if (typeof transcript !== 'object' || transcript === null || transcript.format !== TRANSCRIPT_FORMAT) {
    throw invalid('ceremony.transcript_malformed', `the transcript is not in format ${TRANSCRIPT_FORMAT}`);
  }
  const signer = transcript.signer;
  if (!signer || typeof signer.algorithm !== 'string' || typeof signer.publicKeySha256 !== 'string') {
    throw invalid('ceremony.transcript_malformed', 'the transcript names no signer');
  }
  const params = verifyParams(signer.algorithm, anchor.key);
  if (!params) {
    throw invalid(
      'ceremony.transcript_algorithm_mismatch',
      `the transcript says ${signer.algorithm}, which the anchor's ${describeKey(anchor.key)} key cannot verify`,
    );
  }
  let ok = false;
  try {
    ok = verify(params.hash, bytes, { key: anchor.key, ...params.options }, signature);
  } catch {
    ok = false;
  }
  if (!ok)
    throw invalid(
      'ceremony.transcript_signature_invalid',
      'the signature does not verify with the anchor key',
    );
  // Bytes outside the canonical form would be signed yet invisible to a JSON reader: refuse them.
  let canonical = '';
  try {
    canonical = `${canonicalJson(transcript)}\n`;
  } catch {
    canonical = '';
  }
  if (canonical !== text)
    throw invalid('ceremony.transcript_malformed', 'the transcript is not in canonical form');
  if (signer.publicKeySha256 !== anchor.publicKeySha256) {
    throw invalid(
      'ceremony.transcript_signer_mismatch',
      `the transcript names signer ${signer.publicKeySha256}, not the anchor ${anchor.publicKeySha256}`,
    );
  }
  return { transcript, anchor };
}

function describeKey(key: KeyObject): string {
  const details = key.asymmetricKeyDetails;
  return details?.namedCurve
    ? `${key.asymmetricKeyType} ${details.namedCurve}`
    : String(key.asymmetricKeyType);
}

function verifyParams(
  algorithm: string,
  key: KeyObject,
): { hash: string | null; options: { dsaEncoding?: 'der'; padding?: number } } | undefined {
  const type = key.asymmetricKeyType;
  const curve = key.asymmetricKeyDetails?.namedCurve;
  switch (algorithm) {
    case 'ecdsa-sha256':
      return type === 'ec' && curve === 'prime256v1'
        ? { hash: 'sha256', options: { dsaEncoding: 'der' } }
        : undefined;
    case 'ecdsa-sha384':
      return type === 'ec' && curve === 'secp384r1'
        ? { hash: 'sha384', options: { dsaEncoding: 'der' } }
        : undefined;
    case 'rsa-pkcs1-sha256':
    case 'rsa-pkcs1-sha384':
    case 'rsa-pkcs1-sha512':
      return type === 'rsa'
        ? { hash: algorithm.slice('rsa-pkcs1-'.length), options: { padding: constants.RSA_PKCS1_PADDING } }
        : undefined;
    case 'ed25519':
      return type === 'ed25519' ? { hash: null, options: {} } : undefined;
    default:
      return undefined;
  }
}

/** Compares each output's SHA-256 in the transcript with the file found relative to `dir`. */
export async function checkTranscriptOutputs(
  transcript: Transcript,
  dir: string,
): Promise<{ path: string; status: 'ok' | 'missing' | 'different' }[]> {
  const results: { path: string; status: 'ok' | 'missing' | 'different' }[] = [];
  for (const output of transcript.outputs ?? []) {
    let data: Buffer;
    try {
      data = await readFile(resolvePath(dir, output.path));
    } catch {
      results.push({ path: output.path, status: 'missing' });
      continue;
    }
    results.push({ path: output.path, status: sha256Hex(data) === output.sha256 ? 'ok' : 'different' });
  }
  return results;
}

// ---- CMS SignedData (RFC 5652) ------------------------------------------------------------------

const CMS_OID = {
  data: '1.2.840.113549.1.7.1',
  signedData: '1.2.840.113549.1.7.2',
  contentType: '1.2.840.113549.1.9.3',
  messageDigest: '1.2.840.113549.1.9.4',
  signingTime: '1.2.840.113549.1.9.5',
} as const;

const NODE_HASH: Record<string, string> = { 'SHA-256': 'sha256', 'SHA-384': 'sha384', 'SHA-512': 'sha512' };

/** The digest a signer uses: the one its key signs with, SHA-512 for Ed25519 (RFC 8419 §3.1). */
function cmsDigestOf(algorithm: { name: string; hash?: unknown }): string {
  if (algorithm.name.toUpperCase() === 'ED25519') return 'SHA-512';
  const hash = algorithm.hash;
  const name = (
    typeof hash === 'string' ? hash : (hash as { name?: string } | undefined)?.name
  )?.toUpperCase();
  if (!name || !NODE_HASH[name]) throw new Error(`no CMS digest for a ${algorithm.name} key`);
  return name;
}

/** RFC 5652 §11.3: UTCTime through 2049, GeneralizedTime from 2050. */
const signingTimeValue = (time: Date) =>
  time.getUTCFullYear() < 2050
    ? new asn1js.UTCTime({ valueDate: time })
    : new asn1js.GeneralizedTime({ valueDate: time });

export interface TranscriptCmsSigner {
  keys: KeyManager;
  key: KeyRef;
  /** The signing key's certificate, DER, then the CA certificates above it (the root may be one). */
  certificates: Uint8Array[];
  signingTime: Date;
}

/**
 * A detached CMS SignedData (RFC 5652 §5) over `data`, in a ContentInfo, DER: eContentType
 * id-data without eContent, the signer identified by issuer and serial number, signed attributes
 * content-type, signing-time and message-digest (§5.3, §11), signed by the partition key (purpose
 * `other`, as the raw transcript signature).
 */
export async function signTranscriptCms(signer: TranscriptCmsSigner, data: Uint8Array): Promise<Uint8Array> {
  const [own, ...chain] = signer.certificates;
  if (!own) throw new Error('a CMS signer needs its certificate');
  const engine = new SignetCryptoEngine(createPartitionCrypto(signer.keys), 'partition');
  const key = await getCryptoKey(signer.keys, signer.key, { purpose: 'other' });
  const digestName = cmsDigestOf(key.algorithm);
  const certificate = pkijs.Certificate.fromBER(own);
  const attributes = [
    new pkijs.Attribute({
      type: CMS_OID.contentType,
      values: [new asn1js.ObjectIdentifier({ value: CMS_OID.data })],
    }),
    new pkijs.Attribute({ type: CMS_OID.signingTime, values: [signingTimeValue(signer.signingTime)] }),
    new pkijs.Attribute({
      type: CMS_OID.messageDigest,
      values: [
        new asn1js.OctetString({ valueHex: createHash(NODE_HASH[digestName]!).update(data).digest() }),
      ],
    }),
  ];
  // The signature covers the DER of the SET OF attributes (§5.4): DER orders a SET OF by encoding.
  const encoded = (a: pkijs.Attribute) => new Uint8Array(a.toSchema().toBER());
  attributes.sort((a, b) => compareEncodings(encoded(a), encoded(b)));
  const signedData = new pkijs.SignedData({
    version: 1,
    encapContentInfo: new pkijs.EncapsulatedContentInfo({ eContentType: CMS_OID.data }),
    signerInfos: [
      new pkijs.SignerInfo({
        version: 1,
        sid: new pkijs.IssuerAndSerialNumber({
          issuer: certificate.issuer,
          serialNumber: certificate.serialNumber,
        }),
        signedAttrs: new pkijs.SignedAndUnsignedAttributes({ type: 0, attributes }),
      }),
    ],
    certificates: [certificate, ...chain.map((der) => pkijs.Certificate.fromBER(der))],
  });
  // A PartitionCryptoKey is CryptoKey-shaped (the facade's contract); WebCrypto's type is nominal.
  await signedData.sign(key as unknown as webcrypto.CryptoKey, 0, digestName, data, engine);
  const contentInfo = new pkijs.ContentInfo({
    contentType: CMS_OID.signedData,
    content: signedData.toSchema(true),
  });
  return new Uint8Array(contentInfo.toSchema().toBER());
}

export interface VerifiedTranscriptCms {
  /** The signer's certificate, DER. */
  signer: Uint8Array;
  /** From the signer's certificate up to the anchor, DER. */
  path: Uint8Array[];
  signingTime?: Date;
}

/**
 * Checks a detached CMS transcript signature against a root certificate the verifier trusts:
 * the signature over the signed attributes and their message digest of `transcript` (pkijs), the
 * signer's certificate path to the anchor at the signing time (RFC 5280 §6.1, name constraints
 * included), and the signer's key usage (digitalSignature, RFC 5280 §4.2.1.3). Throws
 * CeremonyError `ceremony.transcript_cms_invalid` or `ceremony.transcript_anchor_not_allowed`.
 */
export async function verifyTranscriptCms({
  transcript,
  cms,
  anchor,
}: {
  transcript: Uint8Array;
  cms: Uint8Array;
  anchor: Uint8Array | string;
}): Promise<VerifiedTranscriptCms> {
  const refuse = (message: string, cause?: unknown) =>
    new CeremonyError('ceremony.transcript_cms_invalid', message, {}, cause ? { cause } : undefined);
  let anchorDer: Uint8Array;
  try {
    const text = typeof anchor === 'string' ? anchor : Buffer.from(anchor).toString('latin1');
    anchorDer = Uint8Array.from(certificateDer(text.includes('-----BEGIN') ? text : anchor));
    readCertificateFields(anchorDer);
  } catch (error) {
    throw new CeremonyError(
      'ceremony.anchor_invalid',
      'a CMS transcript signature is checked against a certificate (PEM or DER)',
      {},
      { cause: error },
    );
  }
  let signedData: pkijs.SignedData;
  try {
    const contentInfo = pkijs.ContentInfo.fromBER(cms);
    if (contentInfo.contentType !== CMS_OID.signedData) throw new Error('not SignedData');
    signedData = new pkijs.SignedData({ schema: contentInfo.content });
  } catch (error) {
    throw refuse('the CMS file is not a CMS SignedData (RFC 5652 §5)', error);
  }
  if (signedData.encapContentInfo.eContentType !== CMS_OID.data || signedData.encapContentInfo.eContent) {
    throw refuse('the CMS SignedData is not a detached signature over id-data');
  }
  const signerInfo = signedData.signerInfos[0];
  if (signedData.signerInfos.length !== 1 || !signerInfo?.signedAttrs) {
    throw refuse('the CMS SignedData must have exactly one signer, with signed attributes');
  }
  const engine = new SignetCryptoEngine();
  let result: pkijs.SignedDataVerifyResult;
  try {
    result = (await signedData.verify(
      { signer: 0, data: Uint8Array.from(transcript).buffer, extendedMode: true },
      engine,
    )) as pkijs.SignedDataVerifyResult;
  } catch (error) {
    throw refuse(`the CMS signature does not verify: ${(error as Error).message}`, error);
  }
  if (!result.signatureVerified || !result.signerCertificate) {
    throw refuse('the CMS signature does not verify with the certificate it names');
  }
  const signer = new Uint8Array(result.signerCertificate.toSchema().toBER());
  const timeAttribute = signerInfo.signedAttrs.attributes.find((a) => a.type === CMS_OID.signingTime);
  const signingTime = (timeAttribute?.values[0] as asn1js.UTCTime | undefined)?.toDate();
  let path: Uint8Array[];
  try {
    ({ path } = await validateCertificatePath({
      certificate: signer,
      intermediates: (signedData.certificates ?? [])
        .filter((c): c is pkijs.Certificate => c instanceof pkijs.Certificate)
        .map((c) => new Uint8Array(c.toSchema().toBER())),
      trustAnchors: [anchorDer],
      time: signingTime ?? new Date(),
    }));
  } catch (error) {
    if (!(error instanceof PathValidationError)) throw error;
    throw refuse(`the CMS signer's certificate does not validate to the anchor: ${error.message}`, error);
  }
  if (!mayDigitallySign(signer)) {
    throw new CeremonyError(
      'ceremony.transcript_anchor_not_allowed',
      "the CMS signer certificate's key usage omits digitalSignature (RFC 5280 §4.2.1.3)",
    );
  }
  return { signer, path, ...(signingTime ? { signingTime } : {}) };
}
