import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { IssuerLoadError, loadIssuers, loadStoppedIssuers } from '../../src/ca/issuers.ts';
import { createIssuersRepository } from '../../src/db/issuers.repository.ts';
import type { PartitionSession } from '../../src/hsm/partition.ts';
import { lintCertificate } from '../../src/issuance/token.ts';
import { fixedClock, systemClock } from '../../src/lib/clock.ts';
import { buildTbsCertificate, generateSerial } from '../../src/x509/certificate.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { OFFICER, openMemoryPartition } from '../hsm/helpers.ts';
import { generateTestKey, leafTemplate } from '../x509/fixtures.ts';
import { type FixtureAlgorithm, makeCertificate, type Node } from '../x509/path-fixtures.ts';

/**
 * Start-up (issue #21): an issuer is loaded only if its recorded chain validates to a trusted root
 * by RFC 5280 path validation (pkijs, with Ed25519), the name constraints of every CA above it
 * included; the loaded issuer carries those constraints so the linter holds leaves to them.
 */

let database: TestDatabase;
let session: PartitionSession;

beforeAll(async () => {
  database = await createTestDatabase('pglite');
  const { partition } = await openMemoryPartition();
  session = partition.openSession();
  await session.login({ user: OFFICER.name, pin: OFFICER.pin });
});
afterAll(async () => {
  await database?.destroy();
});
beforeEach(async () => {
  await database.reset();
});

const repository = () => createIssuersRepository({ db: database.db });

/** Records root -> upper -> issuing, where the issuing CA's key lives in the partition. */
async function record(
  algorithm: FixtureAlgorithm,
  upperOptions: Parameters<typeof makeCertificate>[0],
  issuingOptions: Parameters<typeof makeCertificate>[0] = {},
) {
  const root = await makeCertificate({ algorithm, subject: 'CN=Example Root,O=Example' });
  const upper = await makeCertificate({
    algorithm,
    issuer: root,
    subject: 'CN=Example Upper CA,O=Example',
    ...upperOptions,
  });
  const label = `issuing-${Math.random().toString(36).slice(2, 8)}`;
  const key = await session.createKey({
    label,
    algorithm: algorithm === 'rsa-2048' ? 'rsa-2048' : algorithm,
  });
  const issuing = await makeCertificate({
    algorithm,
    issuer: upper,
    subject: 'CN=Example Issuing CA,O=Example',
    spki: key.publicKey,
    ...issuingOptions,
  });
  const issuers = repository();
  const offline = (id: string) => `hsm:partition=offline;label=${id}`;
  await issuers.create({ id: 'root', name: 'root', certificateDer: root.der, keyUri: offline('root') });
  await issuers.create({
    id: 'upper',
    name: 'upper',
    parentId: 'root',
    certificateDer: upper.der,
    keyUri: offline('upper'),
  });
  await issuers.create({
    id: 'issuing',
    name: 'issuing',
    parentId: 'upper',
    certificateDer: issuing.der,
    keyUri: key.uri,
    crlUrls: ['http://127.0.0.1:8080/crl/issuing.crl'],
  });
  return { root, upper, issuing };
}

const load = (root: Node, clock = systemClock) =>
  loadIssuers({
    issuers: repository(),
    partitions: new Map([['test', session]]),
    trustedRoots: [root.der],
    clock,
  });

describe('issuers that stopped issuing (issue #28)', () => {
  it('are not loaded to issue, but are loaded to sign their CRLs; one whose key is elsewhere is reported', async () => {
    const { root } = await record('ecdsa-p256', {});
    await repository().setStatus('issuing', 'disabled');
    expect((await load(root)).get('issuing')).toBeUndefined();
    const skipped: string[] = [];
    const options = {
      issuers: repository(),
      partitions: new Map([['test', session]]),
      trustedRoots: [root.der],
      clock: systemClock,
    };
    const stopped = await loadStoppedIssuers(options, (id) => skipped.push(id));
    expect(stopped.map((issuer) => issuer.id)).toEqual(['issuing']);
    expect(stopped[0]!.keys.crl).toBeDefined();
    // The root and the upper CA are offline ('upper' is active; only stopped ones are looked at).
    expect(skipped).toEqual([]);
    await repository().setStatus('upper', 'retired');
    await loadStoppedIssuers(options, (id) => skipped.push(id));
    expect(skipped).toEqual(['upper']);
  });

  it('carry the CRL shard count recorded on the issuer into the issuing context', async () => {
    const { root } = await record('ecdsa-p256', {});
    await repository().setCrlShards('issuing', 4);
    expect((await load(root)).get('issuing')!.context.crlShards).toBe(4);
  });
});

describe('loading issuers at start-up', () => {
  for (const algorithm of ['ecdsa-p256', 'ed25519'] as const) {
    it(`loads a ${algorithm} issuer whose chain validates, with the name constraints of the CAs above it`, async () => {
      const { root } = await record(algorithm, {
        nameConstraints: { excluded: [{ type: 'dns', value: 'secret.example.com' }] },
      });
      const loaded = (await load(root)).get('issuing')!;
      expect(loaded.fullChainPem).toHaveLength(3);
      expect(loaded.context.superiorNameConstraints).toEqual([
        { permitted: [], excluded: [{ type: 'dns', value: 'secret.example.com' }] },
      ]);
    });
  }

  it('has the linter refuse a leaf whose name the CA above the issuer excludes', async () => {
    const { root } = await record('ecdsa-p256', {
      nameConstraints: { excluded: [{ type: 'dns', value: 'secret.example.com' }] },
    });
    const { context } = (await load(root)).get('issuing')!;
    const key = await generateTestKey('ecdsa-p256');
    const tbs = (dns: string) =>
      buildTbsCertificate(
        leafTemplate(key, {
          issuer: 'issuing',
          subject: [{ type: 'CN', value: dns }],
          sans: [{ type: 'dns', value: dns }],
        }),
        context,
        { serial: generateSerial(), clock: systemClock },
      ).der;
    expect(lintCertificate(tbs('www.example.com'), { issuer: context, profile: 'leaf' }).ok).toBe(true);
    const refused = lintCertificate(tbs('a.secret.example.com'), { issuer: context, profile: 'leaf' });
    expect(refused.ok).toBe(false);
    expect(refused.findings.map((f) => f.rule)).toContain('name-constraints');
  });

  it("refuses an issuer whose name lies outside the upper CA's permitted subtree", async () => {
    const { root } = await record(
      'ecdsa-p256',
      { nameConstraints: { permitted: [{ type: 'email', value: 'example.com' }] } },
      { sans: [{ type: 'email', value: 'ca@example.net' }] },
    );
    const error = await load(root).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(IssuerLoadError);
    expect((error as Error).message).toMatch(
      /issuer issuing: its chain does not validate: .*name constraints of .*Example Upper CA/,
    );
  });

  it('refuses an issuer whose upper CA has expired', async () => {
    const { root } = await record('ecdsa-p256', {
      notBefore: new Date('2020-01-01T00:00:00Z'),
      notAfter: new Date('2021-01-01T00:00:00Z'),
    });
    await expect(load(root)).rejects.toThrow(/Example Upper CA.*has expired/);
  });

  it('refuses an issuer below a CA whose pathLenConstraint is 0 (the issuer is a CA below it)', async () => {
    const { root } = await record('ecdsa-p256', { pathLength: 0 });
    await expect(load(root)).rejects.toThrow(/Example Upper CA.*pathLenConstraint/);
  });

  it('refuses an issuer whose chain ends at a root not listed in signet.yaml', async () => {
    await record('ecdsa-p256', {});
    const other = await makeCertificate({});
    await expect(load(other, fixedClock(new Date()))).rejects.toThrow(/not among the trusted roots/);
  });

  it('refuses an issuer whose signature chain is broken (a certificate swapped for another CA)', async () => {
    const { root } = await record('ecdsa-p256', {});
    const stranger = await makeCertificate({ subject: 'CN=Example Upper CA,O=Example', issuer: root });
    const issuers = repository();
    const upper = (await issuers.get('upper'))!;
    await issuers.upsert({ ...upper, certificateDer: stranger.der });
    await expect(load(root)).rejects.toThrow(IssuerLoadError);
  });
});
