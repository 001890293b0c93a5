import { beforeEach, expect, test } from 'vitest';
import { createCrlsRepository } from '../../src/db/crls.repository.ts';
import { describeEachDatabase } from '../helpers/database.ts';
import { seedIssuer, sha256 } from './builders.ts';

describeEachDatabase('the CRLs repository', (getDatabase) => {
  let crls: ReturnType<typeof createCrlsRepository>;
  beforeEach(async () => {
    crls = createCrlsRepository({ db: getDatabase().db });
    await seedIssuer(getDatabase().db);
    await seedIssuer(getDatabase().db, { id: 'other-intermediate' });
  });

  const crl = (crlNumber: bigint, overrides: Partial<Parameters<typeof crls.save>[0]> = {}) => {
    const der = new TextEncoder().encode(`crl ${crlNumber}`);
    return {
      issuerId: 'dev-intermediate',
      shard: 0,
      kind: 'full' as const,
      crlNumber,
      thisUpdate: new Date('2026-03-01T00:00:00Z'),
      nextUpdate: new Date('2026-03-02T00:00:00Z'),
      der,
      sha256: sha256(der),
      generatedAt: new Date('2026-03-01T00:00:01Z'),
      generatedBy: 'node-a',
      ...overrides,
    };
  };

  test('CRL numbers count up from 1 per issuer and shard, shared by full and delta CRLs', async () => {
    expect(await crls.allocateNumber('dev-intermediate', 0)).toBe(1n);
    expect(await crls.allocateNumber('dev-intermediate', 0)).toBe(2n);
    expect(await crls.allocateNumber('dev-intermediate', 1)).toBe(1n);
    expect(await crls.allocateNumber('other-intermediate', 0)).toBe(1n);
    expect(await crls.allocateNumber('dev-intermediate', 0)).toBe(3n);
  });

  test('atLeast lifts the sequence but never lowers it', async () => {
    expect(await crls.allocateNumber('dev-intermediate', 0, { atLeast: 1000n })).toBe(1000n);
    expect(await crls.allocateNumber('dev-intermediate', 0, { atLeast: 5n })).toBe(1001n);
    expect(await crls.allocateNumber('dev-intermediate', 0, { atLeast: 2n ** 62n })).toBe(2n ** 62n);
  });

  test('concurrent allocations never hand out a number twice', async () => {
    const numbers = await Promise.all(
      Array.from({ length: 50 }, () => crls.allocateNumber('dev-intermediate', 0)),
    );
    expect(new Set(numbers).size).toBe(50);
    expect(numbers.map(Number).sort((a, b) => a - b)).toEqual(Array.from({ length: 50 }, (_, i) => i + 1));
  });

  test('save keeps the newest CRL of each kind and refuses to go back to an older one', async () => {
    expect(await crls.save(crl(2n))).toBe('saved');
    expect(await crls.save(crl(1n))).toBe('stale');
    expect(await crls.save(crl(2n))).toBe('stale');
    expect(await crls.save(crl(3n, { kind: 'delta', baseCrlNumber: 2n }))).toBe('saved');
    const full = (await crls.getLatest('dev-intermediate', 0, 'full'))!;
    expect(full.crlNumber).toBe(2n);
    expect(new TextDecoder().decode(full.der)).toBe('crl 2');
    expect(full.sha256).toEqual(sha256(full.der));
    const delta = (await crls.getLatestInfo('dev-intermediate', 0, 'delta'))!;
    expect(delta).toMatchObject({ crlNumber: 3n, baseCrlNumber: 2n, generatedBy: 'node-a' });
    expect(delta).not.toHaveProperty('der');
    expect(await crls.getLatest('dev-intermediate', 1, 'full')).toBeNull();
  });

  test('a full CRL with a base number, or a delta without one, is refused', async () => {
    await expect(crls.save(crl(1n, { baseCrlNumber: 1n }))).rejects.toBeInstanceOf(TypeError);
    await expect(crls.save(crl(1n, { kind: 'delta' }))).rejects.toBeInstanceOf(TypeError);
  });

  test('listDue finds the CRLs whose nextUpdate has come, soonest first', async () => {
    await crls.save(crl(1n, { nextUpdate: new Date('2026-03-02T00:00:00Z') }));
    await crls.save(
      crl(1n, { issuerId: 'other-intermediate', nextUpdate: new Date('2026-03-01T12:00:00Z') }),
    );
    await crls.save(crl(1n, { shard: 1, nextUpdate: new Date('2026-03-05T00:00:00Z') }));
    const due = await crls.listDue(new Date('2026-03-02T00:00:00Z'));
    expect(due.map((c) => [c.issuerId, c.shard])).toEqual([
      ['other-intermediate', 0],
      ['dev-intermediate', 0],
    ]);
  });

  test('saveImported keeps the newest full CRL, marks it imported and lifts the number sequence in the same step', async () => {
    const { kind: _kind, ...imported } = crl(7n, { generatedBy: 'import' });
    expect(await crls.saveImported(imported)).toBe('saved');
    expect(await crls.saveImported({ ...imported, crlNumber: 7n })).toBe('stale');
    expect(await crls.saveImported({ ...imported, crlNumber: 6n })).toBe('stale');
    expect(await crls.getLatestInfo('dev-intermediate', 0, 'full')).toMatchObject({
      crlNumber: 7n,
      imported: true,
      generatedBy: 'import',
    });
    expect(await crls.allocateNumber('dev-intermediate', 0)).toBe(8n);
    // An import at the number last handed out keeps the sequence there: it never goes back.
    expect(await crls.saveImported({ ...imported, crlNumber: 8n })).toBe('saved');
    expect(await crls.allocateNumber('dev-intermediate', 0)).toBe(9n);
    // What the scheduler saves is not imported.
    expect(await crls.save(crl(1n, { issuerId: 'other-intermediate' }))).toBe('saved');
    expect((await crls.getLatestInfo('other-intermediate', 0, 'full'))?.imported).toBe(false);
  });

  test('listLatestInfo lists every served CRL without its DER, by issuer, shard and kind', async () => {
    await crls.save(crl(2n, { issuerId: 'other-intermediate' }));
    await crls.save(crl(3n, { kind: 'delta', baseCrlNumber: 2n }));
    await crls.save(crl(2n));
    const { kind: _kind, ...imported } = crl(1n, { shard: 1 });
    await crls.saveImported(imported);
    const list = await crls.listLatestInfo();
    expect(list.map((c) => [c.issuerId, c.shard, c.kind, c.crlNumber, c.imported])).toEqual([
      ['dev-intermediate', 0, 'delta', 3n, false],
      ['dev-intermediate', 0, 'full', 2n, false],
      ['dev-intermediate', 1, 'full', 1n, true],
      ['other-intermediate', 0, 'full', 2n, false],
    ]);
    for (const info of list) expect(info).not.toHaveProperty('der');
  });
});
