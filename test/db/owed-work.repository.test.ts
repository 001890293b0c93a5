import { beforeEach, describe, expect, test } from 'vitest';
import { createCertificatesRepository } from '../../src/db/certificates.repository.ts';
import {
  createOwedWorkRepository,
  crlWorkKey,
  oweWithin,
  parseCrlWorkKey,
} from '../../src/db/owed-work.repository.ts';
import { describeEachDatabase } from '../helpers/database.ts';
import { fakeDer, manualClock, reservation, seedIssuer } from './builders.ts';

describeEachDatabase('the owed work outbox', (getDatabase) => {
  let clock: ReturnType<typeof manualClock>;
  let owed: ReturnType<typeof createOwedWorkRepository>;
  const crl = { kind: 'crl' as const, key: 'dev-intermediate/0' };

  beforeEach(async () => {
    clock = manualClock();
    owed = createOwedWorkRepository({ db: getDatabase().db, clock });
  });

  test('owing again keeps the first owing time and gives a new version', async () => {
    await owed.owe([crl]);
    const [first] = await owed.list('crl');
    clock.advance(2000);
    await owed.owe([crl]);
    const rows = await owed.list('crl');
    expect(rows).toHaveLength(1);
    expect(rows[0]!.createdAt).toEqual(first!.createdAt);
    expect(rows[0]!.updatedAt.getTime() - first!.createdAt.getTime()).toBe(2000);
    expect(rows[0]!.version).not.toBe(first!.version);
  });

  test('settle deletes the row when nothing was owed since the claim', async () => {
    await owed.owe([crl]);
    const claim = (await owed.claim('crl', crl.key))!;
    expect(await owed.settle(claim, { claimedAt: clock.now() })).toBe('settled');
    expect(await owed.list('crl')).toEqual([]);
    expect(await owed.claim('crl', crl.key)).toBeNull();
  });

  test('settle keeps a row owed again during the work, dated from the claim', async () => {
    await owed.owe([crl]);
    clock.advance(10_000);
    const claimedAt = clock.now();
    const claim = (await owed.claim('crl', crl.key))!;
    clock.advance(1000);
    await owed.owe([crl]);
    expect(await owed.settle(claim, { claimedAt })).toBe('remaining');
    const [row] = await owed.list('crl');
    expect(row!.createdAt).toEqual(claimedAt);
  });

  test('an old claim never deletes work owed after another worker settled it', async () => {
    await owed.owe([crl]);
    const stale = (await owed.claim('crl', crl.key))!;
    const other = (await owed.claim('crl', crl.key))!;
    expect(await owed.settle(other, { claimedAt: clock.now() })).toBe('settled');
    await owed.owe([crl]);
    expect(await owed.settle(stale, { claimedAt: clock.now() })).toBe('remaining');
    expect(await owed.list('crl')).toHaveLength(1);
  });

  test('records failed attempts on the row, without NUL characters', async () => {
    await owed.owe([crl]);
    await owed.recordFailure('crl', crl.key, 'partition unreachable\u0000');
    await owed.recordFailure('crl', crl.key, 'partition unreachable');
    const [row] = await owed.list('crl');
    expect(row).toMatchObject({ attempts: 2, lastError: 'partition unreachable' });
    await owed.recordFailure('crl', 'other/0', 'nothing owed here');
    expect(await owed.list('crl')).toHaveLength(1);
  });

  test('lists only what is due by a time when asked', async () => {
    await owed.owe([
      crl,
      { kind: 'crl', key: 'later/0', notBefore: new Date(clock.now().getTime() + 60_000) },
    ]);
    expect((await owed.list('crl', { dueBy: clock.now() })).map((row) => row.key)).toEqual([crl.key]);
    expect(await owed.list('crl')).toHaveLength(2);
  });

  test('a write that rolls back owes nothing', async () => {
    await expect(
      getDatabase().db.transaction(async (tx) => {
        await oweWithin(tx, [crl], clock.now());
        throw new Error('the revocation failed');
      }),
    ).rejects.toThrow('the revocation failed');
    expect(await owed.list('crl')).toEqual([]);
  });

  test('a revocation owes a CRL for its issuer shard in its own transaction; an unchanged one owes none', async () => {
    const { db } = getDatabase();
    await seedIssuer(db);
    const certificates = createCertificatesRepository({ db, clock });
    const row = reservation({ crlShard: 0 });
    await certificates.reservePending(row);
    await certificates.markIssued(row.serial, fakeDer(row.serial));
    await certificates.revoke(row.serial, { reason: 'superseded', revokedAt: clock.now() });
    const [owedRow] = await owed.list('crl');
    expect(owedRow!.key).toBe(crlWorkKey('dev-intermediate', 0));
    await owed.settle((await owed.claim('crl', owedRow!.key))!, { claimedAt: clock.now() });
    await certificates.revoke(row.serial, { reason: 'affiliationChanged', revokedAt: clock.now() });
    expect(await owed.list('crl')).toEqual([]);
    await certificates.revoke(row.serial, { reason: 'keyCompromise', revokedAt: clock.now() });
    expect(await owed.list('crl')).toHaveLength(1);
  });

  test('refuses an unknown kind and an empty key', async () => {
    await expect(owed.owe([{ kind: 'acme-order' as never, key: '01' }])).rejects.toThrow(/kind/);
    await expect(owed.owe([{ kind: 'crl', key: '' }])).rejects.toThrow(/empty/);
  });
});

describe('CRL work keys', () => {
  test.each([
    { name: 'shard 0', key: 'dev-intermediate/0', parsed: { issuerId: 'dev-intermediate', shard: 0 } },
    { name: 'shard 12', key: 'a/12', parsed: { issuerId: 'a', shard: 12 } },
    { name: 'a leading zero', key: 'a/01', parsed: undefined },
    { name: 'no shard', key: 'a', parsed: undefined },
    { name: 'a negative shard', key: 'a/-1', parsed: undefined },
  ])('$name', ({ key, parsed }) => {
    expect(parseCrlWorkKey(key)).toEqual(parsed);
    if (parsed) expect(crlWorkKey(parsed.issuerId, parsed.shard)).toBe(key);
  });
});
