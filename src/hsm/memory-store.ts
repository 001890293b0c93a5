import { createHash, randomBytes, scrypt, timingSafeEqual } from 'node:crypto';
import type {
  AuditEvent,
  AuditSink,
  PartitionStore,
  PartitionVault,
  StoredCertificate,
  StoredKeyObject,
  UserRecord,
} from './store.ts';
import { HsmError, type PartitionStatus, type UnsealRequest } from './types.ts';

/**
 * An in-memory partition: store, vault, audit sink and PIN hash. It serves unit tests, the
 * conformance suite and benchmarks (`signet hsm serve --ephemeral FILE`), and forgets everything
 * when the process ends. The sealed file store, users' PIN hashing and the audit chain of a real
 * partition come from src/hsm/custody/.
 */

const copyKey = (key: StoredKeyObject): StoredKeyObject => ({
  ...key,
  usages: [...key.usages],
  purposes: [...key.purposes],
  publicKey: Uint8Array.from(key.publicKey),
  privateKey: Uint8Array.from(key.privateKey),
});

/** Each read and write copies, so callers cannot change what is "stored" except by putKey/putUser. */
const copyCertificate = (c: StoredCertificate): StoredCertificate => ({ ...c, der: Uint8Array.from(c.der) });

export function createMemoryStore(
  seed: { keys?: StoredKeyObject[]; users?: UserRecord[] } = {},
): PartitionStore {
  const keys = new Map((seed.keys ?? []).map((k) => [k.id, copyKey(k)]));
  const users = new Map((seed.users ?? []).map((u) => [u.name, { ...u }]));
  const certificates = new Map<string, StoredCertificate>();
  return {
    listKeys: async () => [...keys.values()].map(copyKey),
    getKey: async (id) => {
      const key = keys.get(id);
      return key && copyKey(key);
    },
    putKey: async (key) => {
      keys.set(key.id, copyKey(key));
    },
    deleteKey: async (id) => {
      keys.delete(id);
      certificates.delete(id);
    },
    listCertificates: async () => [...certificates.values()].map(copyCertificate),
    putCertificate: async (certificate) => {
      if (!keys.has(certificate.keyId))
        throw new HsmError(
          'CKR_KEY_HANDLE_INVALID',
          `no key ${certificate.keyId} to store a certificate for`,
        );
      certificates.set(certificate.keyId, copyCertificate(certificate));
    },
    deleteCertificate: async (keyId) => {
      certificates.delete(keyId);
    },
    listUsers: async () => [...users.values()].map((u) => ({ ...u })),
    getUser: async (name) => {
      const user = users.get(name);
      return user && { ...user };
    },
    putUser: async (user) => {
      users.set(user.name, { ...user, ...(user.failures ? { failures: { ...user.failures } } : {}) });
    },
    deleteUser: async (name) => {
      users.delete(name);
    },
    close: async () => {},
  };
}

/** Keeps at least the last `limit` events in memory (tests read `events`); at most twice that. */
export class MemoryAuditSink implements AuditSink {
  readonly events: AuditEvent[] = [];
  constructor(private readonly limit = 100_000) {}

  async append(event: AuditEvent): Promise<void> {
    this.events.push(event);
    // Trimming in halves keeps append O(1) amortised.
    if (this.events.length >= 2 * this.limit) this.events.splice(0, this.events.length - this.limit);
  }

  async close(): Promise<void> {}
}

/**
 * A vault around an in-memory store. Without a secret it starts unsealed; with one it starts
 * sealed and opens only for that secret, compared in constant time over SHA-256 digests so the
 * comparison does not leak the secret's length either.
 */
export function createMemoryVault({
  store,
  secret,
}: {
  store: PartitionStore;
  secret?: Uint8Array;
}): PartitionVault {
  let unsealed = secret === undefined;
  const expected = secret && createHash('sha256').update(secret).digest();
  return {
    status: (): Pick<PartitionStatus, 'state' | 'sealing'> => ({
      state: unsealed ? 'unsealed' : 'sealed',
      ...(secret ? { sealing: { kind: 'secret' as const } } : {}),
    }),
    async unseal(material: UnsealRequest) {
      if (unsealed) throw new HsmError('CKR_OPERATION_NOT_PERMITTED', 'partition is already unsealed');
      if (!expected || !material.secret)
        throw new HsmError('CKR_UNSEAL_FAILED', 'this partition unseals with its secret');
      const given = createHash('sha256').update(material.secret).digest();
      if (!timingSafeEqual(given, expected)) throw new HsmError('CKR_UNSEAL_FAILED', 'wrong unseal secret');
      unsealed = true;
      return store;
    },
    async openUnsealed() {
      if (!unsealed) throw new HsmError('CKR_TOKEN_SEALED', 'partition is sealed');
      return store;
    },
  };
}

/**
 * scrypt (RFC 7914) PIN hashing for the in-memory partition, self-describing as
 * `scrypt$N$r$p$salt$hash` (base64). N = 2^14 keeps tests quick; the sealed store's hash is
 * custody's to choose.
 */
const SCRYPT = { N: 16384, r: 8, p: 1, keyLength: 32 };

function scryptAsync(
  pin: string,
  salt: Buffer,
  N: number,
  r: number,
  p: number,
  keyLength: number,
): Promise<Buffer> {
  return new Promise((resolve, reject) =>
    scrypt(pin, salt, keyLength, { N, r, p, maxmem: 256 * N * r }, (error, key) =>
      error ? reject(error) : resolve(key),
    ),
  );
}

/** A PIN hasher with another scrypt cost N (a power of two); tests use a cheap one. */
export function createScryptPinHasher({ N }: { N: number }): (pin: string) => Promise<string> {
  if (!Number.isInteger(Math.log2(N)) || N < 2 || N > 2 ** 20)
    throw new Error('scrypt N is a power of two up to 2^20');
  return async (pin) => {
    const salt = randomBytes(16);
    const hash = await scryptAsync(pin, salt, N, SCRYPT.r, SCRYPT.p, SCRYPT.keyLength);
    return ['scrypt', N, SCRYPT.r, SCRYPT.p, salt.toString('base64'), hash.toString('base64')].join('$');
  };
}

export const hashPinScrypt = createScryptPinHasher({ N: SCRYPT.N });

export async function verifyPinScrypt(user: UserRecord, pin: string): Promise<boolean> {
  const parts = user.pinHash.split('$');
  if (parts.length !== 6 || parts[0] !== 'scrypt') return false;
  const [N, r, p] = parts.slice(1, 4).map(Number) as [number, number, number];
  // Bounds keep a corrupted record from asking scrypt for gigabytes.
  if (![N, r, p].every(Number.isSafeInteger) || N < 2 || N > 2 ** 20 || r < 1 || r > 32 || p < 1 || p > 16) {
    return false;
  }
  const salt = Buffer.from(parts[4]!, 'base64');
  const expected = Buffer.from(parts[5]!, 'base64');
  if (expected.length < 16) return false;
  const actual = await scryptAsync(pin, salt, N, r, p, expected.length);
  return timingSafeEqual(actual, expected);
}
