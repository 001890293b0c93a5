import { randomBytes } from 'node:crypto';
import { type ApiKeyInfo, type ApiKeysRepository, hashApiKeySecret } from '../../db/api-keys.repository.ts';
import { AppError } from '../../lib/errors.ts';
import type { Principal, Role } from '../env.ts';

/**
 * API keys look like `sgk_<id>_<secret>`: the id (16 hex digits) finds the stored record, the
 * secret (32 CSPRNG bytes, base64url) is checked against the stored SHA-256 of it in constant
 * time (ApiKeysRepository.verify). A fast hash is enough because the secret has 256 bits of
 * entropy: there is nothing to brute-force.
 */
export const API_KEY_PREFIX = 'sgk_';
const KEY_FORMAT = /^sgk_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$/;

export interface NewApiKey {
  roles: Role[];
  /** Policies an issuer key may use; '*' for all. */
  policies?: string[];
  description?: string;
  expiresAt?: Date | null;
  /** Who created it (principal id, `cli:init`). */
  createdBy?: string | null;
}

/**
 * Makes a key, stores only its hash, and returns the key: the only time it is ever visible.
 * `signet init` calls this for DIR/secrets/admin-api-key.
 */
export async function createApiKey(
  repository: Pick<ApiKeysRepository, 'create'>,
  { roles, policies = [], description = '', expiresAt = null, createdBy = null }: NewApiKey,
): Promise<{ id: string; key: string; info: ApiKeyInfo }> {
  if (roles.length === 0) throw new Error('createApiKey: at least one role is required');
  const id = randomBytes(8).toString('hex');
  const secret = randomBytes(32).toString('base64url');
  const info = await repository.create({
    id,
    secretSha256: hashApiKeySecret(secret),
    roles,
    policies,
    description,
    expiresAt,
    createdBy,
  });
  return { id, key: `${API_KEY_PREFIX}${id}_${secret}`, info };
}

/** The principal of a stored key: admin may use every policy, and '*' in the list means all. */
export function principalOf(info: Pick<ApiKeyInfo, 'id' | 'roles' | 'policies'>): Principal {
  const all = info.roles.includes('admin') || info.policies.includes('*');
  return { id: `apikey:${info.id}`, kind: 'apikey', roles: info.roles, policies: all ? '*' : info.policies };
}

/**
 * Checks a presented key. Unknown id, wrong secret and revoked key all answer the same 401, so
 * a caller learns nothing about which ids exist; an expired but otherwise genuine key is a 403
 * (issue #8). The reason stays in `cause` for the logs.
 */
export async function verifyApiKey(
  repository: Pick<ApiKeysRepository, 'verify'>,
  presented: string,
): Promise<Principal> {
  const match = KEY_FORMAT.exec(presented);
  if (!match) throw invalidKey('malformed');
  const verdict = await repository.verify(match[1]!, hashApiKeySecret(match[2]!));
  if (verdict.ok) return principalOf(verdict.key);
  if (verdict.reason === 'expired')
    throw new AppError('auth.key_expired', 'forbidden', 'The API key has expired.');
  throw invalidKey(verdict.reason);
}

const invalidKey = (reason: string) =>
  new AppError(
    'auth.credential_invalid',
    'unauthenticated',
    'The API key is not valid (unknown, malformed or revoked).',
    undefined,
    {
      cause: reason,
    },
  );

/** `Authorization: Bearer <token>` (RFC 6750 §2.1); undefined when absent, null when another scheme. */
export function bearerToken(header: string | undefined): string | undefined | null {
  if (header === undefined) return undefined;
  const match = /^Bearer +([^ ]+) *$/i.exec(header);
  return match ? match[1]! : null;
}
