/**
 * CRL state per issuer and shard: the CRL number sequence and the latest published CRLs.
 *
 * RFC 5280 §5.2.3: the cRLNumber is monotonically increasing for a scope; §5.2.4: complete and
 * delta CRLs of one scope share that sequence. Numbers are handed out by one atomic upsert, so
 * two writers (even on two nodes, even if the CRL writer lock failed) never get the same number.
 * RFC 5280 allows up to 20 octets; a bigint (63 bits) outlasts any issuing rate.
 */
import { and, asc, eq, getTableColumns, lte, sql } from 'drizzle-orm';
import type { Db } from './database.ts';
import { type CrlKind, crlNumbers, crls } from './schema/index.ts';

export type StoredCrl = typeof crls.$inferSelect;
export type CrlInfo = Omit<StoredCrl, 'der'>;

export interface CrlToSave {
  issuerId: string;
  shard: number;
  kind: CrlKind;
  crlNumber: bigint;
  /** Delta CRLs only: the BaseCRLNumber (RFC 5280 §5.2.4). */
  baseCrlNumber?: bigint | null;
  thisUpdate: Date;
  nextUpdate: Date;
  der: Uint8Array;
  sha256: Uint8Array;
  generatedAt: Date;
  /** The node that generated it. */
  generatedBy?: string | null;
  /** Signed elsewhere and imported (saveImported sets it). */
  imported?: boolean;
}

export interface CrlsRepository {
  /**
   * The next CRL number for an issuer shard, never handed out before. `atLeast` raises the
   * sequence (e.g. after restoring a database older than the CRLs already published).
   */
  allocateNumber(issuerId: string, shard: number, options?: { atLeast?: bigint }): Promise<bigint>;
  /**
   * Records a generated CRL as the latest of its kind, unless a CRL with a higher or equal number
   * is already stored (a slower writer must not replace a newer CRL): then returns 'stale'.
   */
  save(crl: CrlToSave): Promise<'saved' | 'stale'>;
  /**
   * Records a full CRL signed elsewhere (the offline ceremony's) as the latest of its issuer,
   * unless one with a higher or equal number is stored ('stale'). The CRL number sequence is
   * raised to its number in the same transaction, so a number handed out later is still above it.
   */
  saveImported(crl: Omit<CrlToSave, 'kind' | 'baseCrlNumber' | 'imported'>): Promise<'saved' | 'stale'>;
  getLatest(issuerId: string, shard: number, kind: CrlKind): Promise<StoredCrl | null>;
  /** Without the DER: for ETag checks and scheduling. */
  getLatestInfo(issuerId: string, shard: number, kind: CrlKind): Promise<CrlInfo | null>;
  /** CRLs whose nextUpdate is at or before `before`, soonest first: due for regeneration. */
  listDue(before: Date): Promise<CrlInfo[]>;
  /** Every latest CRL (what is served), without the DER, by issuer, shard and kind. */
  listLatestInfo(): Promise<CrlInfo[]>;
}

const { der: _der, ...infoColumns } = getTableColumns(crls);

export function createCrlsRepository({ db }: { db: Db }) {
  const key = (issuerId: string, shard: number, kind: CrlKind) =>
    and(eq(crls.issuerId, issuerId), eq(crls.shard, shard), eq(crls.kind, kind));

  const repository: CrlsRepository = {
    async allocateNumber(issuerId, shard, { atLeast = 1n } = {}) {
      checkShard(shard);
      if (atLeast < 1n) throw new RangeError('a CRL number is positive');
      const [row] = await db
        .insert(crlNumbers)
        .values({ issuerId, shard, lastNumber: atLeast })
        .onConflictDoUpdate({
          target: [crlNumbers.issuerId, crlNumbers.shard],
          set: { lastNumber: sql`greatest(${crlNumbers.lastNumber} + 1, ${atLeast})` },
        })
        .returning({ lastNumber: crlNumbers.lastNumber });
      return row!.lastNumber;
    },

    async save(crl) {
      checkShard(crl.shard);
      if ((crl.kind === 'delta') !== (crl.baseCrlNumber != null)) {
        throw new TypeError('a delta CRL has a base CRL number and a full CRL has none');
      }
      return upsertNewer(db, crl);
    },

    async saveImported(crl) {
      checkShard(crl.shard);
      return db.transaction(async (tx) => {
        const outcome = await upsertNewer(tx, { ...crl, kind: 'full', imported: true });
        if (outcome === 'saved') {
          await tx
            .insert(crlNumbers)
            .values({ issuerId: crl.issuerId, shard: crl.shard, lastNumber: crl.crlNumber })
            .onConflictDoUpdate({
              target: [crlNumbers.issuerId, crlNumbers.shard],
              set: { lastNumber: sql`greatest(${crlNumbers.lastNumber}, ${crl.crlNumber})` },
            });
        }
        return outcome;
      });
    },

    async getLatest(issuerId, shard, kind) {
      const rows = await db
        .select()
        .from(crls)
        .where(key(issuerId, shard, kind));
      return rows[0] ?? null;
    },

    async getLatestInfo(issuerId, shard, kind) {
      const rows = await db
        .select(infoColumns)
        .from(crls)
        .where(key(issuerId, shard, kind));
      return rows[0] ?? null;
    },

    async listDue(before) {
      return db
        .select(infoColumns)
        .from(crls)
        .where(lte(crls.nextUpdate, before))
        .orderBy(asc(crls.nextUpdate));
    },

    async listLatestInfo() {
      return db.select(infoColumns).from(crls).orderBy(asc(crls.issuerId), asc(crls.shard), asc(crls.kind));
    },
  };
  return repository;
}

/** Inserts `crl` as the latest of its kind, or replaces a stored one with a lower number. */
async function upsertNewer(db: Db, crl: CrlToSave): Promise<'saved' | 'stale'> {
  const values = {
    ...crl,
    baseCrlNumber: crl.baseCrlNumber ?? null,
    generatedBy: crl.generatedBy ?? null,
    imported: crl.imported ?? false,
  };
  const { issuerId: _i, shard: _s, kind: _k, ...updates } = values;
  const rows = await db
    .insert(crls)
    .values(values)
    .onConflictDoUpdate({
      target: [crls.issuerId, crls.shard, crls.kind],
      set: updates,
      setWhere: sql`${crls.crlNumber} < excluded.crl_number`,
    })
    .returning({ crlNumber: crls.crlNumber });
  return rows.length === 1 ? 'saved' : 'stale';
}

function checkShard(shard: number): void {
  if (!Number.isInteger(shard) || shard < 0) throw new TypeError('a CRL shard is a non-negative integer');
}
