import {
  createPublicKey,
  createVerify,
  type KeyObject,
  constants as nodeCrypto,
  verify,
  type webcrypto,
} from 'node:crypto';
import { ecdsaP1363ToDer, type HashName, signatureAlgorithmIdentifier } from '../x509/algorithms.ts';

/**
 * How revocation signs: through a WebCrypto `Crypto` and a non-extractable `CryptoKey` handle
 * (the partition facade, src/hsm), as certificates are signed. The key handle
 * given must carry the purpose of what is signed ('crl' or 'ocsp') so the partition's audit log
 * records it and a key restricted to other purposes is refused.
 */
export interface RevocationSigner {
  crypto: { subtle: Pick<webcrypto.SubtleCrypto, 'sign'> };
  key: webcrypto.CryptoKey;
  /**
   * Multi-part signing (PKCS#11 C_SignInit / C_SignUpdate / C_SignFinal, `KeyManager.signStream`),
   * used for messages larger than one chunk: a large CRL exceeds the partition's frame limit.
   * Answers what `subtle.sign` would (IEEE P1363 r||s for ECDSA). For Ed25519 the partition
   * gathers the chunks (pure EdDSA has no multi-part form).
   */
  signStream?: (chunks: AsyncIterable<Uint8Array>) => Promise<Uint8Array>;
}

/** The signature algorithm a key implies, in both forms. */
export interface SignatureScheme {
  /** The parameters passed to `subtle.sign`. */
  webAlgorithm: webcrypto.AlgorithmIdentifier | webcrypto.EcdsaParams | webcrypto.RsaPssParams;
  /** The DER AlgorithmIdentifier written into the CRL or OCSP response. */
  algorithmIdentifier: Uint8Array;
  /** For verifying our own output: node's hash name, or null for Ed25519. */
  nodeHash: string | null;
  pss?: { saltLength: number };
  ecdsa: boolean;
}

const HASH_LENGTH: Readonly<Record<string, number>> = { 'SHA-256': 32, 'SHA-384': 48, 'SHA-512': 64 };
/** RFC 5758 §3.2 pairs each curve with its hash strength, as Boulder and every CA do. */
const CURVE_HASH: Readonly<Record<string, string>> = {
  'P-256': 'SHA-256',
  'P-384': 'SHA-384',
  'P-521': 'SHA-512',
};

function hashName(hash: unknown): string | undefined {
  if (typeof hash === 'string') return hash.toUpperCase();
  if (hash && typeof hash === 'object' && typeof (hash as { name?: unknown }).name === 'string') {
    return (hash as { name: string }).name.toUpperCase();
  }
  return undefined;
}

/**
 * Derives the signature scheme from the key's algorithm: ECDSA with the curve's hash (no
 * parameters, RFC 5758 §3.2), RSASSA-PKCS1-v1_5 and RSASSA-PSS with the key's hash (PSS salt =
 * hash length, MGF1 with the same hash, RFC 4055 §3.1), Ed25519 (RFC 8410 §3); the identifier is
 * written by src/x509/algorithms.ts.
 */
export function signatureSchemeFor(key: webcrypto.CryptoKey): SignatureScheme {
  const algorithm = key.algorithm as webcrypto.KeyAlgorithm & { namedCurve?: string; hash?: unknown };
  const nodeHashOf = (hash: string) => hash.replace('-', '').toLowerCase() as HashName;
  switch (algorithm.name) {
    case 'ECDSA': {
      // The key's own hash when it declares one (a partition handle does: its mechanism), else the
      // curve's strength.
      const hash = hashName(algorithm.hash) ?? CURVE_HASH[algorithm.namedCurve ?? ''];
      if (!hash || !HASH_LENGTH[hash] || !CURVE_HASH[algorithm.namedCurve ?? '']) {
        throw new Error(`unsupported ECDSA key ${String(algorithm.namedCurve)} with ${String(hash)}`);
      }
      const webAlgorithm = { name: 'ECDSA', hash, namedCurve: algorithm.namedCurve } as webcrypto.EcdsaParams;
      return {
        webAlgorithm,
        algorithmIdentifier: signatureAlgorithmIdentifier('ecdsa', nodeHashOf(hash)),
        nodeHash: nodeHashOf(hash),
        ecdsa: true,
      };
    }
    case 'RSASSA-PKCS1-v1_5':
    case 'RSA-PSS': {
      const hash = hashName(algorithm.hash);
      if (!hash || !HASH_LENGTH[hash]) throw new Error(`unsupported RSA hash ${String(hash)}`);
      const pss = algorithm.name === 'RSA-PSS';
      const declared = (algorithm as { saltLength?: unknown }).saltLength;
      const saltLength = typeof declared === 'number' ? declared : HASH_LENGTH[hash]!;
      const webAlgorithm = pss
        ? ({ name: 'RSA-PSS', saltLength } as webcrypto.RsaPssParams)
        : ({ name: 'RSASSA-PKCS1-v1_5' } as webcrypto.Algorithm);
      return {
        webAlgorithm,
        algorithmIdentifier: pss
          ? signatureAlgorithmIdentifier('rsa-pss', nodeHashOf(hash), saltLength)
          : signatureAlgorithmIdentifier('rsa-pkcs1', nodeHashOf(hash)),
        nodeHash: nodeHashOf(hash),
        ...(pss ? { pss: { saltLength } } : {}),
        ecdsa: false,
      };
    }
    case 'Ed25519':
      return {
        webAlgorithm: { name: 'Ed25519' },
        algorithmIdentifier: signatureAlgorithmIdentifier('ed25519'),
        nodeHash: null,
        ecdsa: false,
      };
    default:
      throw new Error(`unsupported signing key algorithm ${String(algorithm.name)}`);
  }
}

/**
 * Refuses a key handle made for another purpose before anything is signed. Partition handles
 * (src/hsm/webcrypto.ts) carry the purpose the partition records in its audit log; plain
 * WebCrypto keys (tests, offline tools) carry none and pass.
 */
export function assertPurpose(key: webcrypto.CryptoKey, purpose: 'crl' | 'ocsp'): void {
  const declared = (key as { purpose?: unknown }).purpose;
  if (declared !== undefined && declared !== purpose) {
    throw new Error(
      `the signing key handle is for ${String(declared)} signatures; this needs a '${purpose}' handle`,
    );
  }
}

/** The size of each piece handed to a streaming signer; well under the partition's 1 MiB frame. */
export const STREAM_CHUNK_BYTES = 256 * 1024;

async function* inChunks(data: Uint8Array, size: number): AsyncIterable<Uint8Array> {
  for (let offset = 0; offset < data.byteLength; offset += size) {
    yield data.subarray(offset, Math.min(offset + size, data.byteLength));
  }
}

/**
 * Signs `data` and answers the signature value as it goes into the BIT STRING: ECDSA converted
 * from IEEE P1363 to the DER Ecdsa-Sig-Value of RFC 3279 §2.2.3. Streams through `signStream`
 * when the signer has one and the data is larger than one chunk.
 */
export async function signWith(
  signer: RevocationSigner,
  scheme: SignatureScheme,
  data: Uint8Array,
  { chunkBytes = STREAM_CHUNK_BYTES }: { chunkBytes?: number } = {},
): Promise<Uint8Array> {
  const raw =
    signer.signStream && data.byteLength > chunkBytes
      ? await signer.signStream(inChunks(data, chunkBytes))
      : new Uint8Array(await signer.crypto.subtle.sign(scheme.webAlgorithm, signer.key, data));
  if (!scheme.ecdsa) return new Uint8Array(raw);
  return ecdsaP1363ToDer(new Uint8Array(raw));
}

/**
 * Verifies a signature (as it sits in the BIT STRING) with node:crypto. Used on every CRL before it
 * is published: a wrong key handle or a faulty signer must not produce a CRL that relying parties
 * reject (Boulder checks its signatures the same way).
 */
export function verifyWith(
  scheme: SignatureScheme,
  spki: Uint8Array | KeyObject,
  data: Uint8Array,
  signature: Uint8Array,
): boolean {
  const key =
    spki instanceof Uint8Array
      ? createPublicKey({ key: Buffer.from(spki), format: 'der', type: 'spki' })
      : spki;
  const options = scheme.pss
    ? { key, padding: nodeCrypto.RSA_PKCS1_PSS_PADDING, saltLength: scheme.pss.saltLength }
    : { key, dsaEncoding: 'der' as const };
  if (scheme.nodeHash === null) return verify(null, data, key, signature);
  return createVerify(scheme.nodeHash).update(data).verify(options, signature);
}
