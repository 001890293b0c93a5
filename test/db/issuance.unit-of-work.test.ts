import { beforeEach, expect, test } from 'vitest';
import { createAuditRepository } from '../../src/db/audit.repository.ts';
import { createCertificatesRepository } from '../../src/db/certificates.repository.ts';
import { createIdempotencyRepository } from '../../src/db/idempotency.repository.ts';
import {
  createIssuanceUnitOfWork,
  type IssuedCertificateToStore,
} from '../../src/db/issuance.unit-of-work.ts';
import { describeEachDatabase } from '../helpers/database.ts';
import { fakeDer, manualClock, reservation, seedIssuer, sha256 } from './builders.ts';

describeEachDatabase('the issuance unit of work', (getDatabase) => {
  let clock: ReturnType<typeof manualClock>;
  let certificates: ReturnType<typeof createCertificatesRepository>;
  let audit: ReturnType<typeof createAuditRepository>;

  beforeEach(async () => {
    clock = manualClock();
    certificates = createCertificatesRepository({ db: getDatabase().db, clock });
    audit = createAuditRepository({ db: getDatabase().db, clock, nodeId: 'node-a' });
    await seedIssuer(getDatabase().db);
  });

  const item = (serial: string, link?: IssuedCertificateToStore['link']): IssuedCertificateToStore => ({
    serial,
    der: fakeDer(serial),
    event: {
      actor: 'k_1',
      action: 'certificate.issue',
      target: `certificate:${serial}`,
      decision: 'allowed',
    },
    ...(link ? { link } : {}),
  });

  const issueEvents = async () =>
    (await audit.list({ action: 'certificate.issue' })).items.map((event) => event.target).sort();

  test('stores a batch with the audit events of what it stored, and names what it could not store', async () => {
    const batch = Array.from({ length: 3 }, () => reservation());
    await certificates.reservePendingMany(batch);
    // Another DER is already stored under the third serial: it is not stored again nor audited.
    await certificates.markIssued(batch[2]!.serial, fakeDer(`${batch[2]!.serial}00`));
    const unit = createIssuanceUnitOfWork({ db: getDatabase().db, clock, audit });
    const items = batch.map((r) => item(r.serial));
    const { notStored } = await unit.storeIssued(items);
    expect(notStored).toEqual([batch[2]!.serial]);
    for (const stored of items.slice(0, 2)) {
      const row = await certificates.findBySerial(stored.serial);
      expect(row?.status).toBe('good');
      // PGlite answers Uint8Array, pg a Buffer: compare the bytes.
      expect(Buffer.from(row!.der!).equals(Buffer.from(stored.der))).toBe(true);
    }
    expect(await issueEvents()).toEqual(
      batch
        .slice(0, 2)
        .map((r) => `certificate:${r.serial}`)
        .sort(),
    );
  });

  test('stores nothing of the batch when appending its audit events fails', async () => {
    const batch = Array.from({ length: 2 }, () => reservation());
    await certificates.reservePendingMany(batch);
    const failingAudit = {
      appendWithin: async () => {
        throw new Error('audit unavailable');
      },
    };
    const unit = createIssuanceUnitOfWork({ db: getDatabase().db, clock, audit: failingAudit });
    await expect(unit.storeIssued(batch.map((r) => item(r.serial)))).rejects.toThrow('audit unavailable');
    for (const r of batch) {
      expect(await certificates.findBySerial(r.serial)).toMatchObject({ status: 'pending', der: null });
    }
    expect(await issueEvents()).toEqual([]);
  });

  test('links a stored certificate to the idempotent request that asked for it, in the same transaction', async () => {
    const idempotency = createIdempotencyRepository({
      db: getDatabase().db,
      instances: { self: async () => 'instance-a', isAlive: async () => true },
      clock,
    });
    const request = { credentialId: 'k_1', key: 'req-1', requestHash: sha256('POST /v1/certificates') };
    expect(await idempotency.begin(request)).toEqual({ outcome: 'started' });
    const r = reservation();
    await certificates.reservePending(r);
    const unit = createIssuanceUnitOfWork({ db: getDatabase().db, clock, audit, idempotency });
    await unit.storeIssued([item(r.serial, { credentialId: 'k_1', key: 'req-1', serial: r.serial })]);
    // Another instance finds the request's certificate after this one is gone (issue #17).
    const other = createIdempotencyRepository({
      db: getDatabase().db,
      instances: { self: async () => 'instance-b', isAlive: async () => false },
      clock,
    });
    expect(await other.begin(request)).toEqual({ outcome: 'recovered', certificateSerial: r.serial });
  });

  test('tells its observer how long each batch took', async () => {
    const r = reservation();
    await certificates.reservePending(r);
    const seen: [string, number][] = [];
    const unit = createIssuanceUnitOfWork({
      db: getDatabase().db,
      clock,
      audit,
      observe: (operation, seconds) => seen.push([operation, seconds]),
    });
    await unit.storeIssued([item(r.serial)]);
    expect(seen).toHaveLength(1);
    expect(seen[0]![0]).toBe('certificates.storeIssued');
    expect(seen[0]![1]).toBeGreaterThanOrEqual(0);
  });
});
