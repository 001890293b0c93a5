/** What the CRL writer reads: an issuer shard's revoked entries, page by page or changed since. */
import { and, asc, eq, gt, gte, or, type SQL, sql } from 'drizzle-orm';
import type { Db } from '../database.ts';
import { rowsOf } from '../rows.ts';
import { certificates } from '../schema/index.ts';
import { checkDate, clampLimit, crlEntryColumns } from './shared.ts';
import type { CrlEntry, CrlListOptions } from './types.ts';

export interface CrlEntriesRepository {
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
  /**
   * The CRL shards an issuer's certificates fall in, each with the latest notAfter of its
   * certificates (signed or maybe signed): how long the shard's CRL must be published (RFC 5280
   * §3.3). A skip scan over certificates_crl_shard_expiry_idx: one index probe per shard.
   */
  listCrlShards(issuerId: string): Promise<{ shard: number; lastCertificateExpiry: Date }[]>;
  /** Revocations made or changed after `since` (a delta CRL's content), oldest change first. */
  streamRevocationChangesSince(
    issuerId: string,
    since: Date,
    options?: CrlListOptions & { pageSize?: number },
  ): AsyncGenerator<CrlEntry>;
}

export function createCrlEntriesRepository({ db }: { db: Db }): CrlEntriesRepository {
  const repository: CrlEntriesRepository = {
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

    async listCrlShards(issuerId) {
      const result = await db.execute(sql`
        with recursive shards(shard) as (
          select min(crl_shard) from certificates where issuer_id = ${issuerId} and status <> 'failed'
          union all
          select (select min(c.crl_shard) from certificates c
                   where c.issuer_id = ${issuerId} and c.status <> 'failed' and c.crl_shard > s.shard)
            from shards s where s.shard is not null
        )
        select s.shard,
               (select max(c.not_after) from certificates c
                 where c.issuer_id = ${issuerId} and c.status <> 'failed' and c.crl_shard = s.shard) as last
          from shards s where s.shard is not null order by s.shard`);
      return rowsOf<{ shard: number; last: Date | string }>(result).map((row) => ({
        shard: Number(row.shard),
        lastCertificateExpiry: new Date(row.last),
      }));
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
  };
  return repository;
}
