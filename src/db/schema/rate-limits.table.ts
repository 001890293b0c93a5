import { doublePrecision, index, integer, pgTable, primaryKey, text } from 'drizzle-orm/pg-core';
import { timestamptz } from './columns.ts';

/**
 * Token buckets shared by every node and HTTP worker on PostgreSQL (issue #29): per credential
 * (`rateLimit.perMinute`), per client address (failed authentication) and per ACME account or
 * address. One row per (scope, key), refilled and spent by a single UPSERT
 * (src/db/rate-limits.repository.ts), so concurrent takers on any node never spend a token twice.
 */
export const rateLimitBuckets = pgTable(
  'rate_limit_buckets',
  {
    /** Which budget: `credential`, `failed-auth`, `acme.new-account`, `acme.new-order`. */
    scope: text('scope').notNull(),
    /** The credential's id, the address key (src/api/client-address.ts) or the ACME account. */
    key: text('key').notNull(),
    /** Tokens left after the last take, before refill since `updated_at`. */
    tokens: doublePrecision('tokens').notNull(),
    /** What the last take granted: the UPSERT's RETURNING reads it (RETURNING sees only new values). */
    granted: integer('granted').notNull(),
    /** The database's clock at the last take: every node refills by one clock. */
    updatedAt: timestamptz('updated_at').notNull(),
  },
  (t) => [
    primaryKey({ name: 'rate_limit_buckets_pkey', columns: [t.scope, t.key] }),
    index('rate_limit_buckets_updated_idx').on(t.updatedAt),
  ],
);
