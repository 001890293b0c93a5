import { sql } from 'drizzle-orm';
import { check, pgTable, text } from 'drizzle-orm/pg-core';
import { bytea, timestamptz } from './columns.ts';

export const API_KEY_ROLES = ['issuer', 'revoker', 'auditor', 'admin'] as const;
export type ApiKeyRole = (typeof API_KEY_ROLES)[number];

/**
 * API credentials. Only a hash of the secret is stored: the key is high-entropy, so SHA-256 is
 * enough (no slow hash needed) and lookup goes by the public id, then a constant-time compare.
 */
export const apiKeys = pgTable(
  'api_keys',
  {
    id: text('id').primaryKey(),
    secretSha256: bytea('secret_sha256').notNull(),
    roles: text('roles').array().$type<ApiKeyRole[]>().notNull(),
    /** Policies this key may issue under (role issuer). */
    policies: text('policies').array().notNull().default(sql`'{}'::text[]`),
    description: text('description').notNull().default(''),
    createdAt: timestamptz('created_at').notNull(),
    expiresAt: timestamptz('expires_at'),
    revokedAt: timestamptz('revoked_at'),
    createdBy: text('created_by'),
  },
  (t) => [
    check('api_keys_secret_sha256_length', sql`octet_length(${t.secretSha256}) = 32`),
    check('api_keys_roles_known', sql`${t.roles} <@ array['issuer', 'revoker', 'auditor', 'admin']::text[]`),
    check('api_keys_id_format', sql`${t.id} ~ '^[A-Za-z0-9_-]{1,64}$'`),
  ],
);
