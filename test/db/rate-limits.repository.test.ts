import { beforeEach, expect, test } from 'vitest';
import {
  createSharedAttemptLimiter,
  createSharedCredentialLimiter,
} from '../../src/api/middleware/rate-limit-shared.ts';
import {
  createRateLimitsRepository,
  type RateLimitsRepository,
} from '../../src/db/rate-limits.repository.ts';
import { fixedClock } from '../../src/lib/clock.ts';
import { createSharedSigningBudget } from '../../src/revocation/ocsp-rate-limit.ts';
import { describeEachDatabase } from '../helpers/database.ts';

describeEachDatabase('rate-limit buckets shared by every node (issue #29)', (getDatabase) => {
  let buckets: RateLimitsRepository;
  beforeEach(() => {
    buckets = createRateLimitsRepository({ db: getDatabase().db });
  });

  test('a new bucket grants what is asked up to its size, then nothing, with a time to retry', async () => {
    expect(await buckets.take({ scope: 'credential', key: 'k1', want: 8, perMinute: 10 })).toEqual({
      granted: 8,
      retryAfterSeconds: 0,
    });
    expect((await buckets.take({ scope: 'credential', key: 'k1', want: 8, perMinute: 10 })).granted).toBe(2);
    const refused = await buckets.take({ scope: 'credential', key: 'k1', want: 1, perMinute: 10 });
    expect(refused.granted).toBe(0);
    // 10 per minute: a token every 6 s.
    expect(refused.retryAfterSeconds).toBeGreaterThanOrEqual(1);
    expect(refused.retryAfterSeconds).toBeLessThanOrEqual(6);
  });

  test('scopes and keys have budgets of their own', async () => {
    await buckets.take({ scope: 'credential', key: 'k', want: 5, perMinute: 5 });
    expect((await buckets.take({ scope: 'credential', key: 'k', want: 1, perMinute: 5 })).granted).toBe(0);
    expect((await buckets.take({ scope: 'failed-auth', key: 'k', want: 1, perMinute: 5 })).granted).toBe(1);
    expect((await buckets.take({ scope: 'credential', key: 'k2', want: 1, perMinute: 5 })).granted).toBe(1);
  });

  test('concurrent takers never share a token: exactly the bucket is granted', async () => {
    const takes = await Promise.all(
      Array.from({ length: 40 }, () =>
        buckets.take({ scope: 'credential', key: 'race', want: 3, perMinute: 50 }),
      ),
    );
    expect(takes.reduce((sum, t) => sum + t.granted, 0)).toBe(50);
  });

  test('the OCSP nonce budget of an address holds over several processes, and fails closed', async () => {
    const clock = fixedClock(new Date());
    let calls = 0;
    let down = false;
    const takeToken = (client: string, perMinute: number) => {
      calls += 1;
      if (down)
        return Promise.reject(Object.assign(new Error('connection refused'), { code: 'ECONNREFUSED' }));
      return buckets.take({ scope: 'ocsp-nonce', key: client, want: 1, perMinute });
    };
    const errors: unknown[] = [];
    // Three budgets stand for three HTTP workers on one or several nodes.
    const budgets = Array.from({ length: 3 }, () =>
      createSharedSigningBudget({ perMinute: 5, clock, takeToken, onError: (e) => errors.push(e) }),
    );
    const granted: boolean[] = [];
    for (let i = 0; i < 12; i++) granted.push(await budgets[i % 3]!.take('192.0.2.1'));
    expect(granted.filter(Boolean)).toHaveLength(5);
    expect(granted.slice(0, 5)).toEqual(Array(5).fill(true));
    // Each process remembers its refusal: no round trip for the rest of the window.
    const before = calls;
    expect(await budgets[0]!.take('192.0.2.1')).toBe(false);
    expect(calls).toBe(before);
    // Another address has its own bucket; with the database gone, nothing is signed on the spot.
    expect(await budgets[1]!.take('192.0.2.2')).toBe(true);
    down = true;
    expect(await budgets[1]!.take('192.0.2.3')).toBe(false);
    expect(errors).toHaveLength(1);
  });

  test('a credential limiter leasing from the table lets exactly its budget through, over several processes', async () => {
    // Three limiters stand for three HTTP workers (on one or several nodes) sharing one database.
    const limiters = Array.from({ length: 3 }, () =>
      createSharedCredentialLimiter({ buckets, perMinute: 30 }),
    );
    let allowed = 0;
    for (let i = 0; i < 90; i++) if ((await limiters[i % 3]!.take('apikey:a')).allowed) allowed += 1;
    // Never more than the bucket (plus the refill of the test's own second or so).
    expect(allowed).toBeLessThanOrEqual(31);
    expect(allowed).toBeGreaterThanOrEqual(28);
  });

  test('a failed attempt beyond the shared budget is refused by a process that never saw the address', async () => {
    const nodeA = createSharedAttemptLimiter({ buckets, scope: 'failed-auth', perMinute: 5 });
    const nodeB = createSharedAttemptLimiter({ buckets, scope: 'failed-auth', perMinute: 5 });
    for (let i = 0; i < 5; i++) expect((await nodeA.fail('192.0.2.7')).allowed).toBe(true);
    expect(await nodeB.check('192.0.2.7')).toEqual({ allowed: true });
    const beyond = await nodeB.fail('192.0.2.7');
    expect(beyond.allowed).toBe(false);
    // From then on node B refuses before any work, without a round trip.
    expect((await nodeB.check('192.0.2.7')).allowed).toBe(false);
    expect((await nodeB.check('192.0.2.8')).allowed).toBe(true);
  });

  test('purgeIdle deletes only buckets idle for longer than asked', async () => {
    await buckets.take({ scope: 'credential', key: 'old', want: 1, perMinute: 5 });
    expect(await buckets.purgeIdle(3600)).toBe(0);
    await new Promise((r) => setTimeout(r, 20));
    expect(await buckets.purgeIdle(0.01)).toBeGreaterThanOrEqual(1);
    expect((await buckets.take({ scope: 'credential', key: 'old', want: 5, perMinute: 5 })).granted).toBe(5);
  });

  test('bad input is refused before the database', async () => {
    await expect(buckets.take({ scope: 'c', key: 'k', want: 0, perMinute: 5 })).rejects.toThrow(RangeError);
    await expect(buckets.take({ scope: 'c', key: 'k\u0000', want: 1, perMinute: 5 })).rejects.toThrow('NUL');
  });
});
