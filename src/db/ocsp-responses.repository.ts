/**
 * Pre-signed OCSP responses (issue #27), one row per CertID as clients send it. A response is
 * stored only if the certificate's status is still the one it was signed from (checked under a
 * share lock on the certificate row, so a revocation committing meanwhile wins); a revocation
 * marks its serial's rows stale in its own transaction (`staleOcspResponsesWithin`) and tells
 * every node (NOTIFY on OCSP_INVALIDATION_CHANNEL at commit).
 */
import { and, asc, eq, gt, isNull, lt, or, sql } from 'drizzle-orm';
import type { Db } from './database.ts';
import { certificates, ocspResponses } from './schema/index.ts';

/** The channel revocations NOTIFY on, with the canonical serial as payload. */
export const OCSP_INVALIDATION_CHANNEL = 'signet_ocsp_invalidate';

export type OcspResponseRecord = typeof ocspResponses.$inferSelect;

export interface NewOcspResponse {
  certIdSha256: Uint8Array;
  serial: string;
  issuerId: string;
  certIdDer: Uint8Array;
  responseDer: Uint8Array;
  certStatus: 'good' | 'revoked';
  producedAt: Date;
  nextUpdate: Date;
}

/** The certificate's state a response was signed from (findStatus's status and statusChangedAt). */
export interface StatusBasis {
  status: string;
  /** Null: compare the status alone. */
  statusChangedAt: Date | null;
}

export interface OcspResponsesRepository {
  find(certIdSha256: Uint8Array): Promise<OcspResponseRecord | null>;
  /** False (nothing stored) when the certificate's status changed since `basis` was read. */
  store(response: NewOcspResponse, basis: StatusBasis): Promise<boolean>;
  listForSerial(serial: string): Promise<OcspResponseRecord[]>;
  /**
   * Valid certificates (good, not expired at `now`) with no stored response, oldest first, for
   * `ocsp.preSign: all`.
   */
  listUnsigned(now: Date, limit: number): Promise<{ serial: string; issuerId: string }[]>;
  /** Rows produced before `before` (or stale) whose certificate has not expired at `now`. */
  listDue(before: Date, now: Date, limit: number): Promise<OcspResponseRecord[]>;
  /** Drops rows whose certificate expired before `now` (nobody needs their status signed). */
  deleteExpired(now: Date): Promise<number>;
}

/** Inside a revocation's transaction: no node may serve the serial's responses again. */
export async function staleOcspResponsesWithin(tx: Db, serial: string): Promise<void> {
  await tx.update(ocspResponses).set({ stale: true }).where(eq(ocspResponses.serial, serial));
  // Delivered at commit to every listening node (src/revocation/ocsp-presigned.ts drops its copy).
  await tx.execute(sql`select pg_notify(${OCSP_INVALIDATION_CHANNEL}, ${serial})`);
}

export function createOcspResponsesRepository({ db }: { db: Db }): OcspResponsesRepository {
  return {
    async find(certIdSha256) {
      const rows = await db.select().from(ocspResponses).where(eq(ocspResponses.certIdSha256, certIdSha256));
      return rows[0] ?? null;
    },

    async store(response, basis) {
      return db.transaction(async (tx) => {
        // A revocation holds this row FOR UPDATE until it commits; then we read its result.
        const [current] = await tx
          .select({ status: certificates.status, statusChangedAt: certificates.statusChangedAt })
          .from(certificates)
          .where(eq(certificates.serial, response.serial))
          .for('share');
        if (
          !current ||
          current.status !== basis.status ||
          (basis.statusChangedAt !== null &&
            current.statusChangedAt.getTime() !== basis.statusChangedAt.getTime())
        ) {
          return false;
        }
        await tx
          .insert(ocspResponses)
          .values({ ...response, stale: false })
          .onConflictDoUpdate({
            target: ocspResponses.certIdSha256,
            set: {
              responseDer: response.responseDer,
              certStatus: response.certStatus,
              producedAt: response.producedAt,
              nextUpdate: response.nextUpdate,
              stale: false,
            },
          });
        return true;
      });
    },

    async listForSerial(serial) {
      return db.select().from(ocspResponses).where(eq(ocspResponses.serial, serial));
    },

    async listUnsigned(now, limit) {
      return db
        .select({ serial: certificates.serial, issuerId: certificates.issuerId })
        .from(certificates)
        .leftJoin(ocspResponses, eq(ocspResponses.serial, certificates.serial))
        .where(
          and(eq(certificates.status, 'good'), gt(certificates.notAfter, now), isNull(ocspResponses.serial)),
        )
        .orderBy(asc(certificates.createdAt), asc(certificates.serial))
        .limit(limit);
    },

    async listDue(before, now, limit) {
      const rows = await db
        .select({ response: ocspResponses })
        .from(ocspResponses)
        .innerJoin(certificates, eq(certificates.serial, ocspResponses.serial))
        .where(
          and(
            or(lt(ocspResponses.producedAt, before), eq(ocspResponses.stale, true)),
            gt(certificates.notAfter, now),
          ),
        )
        .orderBy(asc(ocspResponses.producedAt))
        .limit(limit);
      return rows.map((row) => row.response);
    },

    async deleteExpired(now) {
      const rows = await db
        .delete(ocspResponses)
        .where(
          sql`${ocspResponses.serial} in (select ${certificates.serial} from ${certificates} where ${certificates.notAfter} <= ${now.toISOString()}::timestamptz)`,
        )
        .returning({ serial: ocspResponses.serial });
      return rows.length;
    },
  };
}
