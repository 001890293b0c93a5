/**
 * The ACME server's replay nonces (RFC 8555 §6.5): issued with the client address they went to,
 * capped per address (README, "What a flood can grow"), and spent by deleting them, so that of
 * two requests with one nonce, on one node or two, the database lets exactly one through.
 */
import { and, desc, eq, gt, inArray } from 'drizzle-orm';
import { type Clock, systemClock } from '../lib/clock.ts';
import type { Db } from './database.ts';
import { acmeNonces } from './schema/index.ts';

export interface AcmeNoncesRepository {
  /** Stores issued nonces, each with the addressKey() of the client it was issued to. */
  addNonces(nonces: { nonce: string; expiresAt: Date; client: string }[]): Promise<void>;
  /**
   * Keeps only the `keep` newest unused nonces of each client listed and deletes the others;
   * answers how many it deleted. Rows another statement holds (being taken or trimmed) are
   * neither waited for nor counted, so concurrent trims never wait on each other.
   */
  trimNonces(clients: string[], keep: number): Promise<number>;
  /** Deletes each listed nonce that exists and has not expired; answers the ones it deleted. */
  takeNonces(nonces: string[]): Promise<Set<string>>;
}

export function createAcmeNoncesRepository({
  db,
  clock = systemClock,
  maxLength,
}: {
  db: Db;
  clock?: Clock;
  /** A longer value is no nonce of ours: never looked up. */
  maxLength: number;
}): AcmeNoncesRepository {
  return {
    async addNonces(nonces) {
      if (nonces.length === 0) return;
      await db.insert(acmeNonces).values(nonces);
    },

    async trimNonces(clients, keep) {
      if (!Number.isInteger(keep) || keep < 0) throw new Error(`trimNonces: keep must be >= 0, got ${keep}`);
      let deleted = 0;
      for (const client of new Set(clients)) {
        const beyond = db
          .select({ nonce: acmeNonces.nonce })
          .from(acmeNonces)
          .where(eq(acmeNonces.client, client))
          .orderBy(desc(acmeNonces.expiresAt), desc(acmeNonces.nonce))
          .offset(keep)
          .for('update', { skipLocked: true });
        const rows = await db
          .delete(acmeNonces)
          .where(inArray(acmeNonces.nonce, beyond))
          .returning({ nonce: acmeNonces.nonce });
        deleted += rows.length;
      }
      return deleted;
    },

    async takeNonces(nonces) {
      const valid = nonces.filter((n) => typeof n === 'string' && n.length > 0 && n.length <= maxLength);
      if (valid.length === 0) return new Set();
      const rows = await db
        .delete(acmeNonces)
        .where(and(inArray(acmeNonces.nonce, valid), gt(acmeNonces.expiresAt, clock.now())))
        .returning({ nonce: acmeNonces.nonce });
      return new Set(rows.map((row) => row.nonce));
    },
  };
}
