import { sql } from 'drizzle-orm';
import { check, index, integer, jsonb, pgTable, primaryKey, text } from 'drizzle-orm/pg-core';
import { certificates } from './certificates.table.ts';
import { bytea, timestamptz } from './columns.ts';

export type IdempotencyState = 'in_flight' | 'done';

/** Idempotency-Key records (IETF httpapi draft), scoped to the credential that sent the key. */
export const idempotencyRecords = pgTable(
  'idempotency_records',
  {
    credentialId: text('credential_id').notNull(),
    key: text('key').notNull(),
    /** SHA-256 of what identifies the request (method, path, body): a reuse with another body is refused. */
    requestHash: bytea('request_hash').notNull(),
    state: text('state').$type<IdempotencyState>().notNull(),
    responseStatus: integer('response_status'),
    responseHeaders: jsonb('response_headers').$type<Record<string, string>>(),
    responseBody: bytea('response_body'),
    /**
     * The server instance running an in-flight request (Database.instances): once that instance is
     * gone, a retry recovers the record at once instead of waiting (issue #17). Null in records
     * written before owners were recorded.
     */
    owner: text('owner'),
    /**
     * The certificate this request stored, set in the transaction that stored it: a retry after a
     * crash answers with it instead of issuing a second one.
     */
    certificateSerial: text('certificate_serial').references(() => certificates.serial),
    createdAt: timestamptz('created_at').notNull(),
    expiresAt: timestamptz('expires_at').notNull(),
  },
  (t) => [
    primaryKey({ name: 'idempotency_records_pkey', columns: [t.credentialId, t.key] }),
    check('idempotency_records_state_known', sql`${t.state} in ('in_flight', 'done')`),
    check(
      'idempotency_records_done_has_response',
      sql`${t.state} <> 'done' or (${t.responseStatus} is not null and ${t.responseBody} is not null)`,
    ),
    index('idempotency_records_expires_idx').on(t.expiresAt),
  ],
);
