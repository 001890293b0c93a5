import { beforeEach, expect, test } from 'vitest';
import { createIdempotencyRepository } from '../../src/db/idempotency.repository.ts';
import { describeEachDatabase } from '../helpers/database.ts';
import { manualClock, sha256 } from './builders.ts';

describeEachDatabase('the idempotency repository', (getDatabase) => {
  let clock: ReturnType<typeof manualClock>;
  let records: ReturnType<typeof createIdempotencyRepository>;
  const request = {
    credentialId: 'k_1',
    key: 'req-7f3a',
    requestHash: sha256('POST /v1/certificates {...}'),
  };
  const response = {
    status: 201,
    headers: { 'content-type': 'application/json', location: '/v1/certificates/01a2' },
    body: new TextEncoder().encode('{"serial":"01a2"}'),
  };

  beforeEach(() => {
    clock = manualClock();
    records = createIdempotencyRepository({ db: getDatabase().db, clock });
  });

  test('the first request starts, a retry during it is in flight, and a retry after it gets the stored response', async () => {
    expect(await records.begin(request)).toEqual({ outcome: 'started' });
    expect(await records.begin(request)).toEqual({ outcome: 'in_flight' });
    expect(await records.complete({ ...request, response })).toBe(true);
    const replay = await records.begin(request);
    expect(replay).toEqual({ outcome: 'completed', response });
    expect((replay as { response: { body: Uint8Array } }).response.body.constructor).toBe(Uint8Array);
  });

  test('the same key with another request is a mismatch, in flight or done', async () => {
    await records.begin(request);
    expect(await records.begin({ ...request, requestHash: sha256('other body') })).toEqual({
      outcome: 'mismatch',
    });
    await records.complete({ ...request, response });
    expect(await records.begin({ ...request, requestHash: sha256('other body') })).toEqual({
      outcome: 'mismatch',
    });
  });

  test('keys are scoped to the credential that sent them', async () => {
    await records.begin(request);
    expect(await records.begin({ ...request, credentialId: 'k_2' })).toEqual({ outcome: 'started' });
  });

  test('release forgets an in-flight request so that a retry runs anew', async () => {
    await records.begin(request);
    await records.release(request);
    expect(await records.begin(request)).toEqual({ outcome: 'started' });
  });

  test('a record expires after 24 hours and is then purged or reused', async () => {
    await records.begin(request);
    await records.complete({ ...request, response });
    clock.advance(24 * 60 * 60 * 1000 - 1);
    expect((await records.begin(request)).outcome).toBe('completed');
    expect(await records.purgeExpired()).toBe(0);
    clock.advance(1);
    expect(await records.begin({ ...request, requestHash: sha256('new body') })).toEqual({
      outcome: 'started',
    });
    clock.advance(24 * 60 * 60 * 1000);
    expect(await records.purgeExpired()).toBe(1);
  });

  test('an in-flight record abandoned by a dead request is taken over by the same request after a timeout', async () => {
    await records.begin(request);
    clock.advance(5 * 60 * 1000 - 1);
    expect(await records.begin(request)).toEqual({ outcome: 'in_flight' });
    clock.advance(1);
    expect(await records.begin({ ...request, requestHash: sha256('other') })).toEqual({
      outcome: 'mismatch',
    });
    expect(await records.begin(request)).toEqual({ outcome: 'started' });
    expect(await records.begin(request)).toEqual({ outcome: 'in_flight' });
  });

  test('concurrent first requests with one key start exactly once', async () => {
    const outcomes = await Promise.all(Array.from({ length: 20 }, () => records.begin(request)));
    expect(outcomes.filter((o) => o.outcome === 'started')).toHaveLength(1);
    expect(outcomes.filter((o) => o.outcome === 'in_flight')).toHaveLength(19);
  });

  test.each([
    { name: 'an empty key', key: '' },
    { name: 'a key over 255 characters', key: 'k'.repeat(256) },
    { name: 'a key with NUL', key: 'a\u0000b' },
  ])('begin refuses $name', async ({ key }) => {
    await expect(records.begin({ ...request, key })).rejects.toBeInstanceOf(TypeError);
  });
});
