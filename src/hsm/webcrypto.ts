import { createPublicKey, webcrypto } from 'node:crypto';
import { KEY_ALGORITHM_SPECS, MECHANISM_SPECS } from './mechanisms.ts';
import {
  HsmError,
  type KeyAlgorithm,
  type KeyInfo,
  type KeyManager,
  type KeyRef,
  type SignMechanism,
  type SignPurpose,
} from './types.ts';

/**
 * A WebCrypto facade over a KeyManager, so @peculiar/x509, @peculiar/asn1-ocsp users and pkijs
 * sign certificates, CRLs and OCSP responses through the partition unchanged (NOTES.md "Signing
 * with a key that lives in another process"). Libraries touch the signing key only through
 * `key.algorithm` and `crypto.subtle.sign(alg, key, data)`; everything else (digests, verifying,
 * random serial numbers, importing public keys) is Node's own WebCrypto.
 *
 * A handle never holds key material; exporting or wrapping it fails with CKR_KEY_UNEXTRACTABLE.
 * The purpose a handle signs for (recorded in the partition's audit log) is fixed when it is made.
 */

const subtle = webcrypto.subtle;
type WebAlgorithm = {
  name: string;
  hash?: string | { name: string };
  saltLength?: number;
  namedCurve?: string;
};

/** A non-extractable CryptoKey-shaped handle on a partition key. */
export class PartitionCryptoKey implements webcrypto.CryptoKey {
  readonly type = 'private' as const;
  readonly extractable = false;
  readonly usages: ['sign'] = ['sign'];

  constructor(
    readonly keyManager: KeyManager,
    readonly keyInfo: KeyInfo,
    /** How the partition is asked for the key: by id, so a key recreated under the same label is never silently used. */
    readonly keyRef: KeyRef,
    readonly purpose: SignPurpose,
    readonly mechanism: SignMechanism,
    /** What WebCrypto callers see; the hash in it is the one the key signs with (the key decides, NOTES.md). */
    readonly algorithm: Readonly<WebAlgorithm & Record<string, unknown>>,
  ) {}

  /** SubjectPublicKeyInfo, DER: give this to @peculiar/x509 as `publicKey` so it never calls exportKey. */
  get publicKey(): Uint8Array {
    return this.keyInfo.publicKey;
  }

  get [Symbol.toStringTag](): string {
    return 'CryptoKey';
  }
}

export interface CryptoKeyOptions {
  purpose: SignPurpose;
  /** Default: the key algorithm's default (ecdsa-p256 -> ecdsa-sha256, ecdsa-p384 -> ecdsa-sha384, rsa -> PKCS#1 v1.5). */
  mechanism?: SignMechanism;
}

const HASH_NAMES: Record<string, string> = { sha256: 'SHA-256', sha384: 'SHA-384', sha512: 'SHA-512' };

/** The WebCrypto algorithm a handle presents for a key algorithm and mechanism. */
export function webAlgorithm(
  info: KeyInfo,
  mechanism: SignMechanism,
): WebAlgorithm & Record<string, unknown> {
  const hash = mechanism === 'ed25519' ? undefined : { name: HASH_NAMES[mechanism.split('-').at(-1)!]! };
  switch (info.algorithm) {
    case 'ecdsa-p256':
    case 'ecdsa-p384':
      return { name: 'ECDSA', namedCurve: info.algorithm === 'ecdsa-p256' ? 'P-256' : 'P-384', hash };
    case 'ed25519':
      return { name: 'Ed25519' };
    default: {
      const details = createPublicKey({
        key: Buffer.from(info.publicKey),
        format: 'der',
        type: 'spki',
      }).asymmetricKeyDetails;
      const exponent = BigInt(details?.publicExponent ?? 65537n);
      const publicExponent = new Uint8Array(Buffer.from(exponent.toString(16).padStart(6, '0'), 'hex'));
      const pss = mechanism.startsWith('rsa-pss');
      return {
        name: pss ? 'RSA-PSS' : 'RSASSA-PKCS1-v1_5',
        modulusLength: details?.modulusLength,
        publicExponent,
        hash,
        ...(pss ? { saltLength: Number(hash!.name.slice(4)) / 8 } : {}),
      };
    }
  }
}

/** Finds a key and returns a handle that signs through the partition for `purpose`. */
export async function getCryptoKey(
  keyManager: KeyManager,
  keyRef: KeyRef,
  options: CryptoKeyOptions,
): Promise<PartitionCryptoKey> {
  const info = await keyManager.findKey(keyRef);
  if (!info) throw new HsmError('CKR_KEY_HANDLE_INVALID', 'no such key');
  const mechanism = options.mechanism ?? KEY_ALGORITHM_SPECS[info.algorithm].defaultMechanism;
  if (MECHANISM_SPECS[mechanism]?.family !== KEY_ALGORITHM_SPECS[info.algorithm].family) {
    throw new HsmError(
      'CKR_KEY_TYPE_INCONSISTENT',
      `mechanism ${mechanism} does not suit a ${info.algorithm} key`,
    );
  }
  return new PartitionCryptoKey(
    keyManager,
    info,
    { id: info.id },
    options.purpose,
    mechanism,
    webAlgorithm(info, mechanism),
  );
}

/**
 * A handle and its public key as a CryptoKeyPair, for X509CertificateGenerator.createSelfSigned
 * (which exports the public key: it is a plain, extractable public CryptoKey).
 */
export async function getCryptoKeyPair(
  keyManager: KeyManager,
  keyRef: KeyRef,
  options: CryptoKeyOptions,
): Promise<{ privateKey: PartitionCryptoKey; publicKey: webcrypto.CryptoKey }> {
  const privateKey = await getCryptoKey(keyManager, keyRef, options);
  const { name, namedCurve, hash } = privateKey.algorithm;
  const importAlgorithm =
    name === 'ECDSA' ? { name, namedCurve } : name === 'Ed25519' ? { name } : { name, hash };
  const publicKey = await subtle.importKey(
    'spki',
    privateKey.publicKey,
    importAlgorithm as webcrypto.AlgorithmIdentifier,
    true,
    ['verify'],
  );
  return { privateKey, publicKey };
}

const hashName = (hash: WebAlgorithm['hash']): string | undefined =>
  (typeof hash === 'string' ? hash : hash?.name)?.toUpperCase();

/**
 * Which mechanism a WebCrypto sign call asks for. The algorithm given is what the library
 * merged (x509 puts the key's algorithm last, so the key's hash wins); it must fit the key.
 */
export function mechanismFor(
  alg: WebAlgorithm,
  keyAlgorithm: KeyAlgorithm,
  fallback: SignMechanism,
): { mechanism: SignMechanism; saltLength?: number } {
  const family = KEY_ALGORITHM_SPECS[keyAlgorithm].family;
  const name = alg.name.toUpperCase();
  const hash =
    hashName(alg.hash) ?? (fallback === 'ed25519' ? undefined : HASH_NAMES[fallback.split('-').at(-1)!]);
  const bits = hash?.replace(/^SHA-?/, '');
  const mismatch = () =>
    new HsmError(
      'CKR_KEY_TYPE_INCONSISTENT',
      `a ${keyAlgorithm} key cannot sign with ${alg.name}${hash ? `/${hash}` : ''}`,
    );
  const unsupported = () =>
    new HsmError('CKR_MECHANISM_INVALID', `${alg.name} with ${hash ?? 'no hash'} is not offered`);
  switch (name) {
    case 'ECDSA':
      if (family !== 'ec') throw mismatch();
      if (bits !== '256' && bits !== '384') throw unsupported();
      return { mechanism: `ecdsa-sha${bits}` };
    case 'RSASSA-PKCS1-V1_5':
      if (family !== 'rsa') throw mismatch();
      if (bits !== '256' && bits !== '384' && bits !== '512') throw unsupported();
      return { mechanism: `rsa-pkcs1-sha${bits}` };
    case 'RSA-PSS':
      if (family !== 'rsa') throw mismatch();
      if (bits !== '256' && bits !== '384' && bits !== '512') throw unsupported();
      return {
        mechanism: `rsa-pss-sha${bits}`,
        ...(alg.saltLength !== undefined ? { saltLength: alg.saltLength } : {}),
      };
    case 'ED25519':
      if (family !== 'ed25519') throw mismatch();
      return { mechanism: 'ed25519' };
    case 'EDDSA':
      if (family !== 'ed25519' || (alg.namedCurve && alg.namedCurve.toUpperCase() !== 'ED25519'))
        throw mismatch();
      return { mechanism: 'ed25519' };
    default:
      throw new HsmError('CKR_MECHANISM_INVALID', `${alg.name} is not a signature algorithm here`);
  }
}

const toBytes = (data: unknown): Uint8Array => {
  if (data instanceof Uint8Array) return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  throw new HsmError('CKR_ARGUMENTS_BAD', 'data is not a BufferSource');
};

const normalize = (alg: unknown): WebAlgorithm =>
  typeof alg === 'string' ? { name: alg } : (alg as WebAlgorithm);

const unextractable = () =>
  new HsmError('CKR_KEY_UNEXTRACTABLE', 'a partition key never leaves the partition');

/** SubtleCrypto over the partition for handles, Node's WebCrypto for everything else. */
class PartitionSubtle {
  constructor(private readonly keyManager: KeyManager | undefined) {}

  async sign(algorithm: unknown, key: unknown, data: unknown): Promise<ArrayBuffer> {
    if (!(key instanceof PartitionCryptoKey)) {
      return subtle.sign(
        algorithm as webcrypto.AlgorithmIdentifier,
        key as webcrypto.CryptoKey,
        toBytes(data),
      );
    }
    if (this.keyManager && key.keyManager !== this.keyManager) {
      throw new HsmError('CKR_KEY_HANDLE_INVALID', 'this key handle belongs to another partition');
    }
    const { mechanism, saltLength } = mechanismFor(
      normalize(algorithm),
      key.keyInfo.algorithm,
      key.mechanism,
    );
    const signature = await key.keyManager.sign({
      key: key.keyRef,
      mechanism,
      purpose: key.purpose,
      data: toBytes(data),
      ...(saltLength !== undefined ? { saltLength } : {}),
    });
    const out = new ArrayBuffer(signature.byteLength);
    new Uint8Array(out).set(signature);
    return out;
  }

  /** Verifying with a handle uses its public key, locally. */
  async verify(algorithm: unknown, key: unknown, signature: unknown, data: unknown): Promise<boolean> {
    let verifyKey = key as webcrypto.CryptoKey;
    if (key instanceof PartitionCryptoKey) {
      const { name, namedCurve, hash } = key.algorithm;
      const alg = name === 'ECDSA' ? { name, namedCurve } : name === 'Ed25519' ? { name } : { name, hash };
      verifyKey = await subtle.importKey('spki', key.publicKey, alg as webcrypto.AlgorithmIdentifier, false, [
        'verify',
      ]);
    }
    return subtle.verify(
      algorithm as webcrypto.AlgorithmIdentifier,
      verifyKey,
      toBytes(signature),
      toBytes(data),
    );
  }

  async exportKey(format: unknown, key: unknown): Promise<unknown> {
    if (key instanceof PartitionCryptoKey) throw unextractable();
    return subtle.exportKey(format as 'spki', key as webcrypto.CryptoKey);
  }

  async wrapKey(
    format: unknown,
    key: unknown,
    wrappingKey: unknown,
    algorithm: unknown,
  ): Promise<ArrayBuffer> {
    if (key instanceof PartitionCryptoKey || wrappingKey instanceof PartitionCryptoKey) throw unextractable();
    return subtle.wrapKey(
      format as 'raw',
      key as webcrypto.CryptoKey,
      wrappingKey as webcrypto.CryptoKey,
      algorithm as webcrypto.AlgorithmIdentifier,
    );
  }

  async digest(algorithm: unknown, data: unknown): Promise<ArrayBuffer> {
    return subtle.digest(algorithm as webcrypto.AlgorithmIdentifier, toBytes(data));
  }

  // biome-ignore lint/suspicious/noExplicitAny: WebCrypto's overloads pass straight through to Node.
  importKey(...args: any[]): Promise<webcrypto.CryptoKey> {
    return (subtle.importKey as (...a: unknown[]) => Promise<webcrypto.CryptoKey>)(...args);
  }

  // biome-ignore lint/suspicious/noExplicitAny: as above.
  generateKey(...args: any[]): Promise<unknown> {
    return (subtle.generateKey as (...a: unknown[]) => Promise<unknown>)(...args);
  }

  /** Encryption, decryption and derivation are not what partition keys are for. */
  async encrypt(_algorithm: unknown, key: unknown, ...rest: unknown[]): Promise<ArrayBuffer> {
    this.refuse(key);
    return (subtle.encrypt as (...a: unknown[]) => Promise<ArrayBuffer>)(_algorithm, key, ...rest);
  }

  async decrypt(_algorithm: unknown, key: unknown, ...rest: unknown[]): Promise<ArrayBuffer> {
    this.refuse(key);
    return (subtle.decrypt as (...a: unknown[]) => Promise<ArrayBuffer>)(_algorithm, key, ...rest);
  }

  async deriveBits(algorithm: unknown, key: unknown, ...rest: unknown[]): Promise<ArrayBuffer> {
    this.refuse(key);
    return (subtle.deriveBits as (...a: unknown[]) => Promise<ArrayBuffer>)(algorithm, key, ...rest);
  }

  async deriveKey(algorithm: unknown, key: unknown, ...rest: unknown[]): Promise<unknown> {
    this.refuse(key);
    return (subtle.deriveKey as (...a: unknown[]) => Promise<unknown>)(algorithm, key, ...rest);
  }

  async unwrapKey(...args: unknown[]): Promise<unknown> {
    if (args.some((a) => a instanceof PartitionCryptoKey)) {
      throw new HsmError('CKR_KEY_FUNCTION_NOT_PERMITTED', 'partition keys only sign');
    }
    return (subtle.unwrapKey as (...a: unknown[]) => Promise<unknown>)(...args);
  }

  private refuse(key: unknown): void {
    if (key instanceof PartitionCryptoKey)
      throw new HsmError('CKR_KEY_FUNCTION_NOT_PERMITTED', 'partition keys only sign');
  }
}

/**
 * A `Crypto` whose subtle.sign goes to the partition for PartitionCryptoKey handles. Pass it to
 * x509's `create(params, crypto)`, pkijs' `CryptoEngine({ crypto })`, and so on. Given a
 * KeyManager, it signs only with handles from that KeyManager; without one, each handle signs
 * through its own.
 */
export function createPartitionCrypto(keyManager?: KeyManager): webcrypto.Crypto {
  const partitionSubtle = new PartitionSubtle(keyManager);
  return {
    subtle: partitionSubtle as unknown as webcrypto.SubtleCrypto,
    getRandomValues: <T extends ArrayBufferView | null>(array: T) =>
      webcrypto.getRandomValues(array as never) as T,
    randomUUID: () => webcrypto.randomUUID(),
  } as webcrypto.Crypto;
}
