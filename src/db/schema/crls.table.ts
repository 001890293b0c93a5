import { sql } from 'drizzle-orm';
import { bigint, boolean, check, index, integer, pgTable, primaryKey, text } from 'drizzle-orm/pg-core';
import { bytea, timestamptz } from './columns.ts';
import { issuers } from './issuers.table.ts';

export type CrlKind = 'full' | 'delta';

/**
 * The last CRL number handed out per issuer and shard. RFC 5280 §5.2.3: monotonically increasing;
 * §5.2.4: complete and delta CRLs of one scope share the sequence, so there is one row per scope.
 */
export const crlNumbers = pgTable(
  'crl_numbers',
  {
    issuerId: text('issuer_id')
      .notNull()
      .references(() => issuers.id),
    shard: integer('shard').notNull(),
    lastNumber: bigint('last_number', { mode: 'bigint' }).notNull(),
  },
  (t) => [
    primaryKey({ name: 'crl_numbers_pkey', columns: [t.issuerId, t.shard] }),
    check('crl_numbers_positive', sql`${t.lastNumber} > 0`),
  ],
);

/** The latest CRL of each kind per issuer and shard, as published. */
export const crls = pgTable(
  'crls',
  {
    issuerId: text('issuer_id')
      .notNull()
      .references(() => issuers.id),
    shard: integer('shard').notNull(),
    kind: text('kind').$type<CrlKind>().notNull(),
    crlNumber: bigint('crl_number', { mode: 'bigint' }).notNull(),
    /** For a delta CRL: the number of the complete CRL it is based on (RFC 5280 §5.2.4). */
    baseCrlNumber: bigint('base_crl_number', { mode: 'bigint' }),
    thisUpdate: timestamptz('this_update').notNull(),
    nextUpdate: timestamptz('next_update').notNull(),
    der: bytea('der').notNull(),
    /** SHA-256 of the DER: the HTTP ETag. */
    sha256: bytea('sha256').notNull(),
    generatedAt: timestamptz('generated_at').notNull(),
    generatedBy: text('generated_by'),
    /**
     * Signed elsewhere and imported (a root's CRL from the offline ceremony, or the first one
     * `signet init` signs with the root partition open): the online CA serves it, never re-signs it.
     */
    imported: boolean('imported').notNull().default(false),
  },
  (t) => [
    primaryKey({ name: 'crls_pkey', columns: [t.issuerId, t.shard, t.kind] }),
    check('crls_kind_known', sql`${t.kind} in ('full', 'delta')`),
    check('crls_delta_has_base', sql`(${t.kind} = 'delta') = (${t.baseCrlNumber} is not null)`),
    check('crls_sha256_length', sql`octet_length(${t.sha256}) = 32`),
    index('crls_next_update_idx').on(t.nextUpdate),
  ],
);
