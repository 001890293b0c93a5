/**
 * The outbox of work owed after a commit (DESIGN.md "Storage"; issue #17). Whoever makes work owed
 * records it with `oweWithin` in the same transaction as the change that makes it owed (a
 * revocation owes a CRL), so a crash right after the commit loses nothing: the next process, or
 * another node, finds the row and does the work.
 *
 * A worker drains a row in three steps, under whatever lock excludes other workers of that kind:
 *
 *   claim (read the row's version) -> do the work, reading the data after the claim -> settle
 *   (delete the row if its version is still the one claimed).
 *
 * Everything owed up to the claimed version was committed before the claim (an owing sets a new
 * version under the row lock, in the owing transaction), so work that reads its data after the
 * claim covers it. An owing that arrives during the work changes the version: settle leaves the
 * row, and the work is done again.
 */
import { and, asc, eq, lte, ne, type SQL, sql } from 'drizzle-orm';
import { type Clock, systemClock } from '../lib/clock.ts';
import type { Db } from './database.ts';
import { OWED_WORK_KINDS, type OwedWorkKind, owedWork } from './schema/index.ts';
import { checkStorableText } from './text.ts';

export type OwedWorkRecord = typeof owedWork.$inferSelect;

export interface OwedWorkItem {
  kind: OwedWorkKind;
  key: string;
  /** Default: owed at once. */
  notBefore?: Date;
}

/** What a worker read before doing the work: settle() deletes the row only at this version. */
export interface OwedWorkClaim {
  kind: OwedWorkKind;
  key: string;
  version: bigint;
  createdAt: Date;
}

export type SettleOutcome =
  /** The row is gone: nothing of this kind and key is owed any more. */
  | 'settled'
  /** Owed again since the claim: the row stays, counted from the claim. */
  | 'remaining';

export interface OwedWorkRepository {
  /** oweWithin outside a transaction of the caller's. */
  owe(items: OwedWorkItem[]): Promise<void>;
  /** Rows of a kind, oldest first; with `dueBy`, only those whose notBefore is at or before it. */
  list(kind: OwedWorkKind, options?: { dueBy?: Date }): Promise<OwedWorkRecord[]>;
  /** The row's current version, or null when nothing is owed. */
  claim(kind: OwedWorkKind, key: string): Promise<OwedWorkClaim | null>;
  /**
   * After the work that covers `claim` is saved: deletes the row if nothing was owed since.
   * Otherwise what is still owed dates from the claim (it was owed after it).
   */
  settle(claim: OwedWorkClaim, options: { claimedAt: Date }): Promise<SettleOutcome>;
  /** Counts a failed attempt (the row stays owed). No-op when the row is gone. */
  recordFailure(kind: OwedWorkKind, key: string, error: string): Promise<void>;
}

/** The key of a `crl` row: the issuer and the CRL shard (issuer ids are slugs: no `/`). */
export function crlWorkKey(issuerId: string, shard: number): string {
  if (!Number.isInteger(shard) || shard < 0) throw new TypeError('a CRL shard is a non-negative integer');
  if (issuerId.includes('/')) throw new TypeError('an issuer id has no "/"');
  return `${issuerId}/${shard}`;
}

/** The issuer and shard of a `crl` row's key; undefined for a key this version does not write. */
export function parseCrlWorkKey(key: string): { issuerId: string; shard: number } | undefined {
  const match = /^([^/]+)\/(0|[1-9]\d{0,8})$/.exec(key);
  return match ? { issuerId: match[1]!, shard: Number(match[2]) } : undefined;
}

const MAX_ERROR = 500;

function checkItem(item: OwedWorkItem): void {
  if (!(OWED_WORK_KINDS as readonly string[]).includes(item.kind)) {
    throw new TypeError(`unknown owed work kind ${JSON.stringify(item.kind)}`);
  }
  checkStorableText('owed work key', item.key, 512);
  if (item.key.length === 0) throw new TypeError('an owed work key must not be empty');
}

/**
 * Records owed work inside `tx`, the transaction that makes it owed. Owing what is already owed
 * bumps the version and keeps the first owing's times: a stream of owings never postpones it.
 */
export async function oweWithin(tx: Db, items: OwedWorkItem[], now: Date): Promise<void> {
  items.forEach(checkItem);
  // Sorted and deduplicated: two transactions owing the same rows lock them in one order.
  const unique = new Map(items.map((item) => [`${item.kind}\u0000${item.key}`, item]));
  const ordered = [...unique.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  for (const [, item] of ordered) {
    await tx
      .insert(owedWork)
      .values({
        kind: item.kind,
        key: item.key,
        createdAt: now,
        updatedAt: now,
        notBefore: item.notBefore ?? now,
      })
      .onConflictDoUpdate({
        target: [owedWork.kind, owedWork.key],
        set: {
          version: sql`nextval('owed_work_version_seq')`,
          updatedAt: now,
          notBefore: sql`least(${owedWork.notBefore}, excluded.not_before)`,
        },
      });
  }
}

export function createOwedWorkRepository({ db, clock = systemClock }: { db: Db; clock?: Clock }) {
  const row = (kind: OwedWorkKind, key: string): SQL | undefined =>
    and(eq(owedWork.kind, kind), eq(owedWork.key, key));

  const repository: OwedWorkRepository = {
    async owe(items) {
      if (items.length === 0) return;
      await db.transaction((tx) => oweWithin(tx, items, clock.now()));
    },

    async list(kind, { dueBy } = {}) {
      return db
        .select()
        .from(owedWork)
        .where(and(eq(owedWork.kind, kind), dueBy ? lte(owedWork.notBefore, dueBy) : undefined))
        .orderBy(asc(owedWork.createdAt), asc(owedWork.key));
    },

    async claim(kind, key) {
      const [found] = await db
        .select({ version: owedWork.version, createdAt: owedWork.createdAt })
        .from(owedWork)
        .where(row(kind, key));
      return found ? { kind, key, version: found.version, createdAt: found.createdAt } : null;
    },

    async settle(claim, { claimedAt }) {
      const deleted = await db
        .delete(owedWork)
        .where(and(row(claim.kind, claim.key), eq(owedWork.version, claim.version)))
        .returning({ key: owedWork.key });
      if (deleted.length === 1) return 'settled';
      // Versions never repeat, so another version means owed again after the claim (possibly after
      // another worker settled the claimed one).
      const updated = await db
        .update(owedWork)
        .set({
          createdAt: sql`greatest(${owedWork.createdAt}, ${claimedAt.toISOString()}::timestamptz)`,
          attempts: 0,
          lastError: null,
        })
        .where(and(row(claim.kind, claim.key), ne(owedWork.version, claim.version)))
        .returning({ key: owedWork.key });
      return updated.length === 1 ? 'remaining' : 'settled';
    },

    async recordFailure(kind, key, error) {
      const text = error.replaceAll('\u0000', '').slice(0, MAX_ERROR);
      await db
        .update(owedWork)
        .set({ attempts: sql`${owedWork.attempts} + 1`, lastError: text, lastAttemptAt: clock.now() })
        .where(row(kind, key));
    },
  };
  return repository;
}
