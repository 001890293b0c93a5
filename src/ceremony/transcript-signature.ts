import { constants, createPublicKey, type KeyObject, verify } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { KeyUsageFlags, KeyUsagesExtension, X509Certificate } from '@peculiar/x509';
import type { KeyManager, KeyRef, SignMechanism } from '../hsm/types.ts';
import { ecdsaP1363ToDer } from '../x509/algorithms.ts';
import { canonicalJson } from './canonical-json.ts';
import { CeremonyError } from './errors.ts';
import { resolvePath, sha256Hex } from './outputs.ts';
import { TRANSCRIPT_FORMAT, type Transcript } from './transcript.ts';

/**
 * The transcript's detached signature: a raw signature over the exact bytes of the transcript
 * file, as `openssl dgst -sha256|-sha384 -verify PUB -signature SIG FILE` checks it (ECDSA as a
 * DER Ecdsa-Sig-Value, RFC 3279 §2.2.3; RSA PKCS#1 v1.5, RFC 8017 §8.2) or, for Ed25519,
 * `openssl pkeyutl -verify -rawin` (RFC 8032 §5.1: pure EdDSA signs the message itself).
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
      spki = Buffer.from(certificate.publicKey.rawData);
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
        spki = Buffer.from(certificate.publicKey.rawData);
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
  if (anchor.certificate) {
    const ku = anchor.certificate.getExtension(KeyUsagesExtension);
    if (ku && (ku.usages & KeyUsageFlags.digitalSignature) === 0) {
      throw invalid(
        'ceremony.transcript_anchor_not_allowed',
        "the anchor certificate's key usage omits digitalSignature: its key may not sign transcripts (RFC 5280 §4.2.1.3)",
      );
    }
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
