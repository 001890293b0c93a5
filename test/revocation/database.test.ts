import { createHash } from 'node:crypto';
import { cpSync, rmSync } from 'node:fs';
import * as x509 from '@peculiar/x509';
import { CompactSign, exportJWK } from 'jose';
import { afterAll, beforeAll, beforeEach, describe, expect, test } from 'vitest';
import { owedCrls } from '../../src/cli/revocation.ts';
import { createCertificatesRepository } from '../../src/db/certificates.repository.ts';
import { createCrlsRepository } from '../../src/db/crls.repository.ts';
import { type Database, openDatabase } from '../../src/db/database.ts';
import { createIssuersRepository } from '../../src/db/issuers.repository.ts';
import { createOwedWorkRepository } from '../../src/db/owed-work.repository.ts';
import { createReplayGuardRepository } from '../../src/db/replay-guard.repository.ts';
import { fixedClock } from '../../src/lib/clock.ts';
import { type CrlScheduler, createCrlScheduler } from '../../src/revocation/crl-scheduler.ts';
import { createOcspResponder } from '../../src/revocation/ocsp-responder.ts';
import { createRevokeUseCase } from '../../src/revocation/revoke.usecase.ts';
import { createRevokeByKey } from '../../src/revocation/revoke-by-key.ts';
import { createTestDatabase, describeEachDatabase, type TestDatabase } from '../helpers/database.ts';
import { hasTool } from '../helpers/tools.ts';
import { manualTimers } from './helpers/memory.ts';
import { buildOcspRequest } from './helpers/ocsp.ts';
import { openssl, scratch } from './helpers/openssl.ts';
import {
  createIntermediate,
  createLeaf,
  createRoot,
  crlPem,
  type TestCa,
  type TestLeaf,
} from './helpers/pki.ts';

/**
 * The revocation core over the real repositories of src/db, with the real migrations, on PGlite
 * and PostgreSQL: revoke -> CRL within the debounce -> OCSP, revocation by key with the replay
 * guard, and CRL numbers across a restart and a database restored from an earlier copy.
 */

let root: TestCa;
let ca: TestCa;
let leaves: TestLeaf[];

beforeAll(async () => {
  root = await createRoot();
  ca = await createIntermediate(root);
  leaves = await Promise.all([createLeaf(ca), createLeaf(ca), createLeaf(ca)]);
});

async function seed(db: Database['db']) {
  await createIssuersRepository({ db }).upsert({
    id: 'dev-intermediate',
    name: 'Dev Intermediate',
    certificateDer: ca.der,
    keyUri: 'hsm:partition=issuing;label=dev-intermediate',
  });
  const certificates = createCertificatesRepository({ db });
  for (const leaf of leaves) {
    await certificates.reservePending({
      serial: leaf.serial,
      issuerId: 'dev-intermediate',
      policy: 'web-server',
      requester: 'k_test',
      subject: 'CN=www.example.com',
      sans: [{ type: 'dns', value: 'www.example.com' }],
      notBefore: leaf.certificate.notBefore,
      notAfter: leaf.certificate.notAfter,
      tbsSha256: new Uint8Array(createHash('sha256').update(leaf.der).digest()),
    });
    await certificates.markIssued(leaf.serial, leaf.der);
  }
}

function wire(
  database: Database,
  clock: ReturnType<typeof fixedClock>,
  { notify = true, nodeId = 'node-a' }: { notify?: boolean; nodeId?: string } = {},
) {
  const db = database.db;
  const certificates = createCertificatesRepository({ db, clock });
  const crls = createCrlsRepository({ db });
  const owedWork = createOwedWorkRepository({ db, clock });
  const timers = manualTimers(clock);
  const scheduler = createCrlScheduler({
    issuers: {
      listCrlIssuers: async () => [
        {
          id: 'dev-intermediate',
          certificate: ca.der,
          signer: ca.signer,
          issuing: true,
          lastCertificateExpiry: null,
        },
      ],
    },
    entries: certificates,
    store: crls,
    clock,
    timers,
    lock: (name, fn) => database.withAdvisoryLock(name, fn),
    owed: owedCrls(owedWork),
    nodeId,
  });
  const revocations = createRevokeUseCase({
    certificates,
    clock,
    // Without the listener, a revocation is committed and the process "dies" before telling anyone.
    listeners: notify ? [({ revocation }) => scheduler.notifyRevocation(revocation.issuerId)] : [],
  });
  return { certificates, crls, owedWork, timers, scheduler, revocations };
}

/** The serials a stored CRL lists. */
const listed = (der: Uint8Array) =>
  new x509.X509Crl(der).entries.map((entry) => entry.serialNumber.toLowerCase());

describeEachDatabase('revocation over the real repositories', (getDatabase) => {
  const dir = scratch();
  let scheduler: CrlScheduler | undefined;
  afterAll(() => dir.cleanup());
  beforeEach(async () => {
    await scheduler?.stop();
    await seed(getDatabase().db);
  });

  test('a revocation is in the stored CRL after the debounce, OCSP says revoked, openssl rejects the leaf', async () => {
    const clock = fixedClock(new Date(Date.now() - 60_000));
    const wired = wire(getDatabase().database, clock);
    scheduler = wired.scheduler;
    await scheduler.start();
    wired.timers.advance(0);
    await scheduler.idle();
    const first = (await wired.crls.getLatest('dev-intermediate', 0, 'full'))!;
    expect(first.generatedBy).toBe('node-a');

    const result = await wired.revocations.revoke({ serial: leaves[0]!.serial, reason: 'keyCompromise' });
    expect(result.outcome).toBe('revoked');
    wired.timers.advance(5_000);
    await scheduler.idle();
    const served = (await wired.crls.getLatest('dev-intermediate', 0, 'full'))!;
    expect(served.crlNumber).toBeGreaterThan(first.crlNumber);

    const responder = createOcspResponder({
      issuers: [{ id: 'dev-intermediate', certificate: ca.der, signer: ca.signer }],
      status: wired.certificates,
      clock,
    });
    const answer = await responder.answer(
      buildOcspRequest({
        certIds: [
          { issuer: ca, serial: leaves[0]!.serial },
          { issuer: ca, serial: leaves[1]!.serial },
        ],
      }),
    );
    expect(answer.certStatuses).toEqual(['revoked', 'good']);

    if (hasTool('openssl', ['version'])) {
      const files = {
        root: dir.write('root.pem', root.pem),
        ca: dir.write('ca.pem', ca.pem),
        crl: dir.write('db.crl.pem', crlPem(served.der)),
      };
      const rejected = await openssl([
        'verify',
        '-crl_check',
        '-CAfile',
        files.root,
        '-untrusted',
        files.ca,
        '-CRLfile',
        files.crl,
        dir.write('l0.pem', leaves[0]!.pem),
      ]);
      expect(rejected.output).toContain('certificate revoked');
      const accepted = await openssl([
        'verify',
        '-crl_check',
        '-CAfile',
        files.root,
        '-untrusted',
        files.ca,
        '-CRLfile',
        files.crl,
        dir.write('l1.pem', leaves[1]!.pem),
      ]);
      expect(accepted.code).toBe(0);
    }
  });

  test('a revocation committed just before a crash is in the CRL made at the next start (issue #17)', async () => {
    const clock = fixedClock(new Date(Date.now() - 60_000));
    const before = wire(getDatabase().database, clock, { notify: false });
    scheduler = before.scheduler;
    await scheduler.start();
    before.timers.advance(0);
    await scheduler.idle();
    const first = (await before.crls.getLatest('dev-intermediate', 0, 'full'))!;
    await before.revocations.revoke({ serial: leaves[0]!.serial, reason: 'keyCompromise' });
    expect(await before.owedWork.list('crl')).toHaveLength(1);
    await scheduler.stop();
    clock.advance(2_000);

    const after = wire(getDatabase().database, clock, { notify: false });
    scheduler = after.scheduler;
    await scheduler.start();
    after.timers.advance(0);
    await scheduler.idle();
    const served = (await after.crls.getLatest('dev-intermediate', 0, 'full'))!;
    expect(served.crlNumber).toBeGreaterThan(first.crlNumber);
    expect(listed(served.der)).toEqual([leaves[0]!.serial]);
    expect(served.thisUpdate.getTime() - first.thisUpdate.getTime()).toBeLessThanOrEqual(5_000);
    expect(await after.owedWork.list('crl')).toEqual([]);
  });

  test('revocation by key possession spends its jti in the replay guard', async () => {
    const clock = fixedClock(new Date());
    const { certificates, revocations } = wire(getDatabase().database, clock);
    const guard = createReplayGuardRepository({ db: getDatabase().db, clock });
    const byKey = createRevokeByKey({
      certificates,
      consumeJti: (entry) => guard.claim(entry),
      revocations,
      clock,
    });
    const leaf = leaves[2]!;
    const jws = await new CompactSign(
      new TextEncoder().encode(
        JSON.stringify({
          serial: leaf.serial,
          reason: 'keyCompromise',
          iat: Math.floor(Date.now() / 1000),
          jti: 'db-jti-1',
        }),
      ),
    )
      .setProtectedHeader({ alg: 'ES256', jwk: await exportJWK(leaf.keys.publicKey) })
      .sign(leaf.keys.privateKey);
    const result = await byKey.revokeByKey(jws);
    expect(result.revocation.reason).toBe('keyCompromise');
    expect((await certificates.findStatus(leaf.serial))!.status).toBe('revoked');
    await expect(byKey.revokeByKey(jws)).rejects.toMatchObject({ code: 'revocation.jti_replayed' });
  });

  test('revoking again answers the existing revocation; keyCompromise replaces another reason', async () => {
    const clock = fixedClock(new Date());
    const { revocations } = wire(getDatabase().database, clock);
    const first = await revocations.revoke({ serial: leaves[1]!.serial, reason: 'superseded' });
    clock.advance(10_000);
    expect(
      (await revocations.revoke({ serial: leaves[1]!.serial, reason: 'affiliationChanged' })).revocation,
    ).toEqual(first.revocation);
    const upgraded = await revocations.revoke({ serial: leaves[1]!.serial, reason: 'keyCompromise' });
    expect(upgraded).toMatchObject({
      outcome: 'reason_updated',
      revocation: { reason: 'keyCompromise', revokedAt: first.revocation.revokedAt },
    });
    await expect(revocations.revoke({ serial: '7777', reason: 'superseded' })).rejects.toMatchObject({
      code: 'certificate.not_found',
    });
  });
});

describe('CRL numbers on an embedded database', () => {
  let testDb: TestDatabase;
  const backup = scratch('signet-revocation-backup-');
  beforeAll(async () => {
    testDb = await createTestDatabase('pglite');
  });
  afterAll(async () => {
    await testDb?.destroy();
    backup.cleanup();
  });

  test('increase across a restart and across a database restored from an earlier copy', async () => {
    const target = testDb.target as { dataDir: string };
    const clock = fixedClock(new Date());
    let database: Database = testDb.database;
    await seed(database.db);
    const numbers: bigint[] = [];
    const publish = async () => {
      const { scheduler } = wire(database, clock);
      numbers.push((await scheduler.publishNow('dev-intermediate'))!.crlNumber);
      await scheduler.stop();
    };

    await publish();
    // The backup, a copy of the closed database folder; then a restart.
    await database.close();
    cpSync(target.dataDir, backup.dir, { recursive: true });
    database = await openDatabase(target);
    for (let i = 0; i < 2; i++) {
      clock.advance(1_000);
      await publish();
    }
    // The restore: the earlier copy replaces the database, which forgets the last two CRLs.
    await database.close();
    rmSync(target.dataDir, { recursive: true, force: true });
    cpSync(backup.dir, target.dataDir, { recursive: true });
    database = await openDatabase(target);
    expect(
      (await createCrlsRepository({ db: database.db }).getLatestInfo('dev-intermediate', 0, 'full'))!
        .crlNumber,
    ).toBe(numbers[0]);
    clock.advance(1_000);
    await publish();
    for (let i = 1; i < numbers.length; i++) expect(numbers[i]!).toBeGreaterThan(numbers[i - 1]!);
    await database.close();
    Object.assign(testDb, { database: await openDatabase(target) });
  });
});
