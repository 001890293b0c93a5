import { sql } from 'drizzle-orm';
import { type AnyPgColumn, check, integer, pgTable, text } from 'drizzle-orm/pg-core';
import { bytea, timestamptz } from './columns.ts';

export const ISSUER_STATUSES = ['active', 'disabled', 'retired'] as const;
/**
 * active: issues certificates. disabled: issues nothing new but still publishes CRLs and answers
 * OCSP for what it issued. retired: the same, kept for the record after its certificates expired.
 */
export type IssuerStatus = (typeof ISSUER_STATUSES)[number];

/** DESIGN.md "Issuers": a short stable id (a slug) used in URLs. */
export const ISSUER_ID_PATTERN = '^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$';

export const issuers = pgTable(
  'issuers',
  {
    id: text('id').primaryKey(),
    name: text('name').notNull(),
    /** The issuer above this one (null for a root); the chain is followed through it. */
    parentId: text('parent_id').references((): AnyPgColumn => issuers.id),
    certificateDer: bytea('certificate_der').notNull(),
    /** `hsm:partition=...;label=...` or an RFC 7512 `pkcs11:` URI: a handle, never key material. */
    keyUri: text('key_uri').notNull(),
    status: text('status').$type<IssuerStatus>().notNull().default('active'),
    /** URLs written into issued certificates (RFC 5280 §4.2.1.13, §4.2.2.1). */
    crlUrls: text('crl_urls').array().notNull().default(sql`'{}'::text[]`),
    ocspUrls: text('ocsp_urls').array().notNull().default(sql`'{}'::text[]`),
    caIssuersUrls: text('ca_issuers_urls').array().notNull().default(sql`'{}'::text[]`),
    /** How many CRL shards the issuer's certificates are spread over (shards numbered from 0). */
    crlShards: integer('crl_shards').notNull().default(1),
    createdAt: timestamptz('created_at').notNull(),
    updatedAt: timestamptz('updated_at').notNull(),
  },
  (t) => [
    check('issuers_id_slug', sql`${t.id} ~ '^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$'`),
    check('issuers_status_known', sql`${t.status} in ('active', 'disabled', 'retired')`),
    check('issuers_crl_shards_range', sql`${t.crlShards} between 1 and 65536`),
  ],
);
