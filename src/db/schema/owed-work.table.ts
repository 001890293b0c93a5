import { sql } from 'drizzle-orm';
import { bigint, index, integer, pgSequence, pgTable, primaryKey, text } from 'drizzle-orm/pg-core';
import { timestamptz } from './columns.ts';

/**
 * Kinds of work owed after a commit (DESIGN.md "Storage": recorded in the same transaction,
 * drained by whichever node holds the lock). `crl`: a CRL must be published for an issuer shard
 * (key `<issuerId>/<shard>`). `ocsp`: a revoked certificate's pre-signed OCSP responses must be
 * signed again (key: the canonical serial; issue #27). New kinds are new values here, checked by
 * src/db/owed-work.repository.ts: the table does not change, so a node that does not know a kind
 * yet leaves its rows alone.
 */
export const OWED_WORK_KINDS = ['crl', 'ocsp'] as const;
export type OwedWorkKind = (typeof OWED_WORK_KINDS)[number];

/**
 * Versions of owed work, from one sequence for every row: a row deleted and owed again gets a
 * version it never had, so a worker holding an old claim can never delete the new owing.
 */
export const owedWorkVersions = pgSequence('owed_work_version_seq');

/**
 * The outbox: one row per piece of owed work, coalesced by (kind, key). Owing it again while it is
 * owed gives it a new `version` and keeps `created_at`, so a stream of revocations never postpones
 * the first one's deadline; a worker deletes the row only if `version` is still the one it read
 * before doing the work, so an owing that arrived meanwhile is never lost.
 */
export const owedWork = pgTable(
  'owed_work',
  {
    kind: text('kind').$type<OwedWorkKind>().notNull(),
    key: text('key').notNull(),
    /** New at every owing (owed_work_version_seq): the drain's compare-and-delete token. */
    version: bigint('version', { mode: 'bigint' }).notNull().default(sql`nextval('owed_work_version_seq')`),
    /** When the oldest owing that no finished work covers yet was recorded. */
    createdAt: timestamptz('created_at').notNull(),
    /** When the latest owing was recorded. */
    updatedAt: timestamptz('updated_at').notNull(),
    /** Do not start before this (e.g. a response to renew at a given time); owed at once otherwise. */
    notBefore: timestamptz('not_before').notNull(),
    /** Failed attempts since it was owed, and the last failure (for operators; no secrets). */
    attempts: integer('attempts').notNull().default(0),
    lastError: text('last_error'),
    lastAttemptAt: timestamptz('last_attempt_at'),
  },
  (t) => [
    primaryKey({ name: 'owed_work_pkey', columns: [t.kind, t.key] }),
    index('owed_work_kind_not_before_idx').on(t.kind, t.notBefore),
  ],
);
