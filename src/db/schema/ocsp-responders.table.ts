import { sql } from 'drizzle-orm';
import { check, index, pgTable, text } from 'drizzle-orm/pg-core';
import { bytea, timestamptz } from './columns.ts';
import { issuers } from './issuers.table.ts';

export const OCSP_RESPONDER_STATUSES = ['active', 'retired'] as const;
export type OcspResponderStatus = (typeof OCSP_RESPONDER_STATUSES)[number];

/**
 * Delegated OCSP responders (RFC 6960 §4.2.2.2): a certificate issued by the issuer with EKU
 * id-kp-OCSPSigning, whose key (a partition handle) signs the issuer's OCSP responses in place of
 * the CA key. Rotated by adding a new one and retiring the old.
 */
export const ocspResponders = pgTable(
  'ocsp_responders',
  {
    id: text('id').primaryKey(),
    issuerId: text('issuer_id')
      .notNull()
      .references(() => issuers.id),
    certificateDer: bytea('certificate_der').notNull(),
    keyUri: text('key_uri').notNull(),
    status: text('status').$type<OcspResponderStatus>().notNull().default('active'),
    notBefore: timestamptz('not_before').notNull(),
    notAfter: timestamptz('not_after').notNull(),
    createdAt: timestamptz('created_at').notNull(),
    updatedAt: timestamptz('updated_at').notNull(),
  },
  (t) => [
    check('ocsp_responders_id_slug', sql`${t.id} ~ '^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$'`),
    check('ocsp_responders_status_known', sql`${t.status} in ('active', 'retired')`),
    check('ocsp_responders_validity', sql`${t.notBefore} < ${t.notAfter}`),
    index('ocsp_responders_issuer_idx').on(t.issuerId, t.status, t.notAfter),
  ],
);
