import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Clock } from '../../lib/clock.ts';
import { AppError } from '../../lib/errors.ts';
import type { ApiKeyRecord, ApiKeyStore } from '../deps.ts';
import type { Principal, Role } from '../env.ts';

/**
 * API keys look like `sgk_<id>_<secret>`: the id (16 hex digits) finds the stored record, the
 * secret (32 CSPRNG bytes, base64url) is checked against the stored SHA-256 of it in constant
 * time. A fast hash is enough because the secret has 256 bits of entropy: nothing to brute-force.
 */
export const API_KEY_PREFIX = 'sgk_';
const KEY_FORMAT = /^sgk_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$/;

export interface NewApiKey {
  roles: Role[];
  policies?: string[];
  description?: string | null;
  expiresAt?: Date | null;
}

export const hashSecret = (secret: string): string =>
  createHash('sha256').update(secret, 'utf8').digest('hex');

/** Makes a key, stores only its hash, and returns the key: the only time it is ever visible. */
export async function createApiKey(
  store: ApiKeyStore,
  { roles, policies = [], description = null, expiresAt = null }: NewApiKey,
  clock: Clock,
): Promise<{ id: string; key: string; record: Omit<ApiKeyRecord, 'revokedAt'> }> {
  if (roles.length === 0) throw new Error('createApiKey: at least one role is required');
  const id = randomBytes(8).toString('hex');
  const secret = randomBytes(32).toString('base64url');
  const record = {
    id,
    secretHash: hashSecret(secret),
    roles: [...new Set(roles)],
    policies: [...new Set(policies)],
    description,
    createdAt: clock.now(),
    expiresAt,
  };
  await store.insert(record);
  return { id, key: `${API_KEY_PREFIX}${id}_${secret}`, record };
}

/** The principal of a stored key: admin may use every policy, '*' in the list means all. */
export function principalOf(record: ApiKeyRecord): Principal {
  const all = record.roles.includes('admin') || record.policies.includes('*');
  return {
    id: `apikey:${record.id}`,
    kind: 'apikey',
    roles: record.roles,
    policies: all ? '*' : record.policies,
  };
}

/**
 * Checks a presented key. Unknown id, wrong secret and revoked key all answer the same 401, so
 * a caller learns nothing about which ids exist; an expired but otherwise genuine key is a 403
 * (issue #8). The hash comparison is constant-time.
 */
export async function verifyApiKey(
  store: ApiKeyStore,
  presented: string,
  clock: Clock,
): Promise<ApiKeyRecord> {
  const invalid = new AppError(
    'auth.credential_invalid',
    'unauthenticated',
    'The API key is not valid (unknown, malformed or revoked).',
  );
  const match = KEY_FORMAT.exec(presented);
  if (!match) throw invalid;
  const [, id, secret] = match as unknown as [string, string, string];
  const record = await store.findById(id);
  const expected = Buffer.from(record?.secretHash ?? '0'.repeat(64), 'hex');
  const actual = Buffer.from(hashSecret(secret), 'hex');
  // Compare even when the id is unknown, so timing does not reveal which ids exist.
  const same = expected.length === actual.length && timingSafeEqual(expected, actual);
  if (!record || !same || record.revokedAt !== null) throw invalid;
  if (record.expiresAt !== null && record.expiresAt.getTime() <= clock.now().getTime()) {
    throw new AppError('auth.key_expired', 'forbidden', 'The API key has expired.');
  }
  return record;
}

/** `Authorization: Bearer <token>` (RFC 6750 §2.1); undefined when absent. */
export function bearerToken(header: string | undefined): string | undefined | null {
  if (header === undefined) return undefined;
  const match = /^Bearer +([^ ]+) *$/i.exec(header);
  return match ? (match[1] as string) : null;
}
