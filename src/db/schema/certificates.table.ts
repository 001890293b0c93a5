import { sql } from 'drizzle-orm';
import { check, index, integer, jsonb, pgTable, text, uniqueIndex } from 'drizzle-orm/pg-core';
import { bytea, timestamptz } from './columns.ts';
import { issuers } from './issuers.table.ts';

/**
 * pending: the serial is reserved and its TBS hash recorded; the HSM may or may not have signed.
 * good: signed and stored. revoked: on the CRL (DER present unless revoked while pending).
 * failed: known not to have been signed (the signer refused or was never reached).
 */
export const CERTIFICATE_STATUSES = ['pending', 'good', 'revoked', 'failed'] as const;
export type CertificateStatus = (typeof CERTIFICATE_STATUSES)[number];

import { REVOCATION_REASONS, type RevocationReason } from '../../lib/revocation-reasons.ts';

export { REVOCATION_REASONS, type RevocationReason };

export interface StoredSan {
  type: string;
  value: string;
}

export const certificates = pgTable(
  'certificates',
  {
    /** Canonical lowercase hex of the INTEGER content octets (src/lib/serial.ts), CA-wide unique. */
    serial: text('serial').primaryKey(),
    issuerId: text('issuer_id')
      .notNull()
      .references(() => issuers.id),
    policy: text('policy').notNull(),
    /** Who asked: an API key id, or `cli:<user>` for local commands. */
    requester: text('requester').notNull(),
    /** The subject DN as text (RFC 4514), for display and search; the DER is authoritative. */
    subject: text('subject').notNull(),
    sans: jsonb('sans').$type<StoredSan[]>().notNull().default(sql`'[]'::jsonb`),
    /** SHA-256 of the SubjectPublicKeyInfo: finds every certificate of a key (revocation by key). */
    spkiSha256: bytea('spki_sha256'),
    notBefore: timestamptz('not_before').notNull(),
    notAfter: timestamptz('not_after').notNull(),
    status: text('status').$type<CertificateStatus>().notNull(),
    /** The CRL shard whose distribution point the certificate names. */
    crlShard: integer('crl_shard').notNull().default(0),
    /** SHA-256 of the TBSCertificate: what the HSM was asked to sign, recorded before it signs. */
    tbsSha256: bytea('tbs_sha256').notNull(),
    csrSha256: bytea('csr_sha256'),
    der: bytea('der'),
    failureReason: text('failure_reason'),
    createdAt: timestamptz('created_at').notNull(),
    issuedAt: timestamptz('issued_at'),
    revokedAt: timestamptz('revoked_at'),
    revocationReason: text('revocation_reason').$type<RevocationReason>(),
    /** RFC 5280 §5.3.2: when the key is known or suspected to have been compromised. */
    invalidityDate: timestamptz('invalidity_date'),
    /** Last change of status or revocation details: what a delta CRL looks at. */
    statusChangedAt: timestamptz('status_changed_at').notNull(),
  },
  (t) => [
    // The canonical form of src/lib/serial.ts: lowercase hex octets, at most 20, positive and
    // minimal (a leading 00 only before an octet with its high bit set).
    check(
      'certificates_serial_canonical',
      sql`${t.serial} ~ '^[0-9a-f]{2,40}$' and length(${t.serial}) % 2 = 0 and ${t.serial} !~ '^00([0-7]|$)'`,
    ),
    check('certificates_status_known', sql`${t.status} in ('pending', 'good', 'revoked', 'failed')`),
    check('certificates_tbs_sha256_length', sql`octet_length(${t.tbsSha256}) = 32`),
    check('certificates_csr_sha256_length', sql`${t.csrSha256} is null or octet_length(${t.csrSha256}) = 32`),
    check(
      'certificates_spki_sha256_length',
      sql`${t.spkiSha256} is null or octet_length(${t.spkiSha256}) = 32`,
    ),
    check('certificates_good_has_der', sql`${t.status} <> 'good' or ${t.der} is not null`),
    check(
      'certificates_revoked_has_details',
      sql`(${t.status} = 'revoked') = (${t.revokedAt} is not null and ${t.revocationReason} is not null)`,
    ),
    check(
      'certificates_revocation_reason_known',
      sql`${t.revocationReason} is null or ${t.revocationReason} in ('unspecified', 'keyCompromise', 'cACompromise', 'affiliationChanged', 'superseded', 'cessationOfOperation', 'privilegeWithdrawn', 'aACompromise')`,
    ),
    check('certificates_crl_shard_range', sql`${t.crlShard} >= 0`),
    // A TBS contains its serial, so equal hashes mean the same reservation.
    uniqueIndex('certificates_tbs_sha256_key').on(t.tbsSha256),
    // Listing newest first, keyset-paged on (created_at, serial).
    index('certificates_created_idx').on(t.createdAt, t.serial),
    index('certificates_requester_created_idx').on(t.requester, t.createdAt, t.serial),
    index('certificates_issuer_status_not_after_idx').on(t.issuerId, t.status, t.notAfter),
    index('certificates_spki_sha256_idx').on(t.spkiSha256),
    // GET /v1/certificates?san=NAME (issue #32): containment queries on the SAN list.
    index('certificates_sans_gin_idx').using('gin', sql`${t.sans} jsonb_path_ops`),
    // Reconcile: pending rows are few, so a partial index stays small.
    index('certificates_pending_created_idx').on(t.createdAt).where(sql`${t.status} = 'pending'`),
    // Full CRLs page through an issuer's revoked serials; delta CRLs look at recent changes.
    index('certificates_revoked_crl_idx')
      .on(t.issuerId, t.crlShard, t.serial)
      .where(sql`${t.status} = 'revoked'`),
    // Which CRL shards an issuer has, and until when each must be published (issue #28).
    index('certificates_crl_shard_expiry_idx')
      .on(t.issuerId, t.crlShard, t.notAfter)
      .where(sql`${t.status} <> 'failed'`),
    index('certificates_revoked_changed_idx')
      .on(t.issuerId, t.crlShard, t.statusChangedAt)
      .where(sql`${t.status} = 'revoked'`),
  ],
);
