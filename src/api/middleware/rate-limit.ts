import type { Clock } from '../../lib/clock.ts';
import { systemClock } from '../../lib/clock.ts';

export interface RateLimiterOptions {
  /** Requests per credential per minute (config rateLimit.perMinute); also the burst size. */
  perMinute?: number;
  clock?: Clock;
  /** Forget idle buckets beyond this many credentials, oldest first, so memory stays bounded. */
  maxTracked?: number;
}

interface Bucket {
  tokens: number;
  updatedMs: number;
}

/**
 * A token bucket per credential: `perMinute` tokens, refilled continuously. Only authenticated
 * callers get a bucket, so the number of buckets is bounded by the number of valid credentials.
 */
export class RateLimiter {
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
  take(id: string): { allowed: true } | { allowed: false; retryAfterSeconds: number } {
    const nowMs = this.#clock.now().getTime();
    const ratePerMs = this.perMinute / 60_000;
    const bucket = this.#buckets.get(id) ?? { tokens: this.perMinute, updatedMs: nowMs };
    const elapsed = Math.max(0, nowMs - bucket.updatedMs);
    bucket.tokens = Math.min(this.perMinute, bucket.tokens + elapsed * ratePerMs);
    bucket.updatedMs = nowMs;
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
    return {
      allowed: false,
      retryAfterSeconds: Math.max(1, Math.ceil((1 - bucket.tokens) / ratePerMs / 1000)),
    };
  }
}
