/**
 * Certificates: the ledger that makes issuance crash-safe. An issuance is
 *
 *   reservePending (serial + SHA-256 of the TBS, status pending) -> HSM signs -> markIssued (DER,
 *   status good) -> the certificate is returned,
 *
 * so a crash at any step leaves, at worst, a pending row naming exactly what the HSM may have
 * signed (its TBS hash, which the partition's audit log also records). A serial that is taken
 * fails the reservation (SerialCollisionError); the caller builds a new TBS with a new serial, and
 * a serial, once reserved, is never reused: rows are never deleted.
 */
import {
  and,
  asc,
  count,
  desc,
  eq,
  getTableColumns,
  gt,
  gte,
  inArray,
  lt,
  or,
  type SQL,
  sql,
} from 'drizzle-orm';
import { type Clock, systemClock } from '../lib/clock.ts';
import { normalizeSerial } from '../lib/serial.ts';
import { decodeCursor, encodeCursor } from './cursor.ts';
import type { Db } from './database.ts';
import { CertificateNotFoundError, CertificateStateError, SerialCollisionError } from './errors.ts';
import { crlWorkKey, oweWithin } from './owed-work.repository.ts';
import { rowsOf } from './rows.ts';
import {
  CERTIFICATE_STATUSES,
  type CertificateStatus,
  certificates,
  REVOCATION_REASONS,
  type RevocationReason,
  type StoredSan,
} from './schema/index.ts';
import { checkStorableText } from './text.ts';

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

export interface CertificatesRepository {
  reservePending(reservation: CertificateReservation): Promise<void>;
  /**
   * Many reservations in one transaction (the fast path: one commit for a batch of issuances).
   * Serials that are taken, or repeated within the batch, are reported, not thrown: every other
   * reservation is made.
   */
  reservePendingMany(
    reservations: CertificateReservation[],
  ): Promise<{ reserved: string[]; collided: string[] }>;
  /**
   * Stores the signed certificate of a reserved serial and returns its status: good, or revoked
   * if it was revoked while pending. Storing the same DER again is a no-op; another DER is refused.
   * A serial marked failed becomes good: a certificate that exists is never left unaccounted for.
   */
  markIssued(serial: string, der: Uint8Array): Promise<'good' | 'revoked'>;
  /** markIssued for a batch in one transaction; lists the serials that were not stored. */
  markIssuedMany(items: { serial: string; der: Uint8Array }[]): Promise<{ notStored: string[] }>;
  /**
   * markIssuedMany, then `alsoWithin(tx, notStored)` in the same transaction: e.g. the audit events
   * of the stored certificates (AuditRepository.appendWithin), so a certificate is never stored
   * unaudited nor audited unstored. If `alsoWithin` throws, nothing of the batch is stored and
   * the error is thrown.
   */
  markIssuedManyWith(
    items: { serial: string; der: Uint8Array }[],
    alsoWithin: (tx: Db, notStored: string[]) => Promise<void>,
  ): Promise<{ notStored: string[] }>;
  /** A pending serial that is known not to have been signed. False if it was not pending. */
  markFailed(serial: string, reason: string): Promise<boolean>;
  findBySerial(serial: string): Promise<CertificateRecord | null>;
  /** The few columns OCSP needs. */
  findStatus(serial: string): Promise<CertificateStatusInfo | null>;
  findByTbsSha256(tbsSha256: Uint8Array): Promise<CertificateRecord | null>;
  listBySpkiSha256(spkiSha256: Uint8Array): Promise<CertificateSummary[]>;
  list(filter?: CertificateListFilter): Promise<CertificatePage>;
  /**
   * Applies the revoke rule (src/revocation/revoke.usecase.ts) under a row lock. A change also owes
   * a CRL for the certificate's issuer shard (owed_work, same transaction); `unchanged` owes none.
   */
  revoke(serial: string, request: RevokeRequest): Promise<RevokeResult>;
  /** One page of an issuer shard's revoked certificates, by serial, after `afterSerial`. */
  listRevokedForCrl(
    issuerId: string,
    options?: CrlListOptions & { afterSerial?: string; limit?: number },
  ): Promise<CrlEntry[]>;
  /** Every revoked entry of an issuer shard, fetched page by page (for CRLs of any size). */
  streamRevokedForCrl(
    issuerId: string,
    options?: CrlListOptions & { pageSize?: number },
  ): AsyncGenerator<CrlEntry>;
  /** Revocations made or changed after `since` (a delta CRL's content), oldest change first. */
  streamRevocationChangesSince(
    issuerId: string,
    since: Date,
    options?: CrlListOptions & { pageSize?: number },
  ): AsyncGenerator<CrlEntry>;
  /** Pending reservations created before `createdBefore`, oldest first: candidates for reconcile. */
  listPendingOlderThan(createdBefore: Date, limit?: number): Promise<CertificateSummary[]>;
  countByStatus(filter?: { issuerId?: string }): Promise<Record<CertificateStatus, number>>;
}

const DEFAULT_LIMIT = 50;
const MAX_LIMIT = 1000;
/** Rows per INSERT/UPDATE statement in batches; keeps parameters far below PostgreSQL's 65535. */
const BATCH_CHUNK = 500;

const { der: _der, ...summaryColumns } = getTableColumns(certificates);

export function createCertificatesRepository({ db, clock = systemClock }: { db: Db; clock?: Clock }) {
  /**
   * One INSERT for many rows, with one array parameter per column (unnest): the statement and its
   * parameters stay the same size whatever the batch size, which is about twice as fast as a
   * multi-row VALUES list on PGlite and binds 12 parameters instead of thousands on PostgreSQL.
   * Bytes travel as hex text and timestamps as ISO 8601 text, which both drivers send the same way.
   */
  async function insertReservations(tx: Db, rows: CertificateReservation[]): Promise<Set<string>> {
    const now = clock.now().toISOString();
    const column = <T>(pick: (r: CertificateReservation) => T) => sql.param(rows.map(pick));
    const result = await tx.execute(sql`
      insert into ${certificates} (serial, issuer_id, policy, requester, subject, sans, spki_sha256,
        not_before, not_after, status, crl_shard, tbs_sha256, csr_sha256, created_at, status_changed_at)
      select u.serial, u.issuer_id, u.policy, u.requester, u.subject, u.sans::jsonb, decode(u.spki, 'hex'),
        u.not_before::timestamptz, u.not_after::timestamptz, 'pending', u.crl_shard, decode(u.tbs, 'hex'),
        decode(u.csr, 'hex'), ${now}::timestamptz, ${now}::timestamptz
      from unnest(
        ${column((r) => r.serial)}::text[],
        ${column((r) => r.issuerId)}::text[],
        ${column((r) => r.policy)}::text[],
        ${column((r) => r.requester)}::text[],
        ${column((r) => r.subject)}::text[],
        ${column((r) => JSON.stringify(r.sans.map(({ type, value }) => ({ type, value }))))}::text[],
        ${column((r) => hex(r.spkiSha256))}::text[],
        ${column((r) => r.notBefore.toISOString())}::text[],
        ${column((r) => r.notAfter.toISOString())}::text[],
        ${column((r) => r.crlShard ?? 0)}::int[],
        ${column((r) => hex(r.tbsSha256))}::text[],
        ${column((r) => hex(r.csrSha256))}::text[]
      ) as u(serial, issuer_id, policy, requester, subject, sans, spki, not_before, not_after, crl_shard, tbs, csr)
      -- A taken serial (or TBS) is skipped, not an error, so a batch is not lost to one collision.
      on conflict do nothing
      returning serial`);
    return new Set(rowsOf<{ serial: string }>(result).map((row) => row.serial));
  }

  const repository: CertificatesRepository = {
    async reservePending(reservation) {
      checkReservation(reservation);
      const inserted = await insertReservations(db, [reservation]);
      if (!inserted.has(reservation.serial)) throw new SerialCollisionError(reservation.serial);
    },

    async reservePendingMany(reservations) {
      reservations.forEach(checkReservation);
      if (reservations.length === 0) return { reserved: [], collided: [] };
      const inserted = new Set<string>();
      // Inserting in serial order makes every writer take the unique-index entries in the same
      // order, so two batches that share serials wait for each other instead of deadlocking.
      const ordered = [...reservations].sort(bySerial);
      await db.transaction(async (tx) => {
        for (let i = 0; i < ordered.length; i += BATCH_CHUNK) {
          for (const serial of await insertReservations(tx, ordered.slice(i, i + BATCH_CHUNK))) {
            inserted.add(serial);
          }
        }
      });
      const reserved: string[] = [];
      const collided: string[] = [];
      // A serial repeated within the batch is inserted once; its later occurrences collided.
      const seen = new Set<string>();
      for (const { serial } of reservations) {
        if (inserted.has(serial) && !seen.has(serial)) reserved.push(serial);
        else collided.push(serial);
        seen.add(serial);
      }
      return { reserved, collided };
    },

    async markIssued(serial, der) {
      const canonical = normalizeSerial(serial);
      if (!(der instanceof Uint8Array) || der.length === 0)
        throw new TypeError('der must be non-empty bytes');
      const { notStored, statuses } = await storeDer(db, [{ serial: canonical, der }]);
      if (notStored.length === 0) return statuses.get(canonical)!;
      const existing = await repository.findBySerial(canonical);
      if (!existing) throw new CertificateNotFoundError(canonical);
      if (existing.der && Buffer.from(existing.der).equals(der) && existing.status !== 'pending') {
        return existing.status === 'revoked' ? 'revoked' : 'good';
      }
      throw new CertificateStateError(
        canonical,
        `serial ${canonical} already has another certificate stored`,
      );
    },

    async markIssuedMany(items) {
      return repository.markIssuedManyWith(items, async () => {});
    },

    async markIssuedManyWith(items, alsoWithin) {
      const canonical = items.map(({ serial, der }) => {
        if (!(der instanceof Uint8Array) || der.length === 0)
          throw new TypeError('der must be non-empty bytes');
        return { serial: normalizeSerial(serial), der };
      });
      if (new Set(canonical.map((item) => item.serial)).size !== canonical.length) {
        throw new TypeError('markIssuedMany was given the same serial twice');
      }
      if (canonical.length === 0) return { notStored: [] };
      // Rows are locked in serial order, as reservations are, so concurrent batches cannot deadlock.
      const ordered = [...canonical].sort(bySerial);
      const failed = new Set<string>();
      let notStored: string[] = [];
      await db.transaction(async (tx) => {
        for (let i = 0; i < ordered.length; i += BATCH_CHUNK) {
          for (const serial of (await storeDer(tx, ordered.slice(i, i + BATCH_CHUNK))).notStored)
            failed.add(serial);
        }
        notStored = canonical.filter((item) => failed.has(item.serial)).map((item) => item.serial);
        await alsoWithin(tx, notStored);
      });
      return { notStored };
    },

    async markFailed(serial, reason) {
      const now = clock.now();
      const updated = await db
        .update(certificates)
        .set({ status: 'failed', failureReason: reason, statusChangedAt: now })
        .where(and(eq(certificates.serial, normalizeSerial(serial)), eq(certificates.status, 'pending')))
        .returning({ serial: certificates.serial });
      return updated.length === 1;
    },

    async findBySerial(serial) {
      const rows = await db
        .select()
        .from(certificates)
        .where(eq(certificates.serial, normalizeSerial(serial)));
      return rows[0] ?? null;
    },

    async findStatus(serial) {
      const rows = await db
        .select({
          serial: certificates.serial,
          issuerId: certificates.issuerId,
          status: certificates.status,
          notAfter: certificates.notAfter,
          revokedAt: certificates.revokedAt,
          revocationReason: certificates.revocationReason,
          invalidityDate: certificates.invalidityDate,
        })
        .from(certificates)
        .where(eq(certificates.serial, normalizeSerial(serial)));
      return rows[0] ?? null;
    },

    async findByTbsSha256(tbsSha256) {
      const rows = await db.select().from(certificates).where(eq(certificates.tbsSha256, tbsSha256));
      return rows[0] ?? null;
    },

    async listBySpkiSha256(spkiSha256) {
      return db
        .select(summaryColumns)
        .from(certificates)
        .where(eq(certificates.spkiSha256, spkiSha256))
        .orderBy(desc(certificates.createdAt), desc(certificates.serial));
    },

    async list(filter = {}) {
      const limit = clampLimit(filter.limit);
      const conditions: (SQL | undefined)[] = [];
      if (filter.status !== undefined) {
        const statuses = Array.isArray(filter.status) ? filter.status : [filter.status];
        for (const status of statuses) checkOneOf('status', status, CERTIFICATE_STATUSES);
        conditions.push(inArray(certificates.status, statuses));
      }
      if (filter.policy !== undefined) conditions.push(eq(certificates.policy, filter.policy));
      if (filter.issuerId !== undefined) conditions.push(eq(certificates.issuerId, filter.issuerId));
      if (filter.requester !== undefined) conditions.push(eq(certificates.requester, filter.requester));
      if (filter.expiresBefore !== undefined)
        conditions.push(lt(certificates.notAfter, filter.expiresBefore));
      if (filter.expiresAfter !== undefined) conditions.push(gte(certificates.notAfter, filter.expiresAfter));
      if (filter.san !== undefined) {
        checkStorableText('san value', filter.san.value);
        const wanted = filter.san.type === undefined ? { value: filter.san.value } : filter.san;
        // jsonb containment, served by the GIN index on sans (jsonb_path_ops).
        conditions.push(sql`${certificates.sans} @> ${JSON.stringify([wanted])}::jsonb`);
      }
      if (filter.cursor !== undefined) {
        const [createdMs, serial] = decodeCursor(filter.cursor, ['number', 'string'] as const);
        const createdAt = new Date(createdMs);
        conditions.push(
          or(
            lt(certificates.createdAt, createdAt),
            and(eq(certificates.createdAt, createdAt), lt(certificates.serial, serial)),
          ),
        );
      }
      const rows = await db
        .select(summaryColumns)
        .from(certificates)
        .where(and(...conditions))
        .orderBy(desc(certificates.createdAt), desc(certificates.serial))
        .limit(limit + 1);
      const items = rows.slice(0, limit);
      const last = items.at(-1);
      const nextCursor =
        rows.length > limit && last ? encodeCursor([last.createdAt.getTime(), last.serial]) : null;
      return { items, nextCursor };
    },

    async revoke(serial, request) {
      const canonical = normalizeSerial(serial);
      checkOneOf('reason', request.reason, REVOCATION_REASONS);
      checkDate('revokedAt', request.revokedAt);
      if (request.invalidityDate != null) checkDate('invalidityDate', request.invalidityDate);
      return db.transaction(async (tx) => {
        const rows = await tx
          .select({
            status: certificates.status,
            issuerId: certificates.issuerId,
            crlShard: certificates.crlShard,
            revokedAt: certificates.revokedAt,
            revocationReason: certificates.revocationReason,
            invalidityDate: certificates.invalidityDate,
          })
          .from(certificates)
          .where(eq(certificates.serial, canonical))
          .for('update');
        const row = rows[0];
        // A failed reservation was never signed: there is nothing to revoke.
        if (!row || row.status === 'failed') throw new CertificateNotFoundError(canonical);
        const now = clock.now();
        // Every change below owes a CRL, recorded in this transaction (issue #17): if the process
        // dies once this commits, the next one (or another node) still publishes it.
        const oweCrl = () =>
          oweWithin(tx, [{ kind: 'crl', key: crlWorkKey(row.issuerId, row.crlShard) }], now);
        if (row.status === 'revoked') {
          const existing: Revocation = {
            serial: canonical,
            issuerId: row.issuerId,
            revokedAt: row.revokedAt!,
            reason: row.revocationReason!,
            invalidityDate: row.invalidityDate,
          };
          // Only a move to keyCompromise changes an existing revocation (CA/B Forum BR §4.9.1.1,
          // RFC 5280 §5.3.1); the revocation date stays, the compromise date goes in invalidityDate.
          if (request.reason !== 'keyCompromise' || existing.reason === 'keyCompromise') {
            return { outcome: 'unchanged', revocation: existing };
          }
          const invalidityDate = request.invalidityDate ?? existing.invalidityDate;
          await tx
            .update(certificates)
            .set({ revocationReason: 'keyCompromise', invalidityDate, statusChangedAt: now })
            .where(eq(certificates.serial, canonical));
          await oweCrl();
          return {
            outcome: 'reason_updated',
            revocation: { ...existing, reason: 'keyCompromise', invalidityDate },
          };
        }
        // pending or good. A pending serial may have been signed already: revoking it puts it on
        // the CRL whatever happens next.
        const invalidityDate = request.invalidityDate ?? null;
        await tx
          .update(certificates)
          .set({
            status: 'revoked',
            revokedAt: request.revokedAt,
            revocationReason: request.reason,
            invalidityDate,
            statusChangedAt: now,
          })
          .where(eq(certificates.serial, canonical));
        await oweCrl();
        return {
          outcome: 'revoked',
          revocation: {
            serial: canonical,
            issuerId: row.issuerId,
            revokedAt: request.revokedAt,
            reason: request.reason,
            invalidityDate,
          },
        };
      });
    },

    async listRevokedForCrl(issuerId, options = {}) {
      const conditions: (SQL | undefined)[] = [
        eq(certificates.issuerId, issuerId),
        eq(certificates.crlShard, options.shard ?? 0),
        eq(certificates.status, 'revoked'),
      ];
      if (options.expiredBefore) conditions.push(gte(certificates.notAfter, options.expiredBefore));
      if (options.afterSerial !== undefined) conditions.push(gt(certificates.serial, options.afterSerial));
      return db
        .select(crlEntryColumns)
        .from(certificates)
        .where(and(...conditions))
        .orderBy(asc(certificates.serial))
        .limit(clampLimit(options.limit, 10_000));
    },

    async *streamRevokedForCrl(issuerId, options = {}) {
      const pageSize = clampLimit(options.pageSize ?? 5000, 10_000);
      let afterSerial: string | undefined;
      for (;;) {
        const page = await repository.listRevokedForCrl(issuerId, {
          ...options,
          afterSerial,
          limit: pageSize,
        });
        yield* page;
        if (page.length < pageSize) return;
        afterSerial = page.at(-1)!.serial;
      }
    },

    async *streamRevocationChangesSince(issuerId, since, options = {}) {
      checkDate('since', since);
      const pageSize = clampLimit(options.pageSize ?? 5000, 10_000);
      let after: { changedAt: Date; serial: string } | undefined;
      for (;;) {
        const conditions: (SQL | undefined)[] = [
          eq(certificates.issuerId, issuerId),
          eq(certificates.crlShard, options.shard ?? 0),
          eq(certificates.status, 'revoked'),
          gt(certificates.statusChangedAt, since),
        ];
        if (options.expiredBefore) conditions.push(gte(certificates.notAfter, options.expiredBefore));
        if (after) {
          conditions.push(
            or(
              gt(certificates.statusChangedAt, after.changedAt),
              and(eq(certificates.statusChangedAt, after.changedAt), gt(certificates.serial, after.serial)),
            ),
          );
        }
        const page = await db
          .select(crlEntryColumns)
          .from(certificates)
          .where(and(...conditions))
          .orderBy(asc(certificates.statusChangedAt), asc(certificates.serial))
          .limit(pageSize);
        yield* page;
        if (page.length < pageSize) return;
        const last = page.at(-1)!;
        after = { changedAt: last.changedAt, serial: last.serial };
      }
    },

    async listPendingOlderThan(createdBefore, limit = 100) {
      return db
        .select(summaryColumns)
        .from(certificates)
        .where(and(eq(certificates.status, 'pending'), lt(certificates.createdAt, createdBefore)))
        .orderBy(asc(certificates.createdAt), asc(certificates.serial))
        .limit(clampLimit(limit));
    },

    async countByStatus(filter = {}) {
      const rows = await db
        .select({ status: certificates.status, count: count() })
        .from(certificates)
        .where(filter.issuerId === undefined ? undefined : eq(certificates.issuerId, filter.issuerId))
        .groupBy(certificates.status);
      const counts = Object.fromEntries(CERTIFICATE_STATUSES.map((s) => [s, 0])) as Record<
        CertificateStatus,
        number
      >;
      for (const row of rows) counts[row.status] = Number(row.count);
      return counts;
    },
  };

  /**
   * Stores DERs for serials that have none yet, in one statement. pending and failed become good;
   * revoked stays revoked. Returns what was not stored (unknown serial, or a DER already there).
   */
  async function storeDer(
    tx: Db,
    items: { serial: string; der: Uint8Array }[],
  ): Promise<{ notStored: string[]; statuses: Map<string, 'good' | 'revoked'> }> {
    const now = clock.now().toISOString();
    const result = await tx.execute(sql`
      update ${certificates} as c
      set der = decode(v.der, 'hex'),
          issued_at = ${now}::timestamptz,
          failure_reason = null,
          status = case when c.status in ('pending', 'failed') then 'good' else c.status end,
          status_changed_at = case when c.status in ('pending', 'failed') then ${now}::timestamptz else c.status_changed_at end
      from unnest(
        ${sql.param(items.map((item) => item.serial))}::text[],
        ${sql.param(items.map((item) => hex(item.der)))}::text[]
      ) as v(serial, der)
      where c.serial = v.serial and c.der is null
      returning c.serial, c.status`);
    const statuses = new Map(
      rowsOf<{ serial: string; status: 'good' | 'revoked' }>(result).map((row) => [row.serial, row.status]),
    );
    return {
      notStored: items.filter(({ serial }) => !statuses.has(serial)).map(({ serial }) => serial),
      statuses,
    };
  }

  return repository;
}

const crlEntryColumns = {
  serial: certificates.serial,
  revokedAt: sql<Date>`${certificates.revokedAt}`.mapWith(certificates.revokedAt),
  reason: sql<RevocationReason>`${certificates.revocationReason}`,
  invalidityDate: certificates.invalidityDate,
  changedAt: certificates.statusChangedAt,
};

function checkReservation(r: CertificateReservation): void {
  if (normalizeSerial(r.serial) !== r.serial) {
    throw new TypeError(`serial ${JSON.stringify(r.serial)} is not in canonical form (normalizeSerial)`);
  }
  for (const name of ['issuerId', 'policy', 'requester', 'subject'] as const)
    checkStorableText(name, r[name]);
  for (const san of r.sans) {
    checkStorableText('san type', san.type);
    checkStorableText('san value', san.value);
  }
  checkDigest('tbsSha256', r.tbsSha256);
  if (r.csrSha256 != null) checkDigest('csrSha256', r.csrSha256);
  if (r.spkiSha256 != null) checkDigest('spkiSha256', r.spkiSha256);
  checkDate('notBefore', r.notBefore);
  checkDate('notAfter', r.notAfter);
  if (r.crlShard !== undefined && (!Number.isInteger(r.crlShard) || r.crlShard < 0)) {
    throw new TypeError('crlShard must be a non-negative integer');
  }
}

function bySerial(a: { serial: string }, b: { serial: string }): number {
  return a.serial < b.serial ? -1 : a.serial > b.serial ? 1 : 0;
}

function hex(bytes: Uint8Array | null | undefined): string | null {
  return bytes == null ? null : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
}

function checkDigest(name: string, value: Uint8Array): void {
  if (!(value instanceof Uint8Array) || value.length !== 32) throw new TypeError(`${name} must be 32 octets`);
}

function checkDate(name: string, value: Date): void {
  if (!(value instanceof Date) || Number.isNaN(value.getTime()))
    throw new TypeError(`${name} must be a valid Date`);
}

function checkOneOf<T extends string>(name: string, value: T, allowed: readonly T[]): void {
  if (!allowed.includes(value)) throw new TypeError(`unknown ${name} ${JSON.stringify(value)}`);
}

function clampLimit(limit: number | undefined, max = MAX_LIMIT): number {
  if (limit === undefined) return DEFAULT_LIMIT;
  if (!Number.isInteger(limit) || limit < 1) throw new TypeError('limit must be a positive integer');
  return Math.min(limit, max);
}
