import type { RateLimitsRepository } from '../../db/rate-limits.repository.ts';
import type { Clock } from '../../lib/clock.ts';
import { systemClock } from '../../lib/clock.ts';
import type { AttemptLimiter, CredentialLimiter, RateVerdict } from './rate-limit.ts';
import { createLeasedLimiter } from './rate-limit-leased.ts';

/**
 * Rate limits shared by every HTTP worker and node on PostgreSQL (issue #29): the token buckets
 * live in table rate_limit_buckets (src/db/rate-limits.repository.ts); the embedded database (one
 * process) keeps them in memory (rate-limit.ts).
 */
type Buckets = Pick<RateLimitsRepository, 'take'>;

/**
 * Requests per credential: tokens leased from the shared bucket a tenth of a second's refill at a
 * time (leaseSize), so a request makes a database round trip once per lease, not each time. No
 * process spends a token it was not granted, so a credential never gets more than `perMinute`
 * (plus refill) across all nodes; a lease unspent for a second lapses, which can refuse a
 * credential spread over P processes up to (P - 1) leases early.
 */
export function createSharedCredentialLimiter({
  buckets,
  perMinute,
  clock = systemClock,
}: {
  buckets: Buckets;
  perMinute: number;
  clock?: Clock;
}): CredentialLimiter {
  if (!buckets) throw new Error('createSharedCredentialLimiter: buckets are required');
  return createLeasedLimiter({
    perMinute,
    clock,
    lease: (id, want) => buckets.take({ scope: 'credential', key: id, want, perMinute }),
  });
}

/**
 * Failed attempts per key (client address, ACME account) in a shared bucket. `fail` spends a
 * token in the database and answers whether one was left: an attempt beyond the budget is
 * refused even on a node that has not seen the key before, so across all nodes at most
 * `perMinute` (plus refill) attempts are ever let through. `check`, asked before the work of every
 * request, answers from this process's memory of refusals (no round trip on the hot path): a
 * process learns that a key is out of budget at that key's first counted attempt it handles.
 */
export function createSharedAttemptLimiter({
  buckets,
  scope,
  perMinute,
  clock = systemClock,
  maxTracked = 100_000,
}: {
  buckets: Buckets;
  /** The budget's name in the table, e.g. `failed-auth`. */
  scope: string;
  perMinute: number;
  clock?: Clock;
  maxTracked?: number;
}): AttemptLimiter {
  if (!buckets || !scope) throw new Error('createSharedAttemptLimiter: buckets and scope are required');
  if (!Number.isInteger(perMinute) || perMinute < 1)
    throw new Error(`createSharedAttemptLimiter: perMinute must be a positive integer, got ${perMinute}`);
  // Keys refused until a time (ms of the clock); least recently refused first.
  const refused = new Map<string, { untilMs: number }>();
  const verdict = (untilMs: number, nowMs: number): RateVerdict => ({
    allowed: false,
    retryAfterSeconds: Math.max(1, Math.ceil((untilMs - nowMs) / 1000)),
  });
  return {
    perMinute,
    async check(key) {
      const entry = refused.get(key);
      if (!entry) return { allowed: true };
      const nowMs = clock.now().getTime();
      if (entry.untilMs <= nowMs) {
        refused.delete(key);
        return { allowed: true };
      }
      return verdict(entry.untilMs, nowMs);
    },
    async fail(key) {
      const taken = await buckets.take({ scope, key, want: 1, perMinute });
      const nowMs = clock.now().getTime();
      if (taken.granted > 0) {
        refused.delete(key);
        return { allowed: true };
      }
      const untilMs = nowMs + taken.retryAfterSeconds * 1000;
      refused.delete(key);
      refused.set(key, { untilMs });
      if (refused.size > maxTracked) refused.delete(refused.keys().next().value as string);
      return verdict(untilMs, nowMs);
    },
  };
}
