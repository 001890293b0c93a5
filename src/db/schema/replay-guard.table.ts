import { index, pgTable, primaryKey, text } from 'drizzle-orm/pg-core';
import { timestamptz } from './columns.ts';

/**
 * JWS ids (`jti`) already accepted, e.g. for revocation by proof of key possession, kept until the
 * JWS itself expires so that a captured request cannot be replayed.
 */
export const replayGuard = pgTable(
  'replay_guard',
  {
    /** What the jti belongs to, e.g. `revoke-by-key:<key thumbprint>`. */
    scope: text('scope').notNull(),
    jti: text('jti').notNull(),
    expiresAt: timestamptz('expires_at').notNull(),
  },
  (t) => [
    primaryKey({ name: 'replay_guard_pkey', columns: [t.scope, t.jti] }),
    index('replay_guard_expires_idx').on(t.expiresAt),
  ],
);
