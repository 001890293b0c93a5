/**
 * API keys. The secret is high-entropy (the API layer generates it from a CSPRNG), so a plain
 * SHA-256 of it is stored and no slow hash is needed; a presented key is found by its public id
 * and its secret compared in constant time.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { and, asc, eq, isNull } from 'drizzle-orm';
import { type Clock, systemClock } from '../lib/clock.ts';
import type { Db } from './database.ts';
import { ApiKeyExistsError, isUniqueViolation } from './errors.ts';
import { API_KEY_ROLES, type ApiKeyRole, apiKeys } from './schema/index.ts';

export type ApiKeyRecord = typeof apiKeys.$inferSelect;
/** What may be shown: everything but the secret's hash. */
export type ApiKeyInfo = Omit<ApiKeyRecord, 'secretSha256'>;

export interface NewApiKey {
  /** The public part of the key, e.g. `k_4f9a...`: [A-Za-z0-9_-], at most 64. */
  id: string;
  secretSha256: Uint8Array;
  roles: ApiKeyRole[];
  policies?: string[];
  description?: string;
  expiresAt?: Date | null;
  createdBy?: string | null;
}

export type ApiKeyVerification =
  | { ok: true; key: ApiKeyInfo }
  | { ok: false; reason: 'unknown' | 'mismatch' | 'revoked' | 'expired' };

export interface ApiKeysRepository {
  /** ApiKeyExistsError if the id is taken. */
  create(input: NewApiKey): Promise<ApiKeyInfo>;
  findById(id: string): Promise<ApiKeyRecord | null>;
  /** By id; revoked keys only with `includeRevoked`. */
  list(options?: { includeRevoked?: boolean }): Promise<ApiKeyInfo[]>;
  /** False if there is no such key or it was already revoked. */
  revoke(id: string): Promise<boolean>;
  /**
   * Checks a presented key: looks the id up, compares SHA-256(secret) in constant time, then
   * refuses revoked and expired keys. The reason is for logs and audit, not for the client.
   */
  verify(id: string, secretSha256: Uint8Array): Promise<ApiKeyVerification>;
}

/** SHA-256 of the secret part of an API key, as stored. */
export function hashApiKeySecret(secret: string): Uint8Array {
  return Uint8Array.from(createHash('sha256').update(secret, 'utf8').digest());
}

const ID = /^[A-Za-z0-9_-]{1,64}$/;
/** Compared against when the id is unknown, so both paths do the same work. */
const DUMMY_HASH = new Uint8Array(32);

export function createApiKeysRepository({ db, clock = systemClock }: { db: Db; clock?: Clock }) {
  const repository: ApiKeysRepository = {
    async create(input) {
      if (!ID.test(input.id)) throw new TypeError('an API key id is 1 to 64 of [A-Za-z0-9_-]');
      if (!(input.secretSha256 instanceof Uint8Array) || input.secretSha256.length !== 32) {
        throw new TypeError('secretSha256 must be 32 octets');
      }
      if (input.roles.length === 0) throw new TypeError('an API key needs at least one role');
      for (const role of input.roles) {
        if (!API_KEY_ROLES.includes(role)) throw new TypeError(`unknown role ${JSON.stringify(role)}`);
      }
      try {
        const [row] = await db
          .insert(apiKeys)
          .values({
            id: input.id,
            secretSha256: input.secretSha256,
            roles: [...new Set(input.roles)],
            policies: [...new Set(input.policies ?? [])],
            description: input.description ?? '',
            createdAt: clock.now(),
            expiresAt: input.expiresAt ?? null,
            createdBy: input.createdBy ?? null,
          })
          .returning();
        return withoutSecret(row!);
      } catch (error) {
        if (isUniqueViolation(error)) throw new ApiKeyExistsError(input.id);
        throw error;
      }
    },

    async findById(id) {
      if (!ID.test(id)) return null;
      const rows = await db.select().from(apiKeys).where(eq(apiKeys.id, id));
      return rows[0] ?? null;
    },

    async list({ includeRevoked = false } = {}) {
      const rows = await db
        .select()
        .from(apiKeys)
        .where(includeRevoked ? undefined : isNull(apiKeys.revokedAt))
        .orderBy(asc(apiKeys.id));
      return rows.map(withoutSecret);
    },

    async revoke(id) {
      const rows = await db
        .update(apiKeys)
        .set({ revokedAt: clock.now() })
        .where(and(eq(apiKeys.id, id), isNull(apiKeys.revokedAt)))
        .returning({ id: apiKeys.id });
      return rows.length === 1;
    },

    async verify(id, secretSha256) {
      return verifyRecord(await repository.findById(id), secretSha256, clock.now());
    },
  };
  return repository;
}

/**
 * The verdict on a presented key given its stored record (null: unknown id): SHA-256(secret)
 * compared in constant time, then revoked and expired keys refused. Shared by the repository and
 * its in-memory cache (api-keys.cache.ts), so both decide alike.
 */
export function verifyRecord(
  record: ApiKeyRecord | null,
  secretSha256: Uint8Array,
  now: Date,
): ApiKeyVerification {
  const presented =
    secretSha256 instanceof Uint8Array && secretSha256.length === 32 ? secretSha256 : DUMMY_HASH;
  const matches = timingSafeEqual(record?.secretSha256 ?? DUMMY_HASH, presented);
  if (!record) return { ok: false, reason: 'unknown' };
  if (!matches || presented === DUMMY_HASH) return { ok: false, reason: 'mismatch' };
  if (record.revokedAt !== null) return { ok: false, reason: 'revoked' };
  if (record.expiresAt !== null && record.expiresAt.getTime() <= now.getTime()) {
    return { ok: false, reason: 'expired' };
  }
  return { ok: true, key: withoutSecret(record) };
}

function withoutSecret(record: ApiKeyRecord): ApiKeyInfo {
  const { secretSha256: _secret, ...info } = record;
  return info;
}
