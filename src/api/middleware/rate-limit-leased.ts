import type { Clock } from '../../lib/clock.ts';
import { systemClock } from '../../lib/clock.ts';
import type { CredentialLimiter, RateVerdict } from './rate-limit.ts';

/**
 * One credential's budget shared by processes (issues #24, #29): the token buckets live in one
 * place (PostgreSQL, rate-limit-shared.ts), and each process leases a few tokens at a time for a
 * credential and spends them locally, so a request makes a round trip only once per lease.
 * Whatever the processes do, they never spend more than was granted: the limit stays per
 * credential, with no overshoot. Unspent tokens lapse after `leaseMs` (they count as spent), so a
 * lease never moves budget from one second to a much later one; the price is an undershoot of at
 * most one lease per other process holding one, for at most `leaseMs`.
 */
export interface TokenLease {
  granted: number;
  /** When nothing was granted: how long until a token is free again. */
  retryAfterSeconds: number;
}

export interface LeasedLimiterOptions {
  /** Asks the shared buckets for up to `want` tokens of `id`. */
  lease(id: string, want: number): Promise<TokenLease>;
  /** Requests per credential per minute (rateLimit.perMinute): sizes the leases. */
  perMinute: number;
  clock?: Clock;
  leaseMs?: number;
  /** Forget credentials beyond this many, oldest first. */
  maxTracked?: number;
}

interface Held {
  /** Requests waiting for a token of this credential: the next lease asks for at least as many. */
  waiters: number;
  tokens: number;
  expiresMs: number;
  pending?: Promise<void>;
  refusal?: { untilMs: number; retryAfterSeconds: number };
  /** The last lease failed (the database is unreachable): the requests waiting for it fail with it. */
  failure?: unknown;
}

/** A tenth of a second's refill per lease, at least one token and at most 64. */
export function leaseSize(perMinute: number): number {
  return Math.max(1, Math.min(64, Math.floor(perMinute / 600)));
}

export function createLeasedLimiter({
  lease,
  perMinute,
  clock = systemClock,
  leaseMs = 1000,
  maxTracked = 100_000,
}: LeasedLimiterOptions): CredentialLimiter {
  const want = leaseSize(perMinute);
  const held = new Map<string, Held>();

  const spend = (entry: Held, nowMs: number): boolean => {
    if (entry.tokens < 1 || entry.expiresMs <= nowMs) return false;
    entry.tokens -= 1;
    return true;
  };

  function renew(id: string, entry: Held): Promise<void> {
    entry.pending ??= lease(id, Math.min(64, Math.max(want, entry.waiters)))
      .then(
        (granted) => {
          const nowMs = clock.now().getTime();
          entry.tokens = granted.granted;
          entry.expiresMs = nowMs + leaseMs;
          entry.failure = undefined;
          entry.refusal =
            granted.granted > 0
              ? undefined
              : {
                  untilMs: nowMs + granted.retryAfterSeconds * 1000,
                  retryAfterSeconds: granted.retryAfterSeconds,
                };
        },
        (error: unknown) => {
          // No lease: the request fails with the cause (fail closed; a database that is down
          // answers 503 with Retry-After at the edge) rather than let the limit lapse.
          entry.tokens = 0;
          entry.failure = error;
        },
      )
      .finally(() => {
        entry.pending = undefined;
      });
    return entry.pending;
  }

  async function slow(id: string, entry: Held): Promise<RateVerdict> {
    // Concurrent requests share a lease; each then spends from it or asks again. Every lease
    // either grants a token someone spends or is a refusal, so this ends.
    entry.waiters += 1;
    try {
      for (;;) {
        await (entry.pending ?? renew(id, entry));
        const nowMs = clock.now().getTime();
        if (spend(entry, nowMs)) return { allowed: true };
        if (entry.failure !== undefined) throw entry.failure;
        if (entry.refusal && entry.refusal.untilMs > nowMs) {
          return { allowed: false, retryAfterSeconds: entry.refusal.retryAfterSeconds };
        }
      }
    } finally {
      entry.waiters -= 1;
    }
  }

  return {
    take(id) {
      const nowMs = clock.now().getTime();
      let entry = held.get(id);
      if (!entry) {
        entry = { waiters: 0, tokens: 0, expiresMs: 0 };
        held.set(id, entry);
        if (held.size > maxTracked) held.delete(held.keys().next().value as string);
      }
      if (spend(entry, nowMs)) return { allowed: true };
      if (entry.refusal && entry.refusal.untilMs > nowMs && !entry.pending) {
        return { allowed: false, retryAfterSeconds: entry.refusal.retryAfterSeconds };
      }
      return slow(id, entry);
    },
  };
}
