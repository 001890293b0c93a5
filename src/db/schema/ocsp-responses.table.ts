import { sql } from 'drizzle-orm';
import { boolean, check, index, pgTable, text } from 'drizzle-orm/pg-core';
import { bytea, timestamptz } from './columns.ts';
import { issuers } from './issuers.table.ts';

/**
 * Pre-signed OCSP responses (issue #27): one per CertID as clients send it (a SHA-1 and a SHA-256
 * CertID of one certificate are two rows, as their responses echo different bytes), signed the
 * first time it is asked for and served to every request without a nonce until it is refreshed.
 * A revocation marks a serial's rows stale in its own transaction, so no node serves them again.
 */
export const ocspResponses = pgTable(
  'ocsp_responses',
  {
    /** SHA-256 of the CertID DER exactly as received: the lookup key. */
    certIdSha256: bytea('cert_id_sha256').primaryKey(),
    /** Canonical serial (src/lib/serial.ts). */
    serial: text('serial').notNull(),
    issuerId: text('issuer_id')
      .notNull()
      .references(() => issuers.id),
    /** The CertID as received: a refresh signs a response echoing it again. */
    certIdDer: bytea('cert_id_der').notNull(),
    responseDer: bytea('response_der').notNull(),
    /** good or revoked: what the response says. */
    certStatus: text('cert_status').$type<'good' | 'revoked'>().notNull(),
    producedAt: timestamptz('produced_at').notNull(),
    nextUpdate: timestamptz('next_update').notNull(),
    /** Set by a revocation: the response must be signed again before it is served. */
    stale: boolean('stale').notNull().default(false),
  },
  (t) => [
    check('ocsp_responses_cert_id_sha256_length', sql`octet_length(${t.certIdSha256}) = 32`),
    check('ocsp_responses_cert_status_known', sql`${t.certStatus} in ('good', 'revoked')`),
    index('ocsp_responses_serial_idx').on(t.serial),
  ],
);
