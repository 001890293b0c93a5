import * as x509 from '@peculiar/x509';
import { afterEach, beforeAll, describe, expect, test } from 'vitest';
import { fixedClock } from '../../src/lib/clock.ts';
import { buildCrl, type CrlEntry } from '../../src/revocation/crl-builder.ts';
import { cacheEntries, revokedRegion, spliceEntries } from '../../src/revocation/crl-entry-cache.ts';
import { type CrlScheduler, createCrlScheduler } from '../../src/revocation/crl-scheduler.ts';
import { manualTimers, memoryCertificates, memoryCrlStore } from './helpers/memory.ts';
import { createIntermediate, createRoot, type TestCa } from './helpers/pki.ts';

let ca: TestCa;
beforeAll(async () => {
  ca = await createIntermediate(await createRoot());
});

const at = new Date('2026-03-01T12:00:00Z');
const entry = (serial: string, reason: CrlEntry['reason'] = 'superseded'): CrlEntry => ({
  serial,
  revokedAt: at,
  reason,
});
const build = (entries: CrlEntry[] | undefined, spliced?: ReturnType<typeof spliceEntries>) =>
  buildCrl({
    issuer: ca.der,
    signer: ca.signer,
    number: 7n,
    thisUpdate: at,
    nextUpdate: new Date(at.getTime() + 86_400_000),
    ...(spliced ? { spliced } : { entries: entries ? [entries] : [] }),
  });

describe('the CRL entry cache', () => {
  test('splicing changes into the cached entries gives the bytes of a CRL built from scratch', async () => {
    const before = ['10', '20', '30', '40', '5000'].map((serial) => entry(serial));
    const first = await build(before);
    const cache = cacheEntries({ crlNumber: 7n, certificate: ca.der, readAt: at, der: first.der })!;
    expect(cache.offsets).toHaveLength(5);
    const changes = [entry('0f'), entry('25'), entry('30', 'keyCompromise'), entry('6000'), entry('26')];
    const spliced = spliceEntries(cache, changes);
    expect(spliced.count).toBe(9);
    const after = [...before.filter((e) => e.serial !== '30'), ...changes].sort((a, b) =>
      a.serial < b.serial ? -1 : 1,
    );
    const scratch = await build(after);
    const incremental = await build(undefined, spliced);
    expect(Buffer.from(revokedRegion(incremental.der)).equals(Buffer.from(revokedRegion(scratch.der)))).toBe(
      true,
    );
    expect(new x509.X509Crl(incremental.der).entries.map((e) => e.serialNumber.toLowerCase())).toEqual(
      after.map((e) => e.serial),
    );
  });

  test('an empty CRL caches no entries and splices into a list', async () => {
    const empty = await build([]);
    const cache = cacheEntries({ crlNumber: 7n, certificate: ca.der, readAt: at, der: empty.der })!;
    expect(cache.region.byteLength).toBe(0);
    const crl = await build(undefined, spliceEntries(cache, [entry('0a')]));
    expect(new x509.X509Crl(crl.der).entries.map((e) => e.serialNumber.toLowerCase())).toEqual(['0a']);
  });

  test('a list out of serial order is not cached (splicing by binary search could repeat a serial)', async () => {
    const crl = await build([entry('30'), entry('10')]);
    expect(cacheEntries({ crlNumber: 7n, certificate: ca.der, readAt: at, der: crl.der })).toBeUndefined();
  });
});

describe('the scheduler with the cache', () => {
  const running: CrlScheduler[] = [];
  afterEach(async () => {
    await Promise.all(running.splice(0).map((scheduler) => scheduler.stop()));
  });

  test('a revocation reads only the changes, a half-life CRL reads every entry again', async () => {
    const clock = fixedClock('2026-03-01T12:00:00Z');
    const timers = manualTimers(clock);
    const store = memoryCrlStore();
    const certificates = memoryCertificates();
    let fullReads = 0;
    const entries = {
      streamRevokedForCrl: (...args: Parameters<typeof certificates.streamRevokedForCrl>) => {
        fullReads += 1;
        return certificates.streamRevokedForCrl(...args);
      },
      streamRevocationChangesSince: certificates.streamRevocationChangesSince!.bind(certificates),
    };
    const scheduler = createCrlScheduler({
      issuers: {
        listCrlIssuers: async () => [
          { id: 'ca', certificate: ca.der, signer: ca.signer, issuing: true, lastCertificateExpiry: null },
        ],
      },
      entries,
      store,
      clock,
      timers,
    });
    running.push(scheduler);
    await scheduler.start();
    timers.advance(0);
    await scheduler.idle();
    const revoke = (serial: string) => {
      certificates.add({
        serial,
        issuerId: 'ca',
        notAfter: new Date(clock.now().getTime() + 30 * 86_400_000),
        status: 'revoked',
        revokedAt: clock.now(),
        revocationReason: 'keyCompromise',
      });
      scheduler.notifyRevocation('ca');
    };
    for (const serial of ['30', '10', '20']) {
      timers.advance(1000);
      revoke(serial);
      timers.advance(100);
      await scheduler.idle();
    }
    expect(fullReads).toBe(1);
    const latest = (await store.getLatest('ca', 0))!;
    expect(new x509.X509Crl(latest.der).entries.map((e) => e.serialNumber.toLowerCase())).toEqual([
      '10',
      '20',
      '30',
    ]);
    timers.advance(12 * 3_600_000);
    await scheduler.idle();
    expect(fullReads).toBe(2);
  });
});
