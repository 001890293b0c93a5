import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { createAuditRepository } from '../../src/db/audit.repository.ts';
import { createCertificatesRepository } from '../../src/db/certificates.repository.ts';
import { type Database, openDatabase } from '../../src/db/database.ts';
import { createIdempotencyRepository } from '../../src/db/idempotency.repository.ts';
import { createIssuanceUnitOfWork } from '../../src/db/issuance.unit-of-work.ts';
import {
  createTestDatabase,
  DATABASE_KINDS,
  describeEachDatabase,
  postgresAvailable,
  type TestDatabase,
} from '../helpers/database.ts';
import { fakeDer, manualClock, reservation, seedIssuer, sha256 } from './builders.ts';

/** Instances as the test decides: `alive` lists who still runs. */
function instancesOf(self: string, alive: Set<string>) {
  return { self: async () => self, isAlive: async (id: string) => alive.has(id) };
}

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

  let alive: Set<string>;
  /** The same database as seen by another server instance. */
  let other: ReturnType<typeof createIdempotencyRepository>;

  beforeEach(() => {
    clock = manualClock();
    alive = new Set(['instance-a', 'instance-b']);
    records = createIdempotencyRepository({
      db: getDatabase().db,
      instances: instancesOf('instance-a', alive),
      clock,
    });
    other = createIdempotencyRepository({
      db: getDatabase().db,
      instances: instancesOf('instance-b', alive),
      clock,
    });
  });

  /** Stores a certificate and links it to `request`'s record, as the CA does in one transaction. */
  async function storeLinked(repository: typeof records, serial: string) {
    const { db } = getDatabase();
    await seedIssuer(db);
    const certificates = createCertificatesRepository({ db, clock });
    await certificates.reservePending(reservation({ serial }));
    const audit = createAuditRepository({ db, clock, nodeId: 'node-a' });
    await createIssuanceUnitOfWork({ db, clock, audit, idempotency: repository }).storeIssued([
      {
        serial,
        der: fakeDer(serial),
        event: {
          actor: 'k_1',
          action: 'certificate.issue',
          target: `certificate:${serial}`,
          decision: 'allowed',
        },
        link: { credentialId: request.credentialId, key: request.key, serial },
      },
    ]);
  }

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

  test('an in-flight record of a live instance is taken over by the same request after a timeout', async () => {
    await records.begin(request);
    clock.advance(5 * 60 * 1000 - 1);
    expect(await records.begin(request)).toEqual({ outcome: 'in_flight' });
    expect(await other.begin(request)).toEqual({ outcome: 'in_flight' });
    clock.advance(1);
    expect(await records.begin({ ...request, requestHash: sha256('other') })).toEqual({
      outcome: 'mismatch',
    });
    expect(await records.begin(request)).toEqual({ outcome: 'recovered', certificateSerial: null });
    expect(await records.begin(request)).toEqual({ outcome: 'in_flight' });
  });

  test('a record whose instance is gone is recovered at once, with the certificate it stored', async () => {
    await records.begin(request);
    await storeLinked(records, '0a17');
    expect(await other.begin(request)).toEqual({ outcome: 'in_flight' });
    alive.delete('instance-a');
    expect(await other.begin(request)).toEqual({ outcome: 'recovered', certificateSerial: '0a17' });
    // The recovering instance holds it now: a further retry waits for it, then gets its answer.
    expect(await records.begin(request)).toEqual({ outcome: 'in_flight' });
    expect(await other.complete({ ...request, response })).toBe(true);
    expect(await records.begin(request)).toEqual({ outcome: 'completed', response });
  });

  test('a record whose instance is gone before storing anything is recovered to run again', async () => {
    await records.begin(request);
    alive.delete('instance-a');
    expect(await other.begin({ ...request, requestHash: sha256('other body') })).toEqual({
      outcome: 'mismatch',
    });
    expect(await other.begin(request)).toEqual({ outcome: 'recovered', certificateSerial: null });
  });

  test('one of several concurrent retries recovers a dead instance record; the others are told it is in flight', async () => {
    await records.begin(request);
    alive.delete('instance-a');
    const outcomes = await Promise.all(Array.from({ length: 10 }, () => other.begin(request)));
    expect(outcomes.filter((o) => o.outcome === 'recovered')).toHaveLength(1);
    expect(outcomes.filter((o) => o.outcome === 'in_flight')).toHaveLength(9);
  });

  test('a late release or link by the instance that lost the record changes nothing', async () => {
    await records.begin(request);
    alive.delete('instance-a');
    expect((await other.begin(request)).outcome).toBe('recovered');
    await records.release(request);
    await storeLinked(records, '0b17');
    alive.add('instance-a');
    expect(await records.begin(request)).toEqual({ outcome: 'in_flight' });
    alive.delete('instance-b');
    // Had the late link landed, this would answer 0b17.
    expect(await records.begin(request)).toEqual({ outcome: 'recovered', certificateSerial: null });
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

/** Real instances (Database.instances): a closed or killed server frees its records at once. */
describe.each(DATABASE_KINDS.filter((kind) => kind === 'pglite' || postgresAvailable()))(
  'idempotency records across server instances (%s)',
  (kind) => {
    let test_: TestDatabase;
    let second: Database | undefined;
    const request = { credentialId: 'k_1', key: 'crash-1', requestHash: sha256('POST /v1/certificates') };

    beforeEach(async () => {
      test_ = await createTestDatabase(kind);
    });
    afterEach(async () => {
      await second?.close();
      second = undefined;
      await test_.destroy();
    });

    test('a record of an instance whose database handle closed is recovered by the next instance at once', async () => {
      const first = createIdempotencyRepository({ db: test_.db, instances: test_.database.instances });
      expect(await first.begin(request)).toEqual({ outcome: 'started' });
      if (kind === 'postgres') {
        // Another node on the same database, while the first runs: the request is in flight.
        second = await openDatabase(test_.target);
        const node = createIdempotencyRepository({ db: second.db, instances: second.instances });
        expect(await node.begin(request)).toEqual({ outcome: 'in_flight' });
        await test_.database.close();
        expect(await node.begin(request)).toEqual({ outcome: 'recovered', certificateSerial: null });
      } else {
        // PGlite: one process at a time; the next process to hold the folder is a new instance.
        await test_.database.close();
        second = await openDatabase(test_.target);
        const next = createIdempotencyRepository({ db: second.db, instances: second.instances });
        expect(await next.begin(request)).toEqual({ outcome: 'recovered', certificateSerial: null });
      }
    });
  },
);
