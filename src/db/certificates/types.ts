import type { CertificateStatus, certificates, RevocationReason, StoredSan } from '../schema/index.ts';

export type CertificateRecord = typeof certificates.$inferSelect;
/** A certificate without its DER: what lists return. */
export type CertificateSummary = Omit<CertificateRecord, 'der'>;

export interface CertificateReservation {
  /** Canonical form (src/lib/serial.ts normalizeSerial); anything else is refused. */
  serial: string;
  issuerId: string;
  policy: string;
  requester: string;
  subject: string;
  sans: StoredSan[];
  notBefore: Date;
  notAfter: Date;
  /** SHA-256 of the DER TBSCertificate about to be signed (32 octets). */
  tbsSha256: Uint8Array;
  csrSha256?: Uint8Array | null;
  spkiSha256?: Uint8Array | null;
  crlShard?: number;
}

export interface CertificateStatusInfo {
  serial: string;
  issuerId: string;
  status: CertificateStatus;
  notAfter: Date;
  revokedAt: Date | null;
  revocationReason: RevocationReason | null;
  invalidityDate: Date | null;
}

export interface CertificateListFilter {
  status?: CertificateStatus | CertificateStatus[];
  policy?: string;
  issuerId?: string;
  requester?: string;
  /** notAfter < expiresBefore */
  expiresBefore?: Date;
  /** notAfter >= expiresAfter */
  expiresAfter?: Date;
  /** Certificates naming this SAN (of this type, when given): a containment match on `sans`. */
  san?: { type?: string; value: string };
  /** From a previous page's nextCursor. */
  cursor?: string;
  /** Default 50, at most 1000. */
  limit?: number;
}

export interface CertificatePage {
  /** Newest first. */
  items: CertificateSummary[];
  /** Pass back as `cursor` for the next page; null when this is the last. */
  nextCursor: string | null;
}

export interface RevokeRequest {
  reason: RevocationReason;
  revokedAt: Date;
  /** RFC 5280 §5.3.2 invalidityDate. */
  invalidityDate?: Date | null;
}

/**
 * revoked: newly revoked. unchanged: it already was, and the existing revocation stands.
 * reason_updated: it already was, and the reason became keyCompromise (the revocation time stays).
 */
export type RevokeOutcome = 'revoked' | 'unchanged' | 'reason_updated';

export interface Revocation {
  serial: string;
  issuerId: string;
  /** The CRL shard that lists it. */
  crlShard?: number;
  revokedAt: Date;
  reason: RevocationReason;
  invalidityDate: Date | null;
}

export interface RevokeResult {
  outcome: RevokeOutcome;
  revocation: Revocation;
}

/** One revokedCertificates entry (RFC 5280 §5.1.2.6). */
export interface CrlEntry {
  serial: string;
  revokedAt: Date;
  reason: RevocationReason;
  invalidityDate: Date | null;
  /** When the entry last changed: a delta CRL lists entries changed after its base. */
  changedAt: Date;
}

export interface CrlListOptions {
  /** Default 0. */
  shard?: number;
  /**
   * Leave out certificates that expired before this instant (RFC 5280 §3.3 allows removing an
   * entry once the certificate has expired). Default: keep all.
   */
  expiredBefore?: Date;
}
