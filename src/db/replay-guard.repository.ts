/**
 * Single use of JWS ids. A signed request (e.g. revocation by proof of key possession) carries a
 * `jti` and an expiry; the first use claims the jti until then, and a replay finds it claimed.
 * After expiry the JWS itself is refused, so the record can go.
 */
import { lte, sql } from 'drizzle-orm';
import { type Clock, systemClock } from '../lib/clock.ts';
import type { Db } from './database.ts';
import { replayGuard } from './schema/index.ts';
import { checkStorableText } from './text.ts';

export interface ReplayGuardRepository {
  /** True the first time a (scope, jti) is seen before its expiry; false for a replay. */
  claim(input: { scope: string; jti: string; expiresAt: Date }): Promise<boolean>;
  /** Deletes expired claims; returns how many. */
  purgeExpired(): Promise<number>;
}

const MAX_LENGTH = 512;

export function createReplayGuardRepository({ db, clock = systemClock }: { db: Db; clock?: Clock }) {
  const repository: ReplayGuardRepository = {
    async claim({ scope, jti, expiresAt }) {
      for (const [name, value] of [
        ['scope', scope],
        ['jti', jti],
      ] as const) {
        checkStorableText(name, value, MAX_LENGTH);
        if (value.length === 0) throw new TypeError(`${name} must not be empty`);
      }
      const now = clock.now();
      if (!(expiresAt instanceof Date) || Number.isNaN(expiresAt.getTime())) {
        throw new TypeError('expiresAt must be a valid Date');
      }
      if (expiresAt.getTime() <= now.getTime()) return false; // already expired: never acceptable
      // An expired claim of the same jti may be taken over; a live one may not.
      const rows = await db
        .insert(replayGuard)
        .values({ scope, jti, expiresAt })
        .onConflictDoUpdate({
          target: [replayGuard.scope, replayGuard.jti],
          set: { expiresAt },
          setWhere: sql`${replayGuard.expiresAt} <= ${now.toISOString()}::timestamptz`,
        })
        .returning({ jti: replayGuard.jti });
      return rows.length === 1;
    },

    async purgeExpired() {
      const rows = await db
        .delete(replayGuard)
        .where(lte(replayGuard.expiresAt, clock.now()))
        .returning({ jti: replayGuard.jti });
      return rows.length;
    },
  };
  return repository;
}
