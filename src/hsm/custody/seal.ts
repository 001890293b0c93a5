import {
  createCipheriv,
  createDecipheriv,
  createPrivateKey,
  createPublicKey,
  createSecretKey,
  hkdfSync,
  type KeyObject,
  randomBytes,
} from 'node:crypto';

/**
 * AES-256-GCM (NIST SP 800-38D) with a random 96-bit nonce per message. Random nonces are safe
 * here: a partition encrypts a few thousand objects in its life, far below the 2^32 messages per
 * key that §8.3 allows for randomly generated IVs.
 */
export const NONCE_BYTES = 12;
const TAG_BYTES = 16;

export interface Sealed {
  nonce: Buffer;
  /** Ciphertext followed by the 16-byte tag. */
  sealed: Buffer;
}

export function seal(key: KeyObject, plaintext: Uint8Array, aad: Uint8Array): Sealed {
  const nonce = randomBytes(NONCE_BYTES);
  const cipher = createCipheriv('aes-256-gcm', key, nonce, { authTagLength: TAG_BYTES });
  cipher.setAAD(aad);
  const body = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return { nonce, sealed: Buffer.concat([body, cipher.getAuthTag()]) };
}

/** Opens a sealed message; undefined when the key, nonce, ciphertext, tag or associated data differ. */
export function open(key: KeyObject, { nonce, sealed }: Sealed, aad: Uint8Array): Buffer | undefined {
  if (nonce.length !== NONCE_BYTES || sealed.length < TAG_BYTES) return undefined;
  try {
    const decipher = createDecipheriv('aes-256-gcm', key, nonce, { authTagLength: TAG_BYTES });
    decipher.setAAD(aad);
    decipher.setAuthTag(sealed.subarray(sealed.length - TAG_BYTES));
    return Buffer.concat([decipher.update(sealed.subarray(0, sealed.length - TAG_BYTES)), decipher.final()]);
  } catch {
    return undefined;
  }
}

/** HKDF-SHA256 (RFC 5869) to a 32-byte key; `salt` is the partition id so keys never repeat across partitions. */
export function deriveKeyBytes(ikm: Uint8Array, salt: Uint8Array, info: string): Buffer {
  return Buffer.from(hkdfSync('sha256', ikm, salt, Buffer.from(info, 'utf8'), 32));
}

export function aesKey(bytes: Uint8Array): KeyObject {
  return createSecretKey(bytes);
}

/**
 * The keys derived from the partition master key, one per purpose (RFC 5869 §3.2, distinct
 * `info`): object sealing and the audit head's Ed25519 signing key never share key material.
 */
export interface PartitionKeys {
  /** AES-256-GCM key for key objects and the sealed index. */
  objects: KeyObject;
  /** Ed25519 private key that signs the audit log's head. */
  auditSigning: KeyObject;
  /**
   * Ed25519 private key that signs the cluster's membership and a member's proof that it holds
   * this master key (issue #23): every member derives the same one, nobody else can.
   */
  cluster: KeyObject;
}

const ED25519_PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');

export function derivePartitionKeys(masterKey: Uint8Array, partitionId: Uint8Array): PartitionKeys {
  const objects = deriveKeyBytes(masterKey, partitionId, 'signet-hsm objects v1');
  const ed25519 = (info: string) => {
    const seed = deriveKeyBytes(masterKey, partitionId, info);
    const key = createPrivateKey({
      key: Buffer.concat([ED25519_PKCS8_PREFIX, seed]),
      format: 'der',
      type: 'pkcs8',
    });
    seed.fill(0);
    return key;
  };
  const keys = {
    objects: aesKey(objects),
    auditSigning: ed25519('signet-hsm audit-signing v1'),
    cluster: ed25519('signet-hsm cluster v1'),
  };
  objects.fill(0);
  return keys;
}

export function auditPublicKeyDer(keys: PartitionKeys): Buffer {
  return createPublicKey(keys.auditSigning).export({ type: 'spki', format: 'der' });
}
