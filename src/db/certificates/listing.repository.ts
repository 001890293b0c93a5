/** Finding and listing certificates: by serial, by key, by filter with a cursor, counts by status. */
import { and, count, desc, eq, gte, inArray, lt, or, type SQL, sql } from 'drizzle-orm';
import { normalizeSerial } from '../../lib/serial.ts';
import { decodeCursor, encodeCursor } from '../cursor.ts';
import type { Db } from '../database.ts';
import { type DatabaseObserver, timed } from '../observe.ts';
import { CERTIFICATE_STATUSES, type CertificateStatus, certificates } from '../schema/index.ts';
import { checkStorableText } from '../text.ts';
import { checkOneOf, clampLimit, summaryColumns } from './shared.ts';
import type {
  CertificateListFilter,
  CertificatePage,
  CertificateRecord,
  CertificateSummary,
} from './types.ts';

export interface CertificateListingRepository {
  findBySerial(serial: string): Promise<CertificateRecord | null>;
  listBySpkiSha256(spkiSha256: Uint8Array): Promise<CertificateSummary[]>;
  list(filter?: CertificateListFilter): Promise<CertificatePage>;
  countByStatus(filter?: { issuerId?: string }): Promise<Record<CertificateStatus, number>>;
}

export function createCertificateListingRepository({
  db,
  observe,
}: {
  db: Db;
  observe?: DatabaseObserver;
}): CertificateListingRepository {
  const repository: CertificateListingRepository = {
    async findBySerial(serial) {
      const rows = await timed(observe, 'certificates.findBySerial', () =>
        db
          .select()
          .from(certificates)
          .where(eq(certificates.serial, normalizeSerial(serial))),
      );
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
  return repository;
}
