import type { Clock } from '../../lib/clock.ts';
import { systemClock } from '../../lib/clock.ts';

export interface RateLimiterOptions {
  /** Requests per credential per minute (config rateLimit.perMinute); also the burst size. */
  perMinute?: number;
  clock?: Clock;
  /** Forget idle buckets beyond this many credentials, oldest first, so memory stays bounded. */
  maxTracked?: number;
}

export type RateVerdict = { allowed: true } | { allowed: false; retryAfterSeconds: number };

/**
 * Requests per credential: `RateLimiter` in one process, or tokens leased from buckets in
 * PostgreSQL when several HTTP workers and nodes share the budget (rate-limit-shared.ts).
 */
export interface CredentialLimiter {
  take(id: string): RateVerdict | Promise<RateVerdict>;
}

interface Bucket {
  tokens: number;
  updatedMs: number;
}

/**
 * A token bucket per credential: `perMinute` tokens, refilled continuously. Only authenticated
 * callers get a bucket, so the number of buckets is bounded by the number of valid credentials.
 */
export class RateLimiter implements CredentialLimiter {
  readonly perMinute: number;
  readonly #clock: Clock;
  readonly #maxTracked: number;
  readonly #buckets = new Map<string, Bucket>();

  constructor({ perMinute = 6000, clock = systemClock, maxTracked = 100_000 }: RateLimiterOptions = {}) {
    if (!Number.isInteger(perMinute) || perMinute < 1)
      throw new Error(`RateLimiter: perMinute must be a positive integer, got ${perMinute}`);
    if (!Number.isInteger(maxTracked) || maxTracked < 1)
      throw new Error('RateLimiter: maxTracked must be a positive integer');
    this.perMinute = perMinute;
    this.#clock = clock;
    this.#maxTracked = maxTracked;
  }

  /** Takes one token for `id`; answers the seconds to wait when none is left. */
  take(id: string): RateVerdict {
    const nowMs = this.#clock.now().getTime();
    const bucket = this.#buckets.get(id) ?? { tokens: this.perMinute, updatedMs: nowMs };
    this.#refill(bucket, nowMs);
    // Re-inserting keeps the Map in least-recently-used order for eviction.
    this.#buckets.delete(id);
    this.#buckets.set(id, bucket);
    if (this.#buckets.size > this.#maxTracked) {
      const oldest = this.#buckets.keys().next().value;
      if (oldest !== undefined) this.#buckets.delete(oldest);
    }
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return { allowed: true };
    }
    return this.#refused(bucket);
  }

  /**
   * Takes up to `want` whole tokens for `id` at once (a worker's lease, rate-limit-leased.ts);
   * when none is left, says how long to wait for one.
   */
  takeUpTo(id: string, want: number): { granted: number; retryAfterSeconds: number } {
    const first = this.take(id);
    if (!first.allowed) return { granted: 0, retryAfterSeconds: first.retryAfterSeconds };
    const bucket = this.#buckets.get(id)!;
    const more = Math.max(0, Math.min(want - 1, Math.floor(bucket.tokens)));
    bucket.tokens -= more;
    return { granted: 1 + more, retryAfterSeconds: 0 };
  }

  /** Whether `id` has a token left, without taking it (and without tracking an unknown id). */
  peek(id: string): RateVerdict {
    const bucket = this.#buckets.get(id);
    if (!bucket) return { allowed: true };
    this.#refill(bucket, this.#clock.now().getTime());
    return bucket.tokens >= 1 ? { allowed: true } : this.#refused(bucket);
  }

  #refill(bucket: Bucket, nowMs: number): void {
    const elapsed = Math.max(0, nowMs - bucket.updatedMs);
    bucket.tokens = Math.min(this.perMinute, bucket.tokens + (elapsed * this.perMinute) / 60_000);
    bucket.updatedMs = nowMs;
  }

  #refused(bucket: Bucket): RateVerdict {
    const msPerToken = 60_000 / this.perMinute;
    return {
      allowed: false,
      retryAfterSeconds: Math.max(1, Math.ceil(((1 - bucket.tokens) * msPerToken) / 1000)),
    };
  }
}

/**
 * Failed attempts per client address (issue #19): failed authentication, and refusals of the
 * public endpoints that do work for anyone. In memory for one process (the embedded database);
 * in PostgreSQL for several workers and nodes (rate-limit-shared.ts, issue #29).
 */
export interface AttemptLimiter {
  /** Failed attempts allowed per address per minute (config rateLimit.failedAuthPerMinute). */
  readonly perMinute: number;
  /** Whether `key` may make another attempt now; spends nothing. */
  check(key: string): Promise<RateVerdict>;
  /**
   * Counts one failed attempt of `key`; refused when the budget was already spent, so a caller
   * that checked on a stale view (another node spent it) can still refuse this attempt.
   */
  fail(key: string): Promise<RateVerdict>;
}

/** A token bucket per key in this process (RateLimiter), at most `maxTracked` keys. */
export function createMemoryAttemptLimiter(options: RateLimiterOptions = {}): AttemptLimiter {
  const buckets = new RateLimiter({ perMinute: 60, ...options });
  return {
    perMinute: buckets.perMinute,
    async check(key) {
      return buckets.peek(key);
    },
    async fail(key) {
      return buckets.take(key);
    },
  };
}
