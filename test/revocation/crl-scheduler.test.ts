import * as x509 from '@peculiar/x509';
import { afterEach, beforeAll, describe, expect, test } from 'vitest';
import { fixedClock } from '../../src/lib/clock.ts';
import { timeDerivedCrlNumber } from '../../src/revocation/crl-number.ts';
import {
  type CrlIssuer,
  type CrlScheduler,
  type CrlSchedulerOptions,
  createCrlScheduler,
  halfLife,
  needsCrl,
} from '../../src/revocation/crl-scheduler.ts';
import { manualTimers, memoryCertificates, memoryCrlStore, memoryOwedCrls } from './helpers/memory.ts';
import { createIntermediate, createRoot, type TestCa } from './helpers/pki.ts';

const START = '2026-03-01T12:00:00.000Z';
const SECOND = 1000;
const HOUR = 3600 * SECOND;
const DAY = 24 * HOUR;

let root: TestCa;
let ca: TestCa;
beforeAll(async () => {
  root = await createRoot();
  ca = await createIntermediate(root);
});

const running: CrlScheduler[] = [];
afterEach(async () => {
  await Promise.all(running.splice(0).map((scheduler) => scheduler.stop()));
});

function setup({
  durable = false,
  ...overrides
}: Partial<CrlSchedulerOptions> & { issuer?: Partial<CrlIssuer>; durable?: boolean } = {}) {
  const clock = fixedClock(START);
  const timers = manualTimers(clock);
  const store = memoryCrlStore();
  const certificates = memoryCertificates();
  const owed = memoryOwedCrls(clock);
  const errors: unknown[] = [];
  const issuer: CrlIssuer = {
    id: 'dev-intermediate',
    certificate: ca.der,
    signer: ca.signer,
    issuing: true,
    lastCertificateExpiry: null,
    ...overrides.issuer,
  };
  const list = [issuer];
  const scheduler = createCrlScheduler({
    issuers: { listCrlIssuers: async () => list },
    entries: certificates,
    store,
    clock,
    timers,
    onError: (error) => errors.push(error),
    ...(durable ? { owed } : {}),
    ...overrides,
  });
  running.push(scheduler);
  /** Moves time forward and waits for the CRLs that it triggered. */
  async function advance(ms: number) {
    timers.advance(ms);
    await scheduler.idle();
  }
  function revoke(serial: string, notAfter = new Date(clock.now().getTime() + 30 * DAY)) {
    certificates.add({
      serial,
      issuerId: issuer.id,
      notAfter,
      status: 'revoked',
      revokedAt: clock.now(),
      revocationReason: 'keyCompromise',
    });
    scheduler.notifyRevocation(issuer.id);
  }
  const serialsIn = (der: Uint8Array) =>
    new x509.X509Crl(der).entries.map((entry) => entry.serialNumber.toLowerCase());
  return {
    clock,
    timers,
    store,
    certificates,
    owed,
    scheduler,
    issuer,
    list,
    errors,
    advance,
    revoke,
    serialsIn,
  };
}

describe('the CRL scheduler', () => {
  test('publishes a first CRL at start, numbered from the time, and plans the next at half-life', async () => {
    const { scheduler, store, timers, advance } = setup();
    await scheduler.start();
    await advance(0);
    expect(store.saved).toHaveLength(1);
    const crl = store.saved[0]!;
    expect(crl.crlNumber).toBe(timeDerivedCrlNumber(new Date(START)));
    expect(crl.thisUpdate.toISOString()).toBe(START);
    expect(crl.nextUpdate.getTime() - crl.thisUpdate.getTime()).toBe(DAY);
    expect(timers.pendingAt()).toContainEqual(new Date(halfLife(crl)));
    expect(await new x509.X509Crl(crl.der).verify({ publicKey: ca.certificate.publicKey })).toBe(true);
  });

  test('makes the next CRL at half-life, not before', async () => {
    const { scheduler, store, advance } = setup();
    await scheduler.start();
    await advance(0);
    await advance(12 * HOUR - SECOND);
    expect(store.saved).toHaveLength(1);
    await advance(SECOND);
    expect(store.saved).toHaveLength(2);
    expect(store.saved[1]!.crlNumber).toBeGreaterThan(store.saved[0]!.crlNumber);
    expect(store.saved[1]!.thisUpdate.getTime() - store.saved[0]!.thisUpdate.getTime()).toBe(12 * HOUR);
  });

  test('honours a configured validity', async () => {
    const { scheduler, store, advance } = setup({ validityMs: 4 * HOUR });
    await scheduler.start();
    await advance(0);
    await advance(2 * HOUR);
    expect(store.saved.map((crl) => crl.nextUpdate.getTime() - crl.thisUpdate.getTime())).toEqual([
      4 * HOUR,
      4 * HOUR,
    ]);
  });

  test('lists a revocation in a CRL made within the default 100 ms window, not earlier', async () => {
    const { scheduler, store, advance, revoke, serialsIn } = setup();
    await scheduler.start();
    await advance(0);
    await advance(HOUR);
    revoke('0a11');
    await advance(99);
    expect(store.saved).toHaveLength(1);
    await advance(1);
    expect(store.saved).toHaveLength(2);
    expect(serialsIn(store.saved[1]!.der)).toEqual(['0a11']);
  });

  test('lists a revocation in a CRL made within the debounce delay, not earlier', async () => {
    const { scheduler, store, advance, revoke, serialsIn } = setup({ debounceMs: 5 * SECOND });
    await scheduler.start();
    await advance(0);
    await advance(HOUR);
    revoke('0a11');
    await advance(5 * SECOND - 1);
    expect(store.saved).toHaveLength(1);
    await advance(1);
    expect(store.saved).toHaveLength(2);
    expect(serialsIn(store.saved[1]!.der)).toEqual(['0a11']);
  });

  test('gathers revocations within the delay into one CRL and never postpones it', async () => {
    const { scheduler, store, advance, revoke, serialsIn } = setup({ debounceMs: 5 * SECOND });
    await scheduler.start();
    await advance(0);
    revoke('01');
    await advance(2 * SECOND);
    revoke('02');
    await advance(2 * SECOND);
    revoke('03');
    await advance(SECOND);
    // 5 s after the first revocation, whatever came after it.
    expect(store.saved).toHaveLength(2);
    expect(serialsIn(store.saved[1]!.der)).toEqual(['01', '02', '03']);
    await advance(10 * SECOND);
    expect(store.saved).toHaveLength(2);
  });

  test('makes another CRL for a revocation notified while one was being made', async () => {
    const certificates = memoryCertificates();
    let scheduler: CrlScheduler | undefined;
    let reads = 0;
    const { store, advance, serialsIn, issuer, clock, ...rest } = setup({
      entries: {
        async *streamRevokedForCrl(issuerId, options) {
          reads += 1;
          yield* certificates.streamRevokedForCrl(issuerId, options);
          if (reads === 2) {
            // Committed and notified after this CRL read its entries.
            certificates.add({
              serial: '0b',
              issuerId,
              notAfter: new Date(clock.now().getTime() + DAY),
              status: 'revoked',
              revokedAt: clock.now(),
              revocationReason: 'superseded',
            });
            scheduler!.notifyRevocation(issuerId);
          }
        },
      },
    });
    scheduler = rest.scheduler;
    await scheduler.start();
    await advance(0);
    await scheduler.publishNow(issuer.id);
    expect(serialsIn(store.saved.at(-1)!.der)).toEqual([]);
    await advance(5 * SECOND);
    expect(store.saved).toHaveLength(3);
    expect(serialsIn(store.saved.at(-1)!.der)).toEqual(['0b']);
  });

  test('answers publishNow with the CRL it saved', async () => {
    const { scheduler, store, issuer } = setup();
    const crl = await scheduler.publishNow(issuer.id);
    expect(crl).toBeDefined();
    expect(store.saved.at(-1)).toBe(crl);
  });

  test('waits for the next half-life when another node already published', async () => {
    const { scheduler, store, advance, issuer, clock } = setup();
    await scheduler.start();
    await advance(0);
    // Another node publishes 6 hours later; this node's timer still fires at its half-life.
    await advance(6 * HOUR);
    const other = createCrlScheduler({
      issuers: { listCrlIssuers: async () => [issuer] },
      entries: memoryCertificates(),
      store,
      clock,
      timers: manualTimers(clock),
    });
    running.push(other);
    await other.publishNow(issuer.id);
    expect(store.saved).toHaveLength(2);
    await advance(6 * HOUR);
    expect(store.saved).toHaveLength(2);
    await advance(6 * HOUR);
    expect(store.saved).toHaveLength(3);
  });

  test('keeps CRL numbers increasing across a restart and a database restored from an earlier copy', async () => {
    const first = setup();
    const restore = first.store.snapshot();
    await first.scheduler.start();
    await first.advance(0);
    for (let i = 0; i < 3; i++) {
      first.revoke(`0${i + 1}`);
      await first.advance(5 * SECOND);
    }
    await first.scheduler.stop();
    const seen = first.store.saved.map((crl) => crl.crlNumber);
    // Restart: a new scheduler on the same store, a few seconds later.
    first.clock.advance(3 * SECOND);
    const second = createCrlScheduler({
      issuers: { listCrlIssuers: async () => [first.issuer] },
      entries: first.certificates,
      store: first.store,
      clock: first.clock,
      timers: manualTimers(first.clock),
    });
    running.push(second);
    seen.push((await second.publishNow(first.issuer.id))!.crlNumber);
    // Restore the database from the copy taken before any of these CRLs, then publish again.
    restore();
    first.clock.advance(SECOND);
    seen.push((await second.publishNow(first.issuer.id))!.crlNumber);
    for (let i = 1; i < seen.length; i++) expect(seen[i]!).toBeGreaterThan(seen[i - 1]!);
  });

  test('keeps CRL numbers increasing when the clock steps back', async () => {
    const { scheduler, store, issuer, clock } = setup();
    const a = await scheduler.publishNow(issuer.id);
    clock.advance(-HOUR);
    const b = await scheduler.publishNow(issuer.id);
    expect(b!.crlNumber).toBe(a!.crlNumber + 1n);
    expect(store.saved).toHaveLength(2);
  });

  test('drops an entry after one CRL past its certificate expiry', async () => {
    const { scheduler, store, advance, revoke, serialsIn, clock } = setup({ removalMarginMs: 0 });
    await scheduler.start();
    await advance(0);
    const expiry = new Date(clock.now().getTime() + 13 * HOUR);
    revoke('0e', expiry);
    await advance(5 * SECOND);
    expect(serialsIn(store.saved.at(-1)!.der)).toEqual(['0e']);
    // Half-life at +12 h 00:05: before expiry, still listed.
    await advance(12 * HOUR);
    expect(store.saved.at(-1)!.thisUpdate.getTime()).toBeLessThan(expiry.getTime());
    expect(serialsIn(store.saved.at(-1)!.der)).toEqual(['0e']);
    // +24 h: the first CRL past expiry lists it once more.
    await advance(12 * HOUR);
    expect(store.saved.at(-1)!.thisUpdate.getTime()).toBeGreaterThan(expiry.getTime());
    expect(serialsIn(store.saved.at(-1)!.der)).toEqual(['0e']);
    // +36 h: gone.
    await advance(12 * HOUR);
    expect(serialsIn(store.saved.at(-1)!.der)).toEqual([]);
  });

  test('keeps an entry for the removal margin after it could leave', async () => {
    const { scheduler, store, advance, revoke, serialsIn, clock } = setup();
    await scheduler.start();
    await advance(0);
    revoke('0f', new Date(clock.now().getTime() + 11 * HOUR + 30 * 60 * SECOND));
    await advance(5 * SECOND);
    await advance(12 * HOUR);
    await advance(12 * HOUR);
    // The previous CRL (12:00:05 + 12 h) is only 35 min past expiry: within the 1 h margin.
    expect(serialsIn(store.saved.at(-1)!.der)).toEqual(['0f']);
    await advance(12 * HOUR);
    expect(serialsIn(store.saved.at(-1)!.der)).toEqual([]);
  });

  test('keeps publishing for an issuer that stopped issuing until a CRL past its last certificate expiry', async () => {
    const lastExpiry = new Date(Date.parse(START) + 30 * HOUR);
    const { scheduler, store, advance, timers } = setup({
      issuer: { issuing: false, lastCertificateExpiry: lastExpiry },
    });
    await scheduler.start();
    await advance(0);
    await advance(12 * HOUR);
    await advance(12 * HOUR);
    expect(store.saved).toHaveLength(3);
    await advance(12 * HOUR);
    // +36 h is the first CRL after the last expiry (+30 h): it is published, then nothing more.
    expect(store.saved).toHaveLength(4);
    expect(store.saved.at(-1)!.thisUpdate.getTime()).toBeGreaterThan(lastExpiry.getTime());
    await advance(5 * DAY);
    expect(store.saved).toHaveLength(4);
    expect(timers.pendingAt().filter((at) => at.getTime() > Date.parse(START) + 6 * DAY)).toHaveLength(1); // the rescan only
  });

  test('publishes nothing for an issuer that stopped issuing and issued nothing', async () => {
    const { scheduler, store, advance } = setup({ issuer: { issuing: false, lastCertificateExpiry: null } });
    await scheduler.start();
    await advance(DAY);
    expect(store.saved).toHaveLength(0);
  });

  test('retries with growing delays after a failure and recovers', async () => {
    let failures = 2;
    const { scheduler, store, advance, errors } = setup({
      retryMs: 5 * SECOND,
      issuer: {
        signer: {
          ...ca.signer,
          crypto: {
            subtle: {
              sign: async (...args: Parameters<typeof ca.signer.crypto.subtle.sign>) => {
                if (failures-- > 0)
                  throw Object.assign(new Error('partition unreachable'), { code: 'hsm.unavailable' });
                return ca.signer.crypto.subtle.sign(...args);
              },
            },
          },
        },
      },
    });
    await scheduler.start();
    await advance(0);
    expect(errors).toHaveLength(1);
    expect(scheduler.status()[0]!.consecutiveFailures).toBe(1);
    await advance(5 * SECOND);
    expect(errors).toHaveLength(2);
    await advance(5 * SECOND);
    expect(store.saved).toHaveLength(0);
    await advance(5 * SECOND);
    expect(store.saved).toHaveLength(1);
    expect(scheduler.status()[0]!.consecutiveFailures).toBe(0);
  });

  test('leaves the CRL to the node holding the writer lock and looks again, a revocation still owed', async () => {
    let held = true;
    const { scheduler, store, advance, revoke, serialsIn } = setup({
      retryMs: 5 * SECOND,
      lock: async (_name, fn) => (held ? { acquired: false } : { acquired: true, value: await fn() }),
    });
    await scheduler.start();
    await advance(0);
    expect(store.saved).toHaveLength(0);
    held = false;
    await advance(5 * SECOND);
    expect(store.saved).toHaveLength(1);
    held = true;
    revoke('0d');
    await advance(5 * SECOND);
    expect(store.saved).toHaveLength(1);
    expect(scheduler.status()[0]!.pendingRevocation).toBe(true);
    held = false;
    await advance(5 * SECOND);
    expect(store.saved).toHaveLength(2);
    expect(serialsIn(store.saved[1]!.der)).toEqual(['0d']);
    expect(scheduler.status()[0]!.consecutiveFailures).toBe(0);
  });

  test('picks up an issuer added after start at the next rescan', async () => {
    const { scheduler, store, advance, list, issuer } = setup({ rescanMs: 60 * SECOND });
    await scheduler.start();
    await advance(0);
    list.push({ ...issuer, id: 'second' });
    await advance(60 * SECOND);
    await advance(0);
    expect(store.saved.map((crl) => crl.issuerId)).toEqual(['dev-intermediate', 'second']);
  });

  test('catches up at the next rescan when the wall clock jumps past half-life while timers wait (a resumed machine)', async () => {
    const { scheduler, store, advance, timers, clock } = setup({ rescanMs: 60 * SECOND });
    await scheduler.start();
    await advance(0);
    expect(store.saved).toHaveLength(1);
    timers.jumpClock(2 * DAY);
    await advance(60 * SECOND);
    await advance(0);
    expect(store.saved).toHaveLength(2);
    const fresh = store.saved[1]!;
    expect(fresh.thisUpdate.getTime()).toBe(clock.now().getTime());
    expect(fresh.nextUpdate.getTime()).toBeGreaterThan(clock.now().getTime());
  });

  test('never signs over an imported CRL, not at half-life, not for a revocation, not after it expires', async () => {
    const { scheduler, store, advance, clock, errors } = setup();
    const imported = {
      issuerId: 'dev-intermediate',
      shard: 0,
      kind: 'full' as const,
      crlNumber: 5n,
      thisUpdate: clock.now(),
      nextUpdate: new Date(clock.now().getTime() + DAY),
      der: Uint8Array.of(0x30, 0x00),
      sha256: new Uint8Array(32),
      generatedAt: clock.now(),
      generatedBy: 'import',
      imported: true,
    };
    await store.save(imported);
    await scheduler.start();
    await advance(0);
    scheduler.notifyRevocation('dev-intermediate');
    await advance(2 * DAY);
    expect(store.saved).toEqual([imported]);
    expect(scheduler.status()[0]).toMatchObject({ lastPublished: null, consecutiveFailures: 0 });
    expect(errors).toEqual([]);
  });

  test('refuses a configuration that cannot work when created', () => {
    expect(() => setup({ validityMs: 1000 })).toThrow(/validityMs/);
    expect(() => setup({ debounceMs: -1 })).toThrow(/debounceMs/);
  });

  test.each([
    { name: 'an issuing issuer', issuing: true, last: null, current: undefined, needs: true },
    {
      name: 'a stopped issuer without certificates',
      issuing: false,
      last: null,
      current: undefined,
      needs: false,
    },
    {
      name: 'a stopped issuer with no CRL yet',
      issuing: false,
      last: '2026-03-02T00:00:00Z',
      current: undefined,
      needs: true,
    },
    {
      name: 'a stopped issuer whose CRL predates the last expiry',
      issuing: false,
      last: '2026-03-02T00:00:00Z',
      current: '2026-03-01T00:00:00Z',
      needs: true,
    },
    {
      name: 'a stopped issuer whose CRL is past the last expiry',
      issuing: false,
      last: '2026-03-02T00:00:00Z',
      current: '2026-03-02T00:00:01Z',
      needs: false,
    },
  ])('needsCrl: $name -> $needs', ({ issuing, last, current, needs }) => {
    expect(
      needsCrl(
        { issuing, lastCertificateExpiry: last ? new Date(last) : null },
        current ? { thisUpdate: new Date(current) } : undefined,
      ),
    ).toBe(needs);
  });
});

describe('the CRL scheduler with durable owed CRLs (issue #17)', () => {
  /** A scheduler over an outbox: `commit` revokes and owes in one step, as the database does. */
  function durable(overrides: Partial<CrlSchedulerOptions> & { issuer?: Partial<CrlIssuer> } = {}) {
    const base = setup({ durable: true, ...overrides });
    const { owed } = base;
    const commit = (serial: string) => {
      base.certificates.add({
        serial,
        issuerId: base.issuer.id,
        notAfter: new Date(base.clock.now().getTime() + 30 * DAY),
        status: 'revoked',
        revokedAt: base.clock.now(),
        revocationReason: 'keyCompromise',
      });
      owed.owe(base.issuer.id);
    };
    return { ...base, owed, commit };
  }

  test('publishes a CRL owed by a revocation committed just before a crash, at the next start', async () => {
    const first = durable();
    await first.scheduler.start();
    await first.advance(0);
    expect(first.store.saved).toHaveLength(1);
    // The revocation commits with its owed CRL; the process dies before any CRL (no notify).
    first.commit('0a17');
    await first.scheduler.stop();
    first.clock.advance(2 * SECOND);
    const timers = manualTimers(first.clock);
    const second = createCrlScheduler({
      issuers: { listCrlIssuers: async () => [first.issuer] },
      entries: first.certificates,
      store: first.store,
      owed: first.owed,
      clock: first.clock,
      timers,
    });
    running.push(second);
    await second.start();
    timers.advance(0);
    await second.idle();
    expect(first.store.saved).toHaveLength(2);
    expect(first.serialsIn(first.store.saved[1]!.der)).toEqual(['0a17']);
    expect(first.store.saved[1]!.thisUpdate.getTime() - Date.parse(START)).toBeLessThanOrEqual(5 * SECOND);
    expect(first.owed.rows.size).toBe(0);
  });

  test('waits out the rest of the debounce when restarted soon after the owing', async () => {
    const first = durable();
    await first.scheduler.start();
    await first.advance(0);
    first.clock.advance(HOUR);
    first.commit('0a18');
    first.clock.advance(SECOND);
    await first.scheduler.stop();
    const timers = manualTimers(first.clock);
    const second = createCrlScheduler({
      issuers: { listCrlIssuers: async () => [first.issuer] },
      entries: first.certificates,
      store: first.store,
      owed: first.owed,
      clock: first.clock,
      timers,
    });
    running.push(second);
    await second.start();
    // The start's first look finds the CRL fresh but a CRL owed: it is made at once.
    timers.advance(0);
    await second.idle();
    expect(first.serialsIn(first.store.saved.at(-1)!.der)).toEqual(['0a18']);
  });

  test('publishes a CRL owed on another node at its next look, within the poll and the debounce', async () => {
    const { scheduler, store, advance, owed, commit, serialsIn } = durable({ owedPollMs: 5 * SECOND });
    await scheduler.start();
    await advance(0);
    await advance(HOUR + 500);
    commit('0b17');
    // The poll finds it (<= 5 s) and, the debounce since the owing having passed, runs at once.
    await advance(5 * SECOND);
    await advance(0);
    expect(store.saved).toHaveLength(2);
    expect(serialsIn(store.saved[1]!.der)).toEqual(['0b17']);
    expect(owed.rows.size).toBe(0);
    // Nothing owed any more: no further CRL before the half-life.
    await advance(HOUR);
    expect(store.saved).toHaveLength(2);
  });

  test('publishes as soon as the partition can sign again, not after the retry delay', async () => {
    let down = false;
    const { scheduler, store, advance, commit, owed, errors, serialsIn } = durable({
      retryMs: 5 * SECOND,
      maxRetryMs: 5 * 60 * SECOND,
      probeMs: SECOND,
      signerReady: async () => !down,
      issuer: {
        signer: {
          ...ca.signer,
          crypto: {
            subtle: {
              sign: async (...args: Parameters<typeof ca.signer.crypto.subtle.sign>) => {
                if (down)
                  throw Object.assign(new Error('partition unreachable'), { code: 'hsm.unavailable' });
                return ca.signer.crypto.subtle.sign(...args);
              },
            },
          },
        },
      },
    });
    await scheduler.start();
    await advance(0);
    down = true;
    commit('0c17');
    scheduler.notifyRevocation('dev-intermediate');
    await advance(5 * SECOND);
    expect(errors).toHaveLength(1);
    expect(owed.failures).toHaveLength(1);
    expect(scheduler.status()[0]).toMatchObject({ awaitingSigner: true, pendingRevocation: true });
    // A long outage: the key is watched, not hammered with CRL attempts.
    await advance(10 * 60 * SECOND);
    expect(errors).toHaveLength(1);
    expect(store.saved).toHaveLength(1);
    expect(owed.rows.size).toBe(1);
    down = false;
    await advance(SECOND);
    expect(store.saved).toHaveLength(2);
    expect(serialsIn(store.saved[1]!.der)).toEqual(['0c17']);
    expect(owed.rows.size).toBe(0);
    expect(scheduler.status()[0]).toMatchObject({ awaitingSigner: false, consecutiveFailures: 0 });
  });

  test('keeps a CRL owed during a run owed, and makes another one', async () => {
    const certificates = memoryCertificates();
    let reads = 0;
    const built = durable({
      owedPollMs: 60 * SECOND,
      entries: {
        async *streamRevokedForCrl(issuerId, options) {
          reads += 1;
          yield* certificates.streamRevokedForCrl(issuerId, options);
          if (reads === 2) {
            // Revoked and owed on another node after this CRL read its entries: no notify here.
            certificates.add({
              serial: '0d17',
              issuerId,
              notAfter: new Date(Date.parse(START) + DAY),
              status: 'revoked',
              revokedAt: new Date(START),
              revocationReason: 'superseded',
            });
            built.owed.owe(issuerId);
          }
        },
      },
    });
    const { scheduler } = built;
    await scheduler.start();
    await built.advance(0);
    built.owed.owe('dev-intermediate');
    await scheduler.publishNow('dev-intermediate');
    expect(built.serialsIn(built.store.saved.at(-1)!.der)).toEqual([]);
    expect(built.owed.rows.size).toBe(1);
    await built.advance(5 * SECOND);
    expect(built.store.saved).toHaveLength(3);
    expect(built.serialsIn(built.store.saved.at(-1)!.der)).toEqual(['0d17']);
    expect(built.owed.rows.size).toBe(0);
  });

  test('drops a CRL owed for an issuer whose last CRL is past every expiry, publishing nothing', async () => {
    const { scheduler, store, advance, owed } = durable({
      owedPollMs: SECOND,
      issuer: { issuing: false, lastCertificateExpiry: new Date(Date.parse(START) - DAY) },
    });
    await scheduler.start();
    await advance(0);
    expect(store.saved).toHaveLength(1);
    owed.owe('dev-intermediate');
    await advance(5 * SECOND);
    await advance(0);
    expect(owed.rows.size).toBe(0);
    expect(store.saved).toHaveLength(1);
  });

  test('makes one CRL when two nodes were both told of a revocation', async () => {
    const a = durable({ owedPollMs: 60 * SECOND });
    let held = false;
    const lock = async <T>(_name: string, fn: () => Promise<T>) => {
      if (held) return { acquired: false as const };
      held = true;
      try {
        return { acquired: true as const, value: await fn() };
      } finally {
        held = false;
      }
    };
    const timersB = manualTimers(a.clock);
    const b = createCrlScheduler({
      issuers: { listCrlIssuers: async () => [a.issuer] },
      entries: a.certificates,
      store: a.store,
      owed: a.owed,
      lock,
      clock: a.clock,
      timers: timersB,
      owedPollMs: 60 * SECOND,
    });
    running.push(b);
    await a.scheduler.start();
    await a.advance(0);
    await b.start();
    timersB.advance(0);
    await b.idle();
    expect(a.store.saved).toHaveLength(1);
    a.commit('0e17');
    a.scheduler.notifyRevocation(a.issuer.id);
    b.notifyRevocation(a.issuer.id);
    // Node A publishes first and settles the owed CRL; node B then finds it covered.
    await a.advance(5 * SECOND);
    timersB.advance(5 * SECOND);
    await b.idle();
    expect(a.store.saved).toHaveLength(2);
    expect(a.serialsIn(a.store.saved[1]!.der)).toEqual(['0e17']);
    expect(b.status()[0]!.pendingRevocation).toBe(false);
  });
});
