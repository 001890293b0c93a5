import { createHash } from 'node:crypto';
import { afterEach, beforeAll, expect, test } from 'vitest';
import { owedOcsp, presignedStore } from '../../src/cli/revocation.ts';
import { createCertificatesRepository } from '../../src/db/certificates.repository.ts';
import { type Database, openDatabase } from '../../src/db/database.ts';
import { createIssuersRepository } from '../../src/db/issuers.repository.ts';
import {
  createOcspResponsesRepository,
  OCSP_INVALIDATION_CHANNEL,
} from '../../src/db/ocsp-responses.repository.ts';
import { createOwedWorkRepository } from '../../src/db/owed-work.repository.ts';
import { fixedClock } from '../../src/lib/clock.ts';
import { readIssuerFacts } from '../../src/revocation/issuer.ts';
import { createOcspMaintenance } from '../../src/revocation/ocsp-maintenance.ts';
import { certIdFor } from '../../src/revocation/ocsp-request.ts';
import { createOcspResponder, type OcspResponder } from '../../src/revocation/ocsp-responder.ts';
import { createRevokeUseCase } from '../../src/revocation/revoke.usecase.ts';
import type { RevocationSigner } from '../../src/revocation/signing.ts';
import { describeEachDatabase } from '../helpers/database.ts';
import { buildOcspRequest, decodeOcspResponse } from './helpers/ocsp.ts';
import { createIntermediate, createLeaf, createRoot, type TestCa, type TestLeaf } from './helpers/pki.ts';

/**
 * Pre-signed OCSP responses over the real repositories (PGlite and PostgreSQL, real migrations):
 * stored once and served without signing, replaced at once on every node after a revocation
 * (NOTIFY at commit), what a revocation owes done by the next start after a crash, and never
 * stored from a status a revocation has changed meanwhile.
 */

let ca: TestCa;
let leaves: TestLeaf[];

beforeAll(async () => {
  ca = await createIntermediate(await createRoot());
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

/** A signer that counts its signatures. */
function counting(): { signer: RevocationSigner; count: () => number } {
  let signatures = 0;
  return {
    count: () => signatures,
    signer: {
      key: ca.signer.key,
      crypto: {
        subtle: {
          sign: (...args: Parameters<typeof ca.signer.crypto.subtle.sign>) => {
            signatures += 1;
            return ca.signer.crypto.subtle.sign(...args);
          },
        },
      },
    },
  };
}

const clock = fixedClock(new Date());
const ask = (serial: string) => buildOcspRequest({ certIds: [{ issuer: ca, serial }] });

/** One CA node: its responder over its database handle, listening for revocations. */
async function node(database: Database) {
  const signatures = counting();
  const certificates = createCertificatesRepository({ db: database.db, clock });
  const responder = createOcspResponder({
    issuers: [{ id: 'dev-intermediate', certificate: ca.der, signer: signatures.signer }],
    status: certificates,
    clock,
    store: presignedStore(createOcspResponsesRepository({ db: database.db })),
  });
  const unlisten = await database.listen(OCSP_INVALIDATION_CHANNEL, (serial) =>
    serial === null ? responder.clearCache() : responder.invalidate(serial),
  );
  const revoke = createRevokeUseCase({
    certificates,
    clock,
    listeners: [({ revocation }) => responder.invalidate(revocation.serial)],
  });
  return { responder, signatures, revoke, unlisten, certificates };
}

const statusOf = async (responder: OcspResponder, serial: string) =>
  (await responder.answer(ask(serial))).certStatuses?.[0];

describeEachDatabase('pre-signed OCSP responses', (getDatabase) => {
  const cleanups: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  test('a response is signed once, stored, and served to later requests and other nodes without signing', async () => {
    await seed(getDatabase().db);
    const a = await node(getDatabase().database);
    cleanups.push(a.unlisten);
    const answers = await Promise.all(
      Array.from({ length: 20 }, () => a.responder.respond(ask(leaves[0]!.serial))),
    );
    for (let i = 0; i < 100; i++) await a.responder.respond(ask(leaves[0]!.serial));
    expect(a.signatures.count()).toBe(1);
    const stored = await createOcspResponsesRepository({ db: getDatabase().db }).listForSerial(
      leaves[0]!.serial,
    );
    expect(stored).toHaveLength(1);
    expect(Buffer.from(stored[0]!.responseDer).equals(Buffer.from(answers[0]!))).toBe(true);
    // A node that starts later serves the stored response: a database read, no signature.
    const b = await node(getDatabase().database);
    cleanups.push(b.unlisten);
    const fromB = await b.responder.respond(ask(leaves[0]!.serial));
    expect(Buffer.from(fromB).equals(Buffer.from(answers[0]!))).toBe(true);
    expect(b.signatures.count()).toBe(0);
  });

  test('a revocation on one node is in the very next response of another node', async () => {
    const { kind, target } = getDatabase();
    await seed(getDatabase().db);
    const a = await node(getDatabase().database);
    cleanups.push(a.unlisten);
    // PostgreSQL: a second handle, as a second server has; PGlite is one process, one handle.
    const second = kind === 'postgres' ? await openDatabase(target) : getDatabase().database;
    if (second !== getDatabase().database) cleanups.push(() => second.close());
    const b = await node(second);
    cleanups.push(b.unlisten);
    const serial = leaves[1]!.serial;
    expect(await statusOf(a.responder, serial)).toBe('good');
    expect(await statusOf(b.responder, serial)).toBe('good');
    expect(b.signatures.count()).toBe(0);

    await a.revoke.revoke({ serial, reason: 'keyCompromise' });
    expect(await statusOf(a.responder, serial)).toBe('revoked');
    // No wait: the NOTIFY is sent at the revocation's commit, before A's revoke returns.
    expect(await statusOf(b.responder, serial)).toBe('revoked');
  });

  test('after a crash between the revocation and re-signing, the next start re-signs what was owed', async () => {
    const db = getDatabase().db;
    await seed(db);
    const serial = leaves[2]!.serial;
    const responses = createOcspResponsesRepository({ db });
    const before = await node(getDatabase().database);
    await before.unlisten();
    expect(await statusOf(before.responder, serial)).toBe('good');
    // The revocation commits, and the process dies before it tells anyone or re-signs.
    await before.certificates.revoke(serial, { reason: 'superseded', revokedAt: clock.now() });
    const owedWork = createOwedWorkRepository({ db, clock });
    expect((await owedWork.list('ocsp')).map((row) => row.key)).toEqual([serial]);
    const [stale] = await responses.listForSerial(serial);
    expect(stale!.stale).toBe(true);

    const after = await node(getDatabase().database);
    cleanups.push(after.unlisten);
    const maintenance = createOcspMaintenance({
      responder: after.responder,
      owed: owedOcsp(owedWork),
      clock,
      lock: (name, fn) => getDatabase().database.withAdvisoryLock(name, fn),
      validityMs: 4 * 3_600_000,
    });
    await maintenance.start();
    cleanups.push(() => maintenance.stop());
    expect(await owedWork.list('ocsp')).toEqual([]);
    const [replaced] = await responses.listForSerial(serial);
    expect(replaced).toMatchObject({ stale: false, certStatus: 'revoked' });
    expect(after.signatures.count()).toBe(1);
    // Served from the database as it is: no further signature.
    const served = decodeOcspResponse(await after.responder.respond(ask(serial)));
    expect(served.basic!.tbsResponseData.responses[0]!.certStatus.revoked).toBeDefined();
    expect(after.signatures.count()).toBe(1);
  });

  test('a response signed from a status that a revocation changed meanwhile is not stored', async () => {
    const db = getDatabase().db;
    await seed(db);
    const serial = leaves[0]!.serial;
    const certificates = createCertificatesRepository({ db, clock });
    const read = (await certificates.findStatus(serial))!;
    await certificates.revoke(serial, { reason: 'superseded', revokedAt: clock.now() });
    const responses = createOcspResponsesRepository({ db });
    const certIdDer = certIdFor(readIssuerFacts(ca.der), serial);
    const kept = await responses.store(
      {
        certIdSha256: new Uint8Array(createHash('sha256').update(certIdDer).digest()),
        certIdDer,
        serial,
        issuerId: 'dev-intermediate',
        responseDer: Uint8Array.of(0x30, 0x00),
        certStatus: 'good',
        producedAt: clock.now(),
        nextUpdate: new Date(clock.now().getTime() + 3_600_000),
      },
      { status: read.status, statusChangedAt: read.statusChangedAt },
    );
    expect(kept).toBe(false);
    expect(await responses.listForSerial(serial)).toEqual([]);
  });

  test('preSign all signs every valid certificate ahead, so the first request is a hit', async () => {
    const db = getDatabase().db;
    await seed(db);
    const a = await node(getDatabase().database);
    cleanups.push(a.unlisten);
    const responses = createOcspResponsesRepository({ db });
    const facts = readIssuerFacts(ca.der);
    const maintenance = createOcspMaintenance({
      responder: a.responder,
      owed: owedOcsp(createOwedWorkRepository({ db, clock })),
      clock,
      lock: (name, fn) => getDatabase().database.withAdvisoryLock(name, fn),
      validityMs: 4 * 3_600_000,
      preSignAll: {
        unsigned: async (now, limit) =>
          (await responses.listUnsigned(now, limit)).map((row) => certIdFor(facts, row.serial)),
        due: async (before, now, limit) =>
          (await responses.listDue(before, now, limit)).map((row) => row.certIdDer),
      },
    });
    await maintenance.runOnce();
    await maintenance.stop();
    expect(a.signatures.count()).toBe(leaves.length);
    expect(await responses.listUnsigned(clock.now(), 10)).toEqual([]);
    for (const leaf of leaves) expect(await statusOf(a.responder, leaf.serial)).toBe('good');
    expect(a.signatures.count()).toBe(leaves.length);
  });
});
