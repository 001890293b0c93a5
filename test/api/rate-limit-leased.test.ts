import { describe, expect, test } from 'vitest';
import { RateLimiter } from '../../src/api/middleware/rate-limit.ts';
import { createLeasedLimiter, leaseSize } from '../../src/api/middleware/rate-limit-leased.ts';
import { manualClock } from '../db/builders.ts';

/** A node: one primary's buckets, `workers` workers leasing from them (as over IPC, but in-process). */
function node(perMinute: number, workers: number, clock = manualClock()) {
  const primary = new RateLimiter({ perMinute, clock });
  let leases = 0;
  const limiters = Array.from({ length: workers }, () =>
    createLeasedLimiter({
      perMinute,
      clock,
      lease: async (id, want) => {
        leases += 1;
        return primary.takeUpTo(id, want);
      },
    }),
  );
  return { limiters, clock, leases: () => leases };
}

describe('rate limits leased from shared buckets by several processes', () => {
  test.each([
    { name: 'one worker', workers: 1 },
    { name: 'two workers', workers: 2 },
    { name: 'four workers', workers: 4 },
  ])('a credential gets its budget once per node with $name, not once per worker', async ({ workers }) => {
    const { limiters } = node(600, workers);
    let allowed = 0;
    for (let i = 0; i < 2000; i++) {
      const verdict = await limiters[i % workers]!.take('apikey:a');
      if (verdict.allowed) allowed += 1;
    }
    // The clock stands still: exactly the bucket (600), whichever worker spent it.
    expect(allowed).toBeLessThanOrEqual(600);
    expect(allowed).toBeGreaterThan(600 - workers * leaseSize(600));
  });

  test('a request mostly spends a token already leased: the primary is asked once per lease', async () => {
    const { limiters, leases } = node(60_000, 1);
    for (let i = 0; i < 1000; i++) expect((await limiters[0]!.take('apikey:a')).allowed).toBe(true);
    expect(leases()).toBeLessThanOrEqual(Math.ceil(1000 / leaseSize(60_000)) + 1);
  });

  test('a refused credential is told when to retry, and credentials do not share a budget', async () => {
    const { limiters } = node(60, 2);
    for (let i = 0; i < 60; i++) await limiters[i % 2]!.take('apikey:a');
    expect(await limiters[0]!.take('apikey:a')).toEqual({ allowed: false, retryAfterSeconds: 1 });
    expect((await limiters[1]!.take('apikey:b')).allowed).toBe(true);
  });

  test('concurrent requests of a new credential all get tokens while the budget lasts', async () => {
    const { limiters } = node(40, 1);
    const verdicts = await Promise.all(Array.from({ length: 8 }, () => limiters[0]!.take('apikey:new')));
    expect(verdicts.every((v) => v.allowed)).toBe(true);
    const more = await Promise.all(Array.from({ length: 40 }, () => limiters[0]!.take('apikey:new')));
    expect(more.filter((v) => v.allowed)).toHaveLength(32);
  });

  test('unspent leased tokens lapse, so budget does not pile up in an idle worker', async () => {
    const { limiters, clock, leases } = node(6000, 2);
    expect((await limiters[0]!.take('apikey:a')).allowed).toBe(true);
    expect((await limiters[0]!.take('apikey:a')).allowed).toBe(true);
    expect(leases()).toBe(1);
    clock.advance(1500);
    // Worker 0 still holds 8 tokens of its lease; they have lapsed, so it asks again.
    expect((await limiters[0]!.take('apikey:a')).allowed).toBe(true);
    expect(leases()).toBe(2);
  });

  test('when the buckets cannot be reached, requests fail with the cause (fail closed)', async () => {
    let down = true;
    const limiter = createLeasedLimiter({
      perMinute: 6000,
      lease: async () => {
        if (down) throw new Error('connection refused');
        return { granted: 10, retryAfterSeconds: 0 };
      },
    });
    await expect(limiter.take('apikey:a')).rejects.toThrow('connection refused');
    down = false;
    expect(await limiter.take('apikey:a')).toEqual({ allowed: true });
  });
});
