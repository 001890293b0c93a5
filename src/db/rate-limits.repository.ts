/**
 * Token buckets in PostgreSQL (issue #29), shared by every node and HTTP worker: the per-credential
 * budget (rateLimit.perMinute), failed authentication per client address and the ACME budgets.
 * A bucket holds `perMinute` tokens and refills `perMinute` per minute by the database's clock, so
 * nodes whose clocks disagree still refill one bucket at one rate.
 */
import { lt, sql } from 'drizzle-orm';
import type { Db } from './database.ts';
import { rowsOf } from './rows.ts';
import { rateLimitBuckets } from './schema/index.ts';
import { checkStorableText } from './text.ts';

export interface TakeRequest {
  /** Which budget, e.g. `credential`, `failed-auth`. */
  scope: string;
  key: string;
  /** Tokens wanted; fewer (down to none) are granted when fewer are left. */
  want: number;
  /** The bucket's size and its refill per minute. */
  perMinute: number;
}

export interface TokenTake {
  granted: number;
  /** When nothing was granted: whole seconds until a token is free again (at least 1). */
  retryAfterSeconds: number;
}

export interface RateLimitsRepository {
  /** Takes up to `want` whole tokens in one statement: concurrent takers never share a token. */
  take(request: TakeRequest): Promise<TokenTake>;
  /** Deletes buckets untouched for `idleSeconds` (a full bucket is the same as none); returns how many. */
  purgeIdle(idleSeconds: number): Promise<number>;
}

export function createRateLimitsRepository({ db }: { db: Db }): RateLimitsRepository {
  return {
    async take({ scope, key, want, perMinute }) {
      checkStorableText('scope', scope, 64);
      checkStorableText('key', key, 512);
      if (!Number.isInteger(want) || want < 1)
        throw new RangeError(`want must be a positive integer, got ${want}`);
      if (!Number.isInteger(perMinute) || perMinute < 1)
        throw new RangeError(`perMinute must be a positive integer, got ${perMinute}`);
      const perSecond = perMinute / 60;
      const first = Math.min(want, perMinute);
      // Refilled since the last take (never beyond the bucket's size; a clock that stepped back
      // refills nothing). The UPSERT takes the row lock, so two takers serialise on it.
      const refilled = sql`least(${perMinute}::float8, b.tokens + greatest(0, extract(epoch from (now() - b.updated_at)))::float8 * ${perSecond}::float8)`;
      const result = await db.execute(sql`
        insert into rate_limit_buckets as b (scope, key, tokens, granted, updated_at)
        values (${scope}, ${key}, ${perMinute - first}::float8, ${first}::integer, now())
        on conflict (scope, key) do update set
          granted = least(${want}::integer, floor(${refilled}))::integer,
          tokens = ${refilled} - least(${want}::integer, floor(${refilled})),
          updated_at = greatest(b.updated_at, now())
        returning granted, tokens`);
      const row = rowsOf<{ granted: number | string; tokens: number | string }>(result)[0];
      if (!row) throw new Error('rate_limit_buckets: the upsert returned no row');
      const granted = Number(row.granted);
      if (granted > 0) return { granted, retryAfterSeconds: 0 };
      const missing = Math.max(0, 1 - Number(row.tokens));
      return { granted: 0, retryAfterSeconds: Math.max(1, Math.ceil(missing / perSecond)) };
    },

    async purgeIdle(idleSeconds) {
      const cutoff = sql`now() - make_interval(secs => ${idleSeconds}::float8)`;
      const deleted = await db
        .delete(rateLimitBuckets)
        .where(lt(rateLimitBuckets.updatedAt, cutoff))
        .returning({ scope: rateLimitBuckets.scope });
      return deleted.length;
    },
  };
}
