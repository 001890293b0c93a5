import * as x509 from '@peculiar/x509';
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest';
import { fixedClock } from '../../src/lib/clock.ts';
import { crlShardsFor } from '../../src/revocation/crl-publisher.ts';
import { type CrlIssuer, type CrlScheduler, createCrlScheduler } from '../../src/revocation/crl-scheduler.ts';
import { encodeCrlDistributionPoints } from '../../src/x509/certificate.ts';
import { crlShardOf, deltaCrlUrl, shardCrlUrl } from '../../src/x509/crl-urls.ts';
import { hasTool } from '../helpers/tools.ts';
import { manualTimers, memoryCertificates, memoryCrlStore } from './helpers/memory.ts';
import { openssl, scratch } from './helpers/openssl.ts';
import { createIntermediate, createRoot, crlPem, keyParams, type TestCa } from './helpers/pki.ts';

const CRL_URL = 'http://ca.example.com/crl/dev-intermediate.crl';
const SHARDS = 4;
const SECOND = 1000;
const HOUR = 3600 * SECOND;
const DAY = 24 * HOUR;
const IDP = '2.5.29.28';
const DELTA_INDICATOR = '2.5.29.27';
const FRESHEST = '2.5.29.46';

let root: TestCa;
let ca: TestCa;
const dir = scratch('signet-crl-shards-');
beforeAll(async () => {
  root = await createRoot();
  ca = await createIntermediate(root);
});
afterAll(() => dir.cleanup());

const running: CrlScheduler[] = [];
afterEach(async () => {
  await Promise.all(running.splice(0).map((scheduler) => scheduler.stop()));
});

/** A serial (16 random octets, high bit clear) whose shard among SHARDS is `shard`. */
function serialInShard(shard: number): Uint8Array {
  for (;;) {
    const serial = crypto.getRandomValues(new Uint8Array(16));
    serial[0]! &= 0x7f;
    serial[0]! |= 0x01;
    if (crlShardOf(serial, SHARDS) === shard) return serial;
  }
}

/** A leaf of `ca` whose CRL DP (and Freshest CRL) names its shard's URLs, as Signet writes them. */
async function leafInShard(shard: number, start: Date) {
  const serial = serialInShard(shard);
  const keys = await crypto.subtle.generateKey(keyParams('ecdsa-p256').generate, true, ['sign', 'verify']);
  const certificate = await x509.X509CertificateGenerator.create({
    serialNumber: Buffer.from(serial).toString('hex'),
    subject: 'CN=www.example.com',
    issuer: ca.certificate.subject,
    notBefore: new Date(start.getTime() - HOUR),
    notAfter: new Date(start.getTime() + 30 * DAY),
    publicKey: (keys as { publicKey: x509.PublicKeyType }).publicKey,
    signingKey: ca.keys.privateKey,
    signingAlgorithm: keyParams(ca.algorithm).sign,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      await x509.AuthorityKeyIdentifierExtension.create(ca.certificate.publicKey),
      new x509.Extension(
        '2.5.29.31',
        false,
        encodeCrlDistributionPoints(shardCrlUrl(CRL_URL, shard, SHARDS)),
      ),
      new x509.Extension(FRESHEST, false, encodeCrlDistributionPoints(deltaCrlUrl(CRL_URL, shard, SHARDS))),
    ],
  });
  return {
    serial: Buffer.from(serial).toString('hex'),
    pem: certificate.toString('pem'),
    notAfter: certificate.notAfter,
  };
}

function setup(options: { deltaIntervalMs?: number } = {}) {
  // openssl checks CRL times against the real clock: start now.
  const clock = fixedClock(new Date(Math.floor(Date.now() / 1000) * 1000 - 10 * 60 * SECOND));
  const timers = manualTimers(clock);
  const store = memoryCrlStore();
  const certificates = memoryCertificates();
  const issuer: CrlIssuer = {
    id: 'dev-intermediate',
    certificate: ca.der,
    signer: ca.signer,
    issuing: true,
    lastCertificateExpiry: null,
    crlUrl: CRL_URL,
    shards: crlShardsFor(SHARDS, [], true),
  };
  const scheduler = createCrlScheduler({
    issuers: { listCrlIssuers: async () => [issuer] },
    entries: certificates,
    store,
    clock,
    timers,
    ...options,
  });
  running.push(scheduler);
  const advance = async (ms: number) => {
    timers.advance(ms);
    await scheduler.idle();
  };
  return { clock, store, certificates, scheduler, advance };
}

const latest = async (
  store: ReturnType<typeof memoryCrlStore>,
  shard: number,
  kind: 'full' | 'delta' = 'full',
) => (await store.getLatest('dev-intermediate', shard, kind))!;

function extensionsOf(der: Uint8Array) {
  return new x509.X509Crl(der).extensions;
}

function idpUris(der: Uint8Array): string[] {
  const idp = extensionsOf(der).find((extension) => extension.type === IDP);
  if (!idp) return [];
  return [
    ...Buffer.from(idp.value)
      .toString('latin1')
      .matchAll(/https?:\/\/[\x21-\x7e]+?\.crl/g),
  ].map((m) => m[0]);
}

describe('sharded CRLs', () => {
  test('publishes one CRL per shard, each with a critical IDP naming its URL and only its entries', async () => {
    const { clock, store, certificates, scheduler, advance } = setup();
    await scheduler.start();
    await advance(0);
    const leaf = await leafInShard(2, clock.now());
    certificates.add({
      serial: leaf.serial,
      issuerId: 'dev-intermediate',
      notAfter: leaf.notAfter,
      status: 'revoked',
      revokedAt: clock.now(),
      revocationReason: 'keyCompromise',
      crlShard: 2,
    });
    scheduler.notifyRevocation('dev-intermediate', 2);
    await advance(100);
    for (let shard = 0; shard < SHARDS; shard++) {
      const crl = await latest(store, shard);
      const idp = extensionsOf(crl.der).find((extension) => extension.type === IDP);
      expect(idp?.critical).toBe(true);
      expect(idpUris(crl.der)).toContain(`http://ca.example.com/crl/dev-intermediate/${shard}.crl`);
      const serials = new x509.X509Crl(crl.der).entries.map((entry) => entry.serialNumber.toLowerCase());
      expect(serials).toEqual(shard === 2 ? [leaf.serial] : []);
    }
    // Shard 0 is also what /crl/dev-intermediate.crl serves (certificates from before sharding).
    expect(idpUris((await latest(store, 0)).der)).toContain(CRL_URL);
    // Only shard 2 was remade for the revocation.
    expect(store.saved.filter((crl) => crl.shard === 2)).toHaveLength(2);
    expect(store.saved.filter((crl) => crl.shard === 1)).toHaveLength(1);
  });

  test('an issuer with one shard publishes one complete CRL, without an IDP', async () => {
    const { store, scheduler, advance } = setup();
    const one = crlShardsFor(1, [], true);
    expect(one).toEqual([{ shard: 0, issuing: true, lastCertificateExpiry: null }]);
    await scheduler.start();
    await advance(0);
    expect(store.saved.length).toBe(SHARDS);
  });

  test('a shard left by a smaller count is published until its last certificate expires', () => {
    const expiry = new Date('2030-01-01T00:00:00Z');
    const shards = crlShardsFor(2, [{ shard: 3, lastCertificateExpiry: expiry }], true);
    expect(shards).toEqual([
      { shard: 0, issuing: true, lastCertificateExpiry: null },
      { shard: 1, issuing: true, lastCertificateExpiry: null },
      { shard: 3, issuing: false, lastCertificateExpiry: expiry },
    ]);
    expect(crlShardsFor(2, [{ shard: 1, lastCertificateExpiry: expiry }], false)).toEqual([
      { shard: 1, issuing: false, lastCertificateExpiry: expiry },
    ]);
  });
});

describe('delta CRLs', () => {
  test('a revocation is published in a delta CRL based on the complete one, which is not remade', async () => {
    const { clock, store, certificates, scheduler, advance } = setup({ deltaIntervalMs: HOUR });
    await scheduler.start();
    await advance(0);
    const base = await latest(store, 1);
    const firstDelta = await latest(store, 1, 'delta');
    expect(firstDelta.baseCrlNumber).toBe(base.crlNumber);
    expect(new x509.X509Crl(firstDelta.der).entries).toHaveLength(0);
    const freshest = extensionsOf(base.der).find((extension) => extension.type === FRESHEST);
    expect(freshest?.critical).toBe(false);
    expect(Buffer.from(freshest!.value).toString('latin1')).toContain('/crl/dev-intermediate/1/delta.crl');

    await advance(SECOND);
    const leaf = await leafInShard(1, clock.now());
    certificates.add({
      serial: leaf.serial,
      issuerId: 'dev-intermediate',
      notAfter: leaf.notAfter,
      status: 'revoked',
      revokedAt: clock.now(),
      revocationReason: 'superseded',
      crlShard: 1,
    });
    scheduler.notifyRevocation('dev-intermediate', 1);
    await advance(100);
    expect((await latest(store, 1)).crlNumber).toBe(base.crlNumber);
    const delta = await latest(store, 1, 'delta');
    expect(delta.crlNumber).toBeGreaterThan(firstDelta.crlNumber);
    const indicator = extensionsOf(delta.der).find((extension) => extension.type === DELTA_INDICATOR);
    expect(indicator?.critical).toBe(true);
    expect(new x509.X509Crl(delta.der).entries.map((entry) => entry.serialNumber.toLowerCase())).toEqual([
      leaf.serial,
    ]);
    // The delta carries the same IDP as its base (RFC 5280 §5.2.4) and no Freshest CRL.
    expect(idpUris(delta.der)).toEqual(idpUris(base.der));
    expect(extensionsOf(delta.der).some((extension) => extension.type === FRESHEST)).toBe(false);
  });

  test('a delta is made at least every interval, and a new complete CRL at its half-life gets its own', async () => {
    const { store, scheduler, advance } = setup({ deltaIntervalMs: HOUR });
    await scheduler.start();
    await advance(0);
    const first = await latest(store, 0, 'delta');
    await advance(HOUR);
    const second = await latest(store, 0, 'delta');
    expect(second.crlNumber).toBeGreaterThan(first.crlNumber);
    expect(second.nextUpdate.getTime() - second.thisUpdate.getTime()).toBe(2 * HOUR);
    await advance(12 * HOUR);
    const base = await latest(store, 0);
    const delta = await latest(store, 0, 'delta');
    expect(delta.baseCrlNumber).toBe(base.crlNumber);
    expect(delta.crlNumber).toBeGreaterThan(base.crlNumber);
  });
});

describe.runIf(hasTool('openssl', ['version']))('openssl verify', () => {
  let files: { root: string; ca: string };
  beforeAll(() => {
    files = { root: dir.write('root.pem', root.pem), ca: dir.write('ca.pem', ca.pem) };
  });

  const verify = (leaf: string, crls: string[], extra: string[] = []) =>
    openssl([
      'verify',
      '-crl_check',
      ...extra,
      '-CAfile',
      files.root,
      '-untrusted',
      files.ca,
      ...crls.flatMap((crl) => ['-CRLfile', crl]),
      leaf,
    ]);

  test('accepts a shard CRL with its IDP for a certificate of that shard, and not for another', async () => {
    const { clock, store, certificates, scheduler, advance } = setup();
    await scheduler.start();
    await advance(0);
    const revoked = await leafInShard(3, clock.now());
    const good = await leafInShard(3, clock.now());
    const other = await leafInShard(1, clock.now());
    certificates.add({
      serial: revoked.serial,
      issuerId: 'dev-intermediate',
      notAfter: revoked.notAfter,
      status: 'revoked',
      revokedAt: clock.now(),
      revocationReason: 'keyCompromise',
      crlShard: 3,
    });
    scheduler.notifyRevocation('dev-intermediate', 3);
    await advance(100);
    const shard3 = dir.write('shard3.crl.pem', crlPem((await latest(store, 3)).der));
    const goodResult = await verify(dir.write('good3.pem', good.pem), [shard3]);
    expect(goodResult.output).toContain(': OK');
    const revokedResult = await verify(dir.write('revoked3.pem', revoked.pem), [shard3]);
    expect(revokedResult.code).not.toBe(0);
    expect(revokedResult.output).toContain('certificate revoked');
    // Shard 3's CRL does not cover a certificate of shard 1: its IDP names another URL.
    const otherResult = await verify(dir.write('other1.pem', other.pem), [shard3]);
    expect(otherResult.code).not.toBe(0);
    expect(otherResult.output).toContain('different CRL scope');
  });

  test('-use_deltas finds a revocation in the delta CRL that its base does not list', async () => {
    const { clock, store, certificates, scheduler, advance } = setup({ deltaIntervalMs: HOUR });
    await scheduler.start();
    await advance(0);
    const leaf = await leafInShard(0, clock.now());
    await advance(SECOND);
    certificates.add({
      serial: leaf.serial,
      issuerId: 'dev-intermediate',
      notAfter: leaf.notAfter,
      status: 'revoked',
      revokedAt: clock.now(),
      revocationReason: 'keyCompromise',
      crlShard: 0,
    });
    scheduler.notifyRevocation('dev-intermediate', 0);
    await advance(100);
    const base = dir.write('base0.crl.pem', crlPem((await latest(store, 0)).der));
    const delta = dir.write('delta0.crl.pem', crlPem((await latest(store, 0, 'delta')).der));
    const leafFile = dir.write('delta-leaf.pem', leaf.pem);
    const baseOnly = await verify(leafFile, [base]);
    expect(baseOnly.output).toContain(': OK');
    const withDelta = await verify(leafFile, [base, delta], ['-use_deltas']);
    expect(withDelta.code).not.toBe(0);
    expect(withDelta.output).toContain('certificate revoked');
  });
});
