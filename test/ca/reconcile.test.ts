import { randomBytes } from 'node:crypto';
import { beforeEach, expect, it } from 'vitest';
import { needsAttention, type PartitionSignature, reconcile } from '../../src/ca/reconcile.ts';
import { createCertificatesRepository } from '../../src/db/certificates.repository.ts';
import { createIssuersRepository } from '../../src/db/issuers.repository.ts';
import { createOwedWorkRepository } from '../../src/db/owed-work.repository.ts';
import { fixedClock } from '../../src/lib/clock.ts';
import { describeEachDatabase } from '../helpers/database.ts';

const clock = fixedClock('2026-11-28T12:00:00Z');
const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

async function* fromList(list: PartitionSignature[]) {
  yield* list;
}

describeEachDatabase('signet audit reconcile', (getDatabase) => {
  let certificates: ReturnType<typeof createCertificatesRepository>;

  beforeEach(async () => {
    const { db } = getDatabase();
    certificates = createCertificatesRepository({ db, clock });
    await createIssuersRepository({ db, clock }).create({
      id: 'dev-intermediate',
      name: 'Dev Intermediate',
      certificateDer: new Uint8Array([0x30, 0x00]),
      keyUri: 'hsm:partition=issuing;label=dev-intermediate',
    });
  });

  async function reserve(serial: string): Promise<Uint8Array> {
    const tbsSha256 = new Uint8Array(randomBytes(32));
    await certificates.reservePending({
      serial,
      issuerId: 'dev-intermediate',
      policy: 'web-server',
      requester: 'test',
      subject: 'CN=www.example.com',
      sans: [{ type: 'dns', value: 'www.example.com' }],
      notBefore: clock.now(),
      notAfter: new Date(clock.now().getTime() + 86_400_000),
      tbsSha256,
    });
    return tbsSha256;
  }
  const signature = (digest: Uint8Array | string): PartitionSignature => ({
    digest: typeof digest === 'string' ? digest : hex(digest),
    time: clock.now().toISOString(),
    source: 'issuing',
  });

  it('accounts for every signature: stored, signed but never stored, and unknown to the database', async () => {
    const stored = await reserve('0a01');
    await certificates.markIssued('0a01', new Uint8Array([0x30, 0x03, 0x02, 0x01, 0x01]));
    const crashed = await reserve('0a02');
    const stranger = hex(randomBytes(32));
    clock.advance(10 * 60_000 + 1);

    const report = await reconcile({
      signatures: fromList([signature(stored), signature(crashed), signature(stranger)]),
      certificates,
      clock,
    });
    expect(report.signaturesExamined).toBe(3);
    expect(report.signedWithoutRecord.map((s) => s.digest)).toEqual([stranger]);
    expect(report.signedButNotStored).toEqual([{ serial: '0a02', digest: hex(crashed) }]);
    expect(report.certificatesWithoutSignature).toEqual([]);
    expect(report.abandonedCleaned).toEqual([]);
    expect(needsAttention(report)).toBe(true);
  });

  it('counts a TBS that two members signed (a failover retry) once', async () => {
    const stored = await reserve('0d01');
    await certificates.markIssued('0d01', new Uint8Array([0x30, 0x03, 0x02, 0x01, 0x04]));
    const onFirst = { ...signature(stored), source: 'hsm/issuing' };
    const onSecond = { ...signature(stored), source: 'members/2' };
    const report = await reconcile({ signatures: fromList([onFirst, onSecond]), certificates, clock });
    expect(report.signaturesExamined).toBe(2);
    expect(report.signaturesDistinct).toBe(1);
    expect(report.signedWithoutRecord).toEqual([]);
    expect(report.certificatesWithoutSignature).toEqual([]);
    expect(needsAttention(report)).toBe(false);
  });

  it('reports a stored certificate that no partition log signed', async () => {
    const tbs = await reserve('0b01');
    await certificates.markIssued('0b01', new Uint8Array([0x30, 0x03, 0x02, 0x01, 0x02]));
    const report = await reconcile({ signatures: fromList([]), certificates, clock });
    expect(report.certificatesWithoutSignature).toEqual([{ serial: '0b01', digest: hex(tbs) }]);
  });

  it('marks pending rows with no signature failed once they are older than the grace period', async () => {
    await reserve('0c01');
    const young = await reconcile({ signatures: fromList([]), certificates, clock, pendingGraceMs: 60_000 });
    expect(young.abandonedCleaned).toEqual([]);
    clock.advance(120_000);
    const dry = await reconcile({
      signatures: fromList([]),
      certificates,
      clock,
      pendingGraceMs: 60_000,
      dryRun: true,
    });
    expect(dry.abandonedCleaned).toEqual(['0c01']);
    expect((await certificates.findBySerial('0c01'))?.status).toBe('pending');
    const old = await reconcile({ signatures: fromList([]), certificates, clock, pendingGraceMs: 60_000 });
    expect(old.abandonedCleaned).toEqual(['0c01']);
    expect((await certificates.findBySerial('0c01'))?.status).toBe('failed');
  });
});

describeEachDatabase('signet audit reconcile, dry run and repairs (issue #17)', (getDatabase) => {
  let certificates: ReturnType<typeof createCertificatesRepository>;

  beforeEach(async () => {
    const { db } = getDatabase();
    certificates = createCertificatesRepository({ db, clock });
    await createIssuersRepository({ db, clock }).create({
      id: 'dev-intermediate',
      name: 'Dev Intermediate',
      certificateDer: new Uint8Array([0x30, 0x00]),
      keyUri: 'hsm:partition=issuing;label=dev-intermediate',
    });
  });

  /** `count` pending rows at once (one transaction), each with a fresh TBS hash. */
  async function reserveMany(count: number, prefix: number): Promise<Uint8Array[]> {
    const rows = Array.from({ length: count }, (_, i) => ({
      // A first octet 0x11..0x14: canonical (not 00, high bit clear), distinct per call.
      serial: `${(0x10 + prefix).toString(16)}${i.toString(16).padStart(6, '0')}`,
      issuerId: 'dev-intermediate',
      policy: 'web-server',
      requester: 'test',
      subject: 'CN=www.example.com',
      sans: [{ type: 'dns', value: 'www.example.com' }],
      notBefore: clock.now(),
      notAfter: new Date(clock.now().getTime() + 86_400_000),
      tbsSha256: new Uint8Array(randomBytes(32)),
    }));
    const { reserved } = await certificates.reservePendingMany(rows);
    expect(reserved).toHaveLength(count);
    return rows.map((row) => row.tbsSha256);
  }

  it('reports in a dry run exactly what the run then cleans, past one page of rows', async () => {
    await reserveMany(1_200, 1);
    const signedTbs = await reserveMany(3, 2);
    clock.advance(20 * 60_000);
    await reserveMany(5, 3); // young: within the grace period
    const signatures = () =>
      fromList(
        signedTbs.map((tbs) => ({ digest: hex(tbs), time: clock.now().toISOString(), source: 'issuing' })),
      );

    const dry = await reconcile({
      signatures: signatures(),
      certificates,
      clock,
      dryRun: true,
      revokeUnstored: true,
    });
    expect(dry.abandonedCleaned).toHaveLength(1_200);
    expect(dry.unstoredRevoked).toHaveLength(3);
    expect(dry.pendingWithinGrace).toBe(5);
    expect((await certificates.countByStatus()).pending).toBe(1_208);

    const real = await reconcile({ signatures: signatures(), certificates, clock, revokeUnstored: true });
    expect(new Set(real.abandonedCleaned)).toEqual(new Set(dry.abandonedCleaned));
    expect(new Set(real.unstoredRevoked)).toEqual(new Set(dry.unstoredRevoked));
    expect(await certificates.countByStatus()).toMatchObject({ pending: 5, failed: 1_200, revoked: 3 });
    expect(needsAttention(real)).toBe(false);

    const after = await reconcile({ signatures: signatures(), certificates, clock });
    expect(after).toMatchObject({ abandonedCleaned: [], signedButNotStored: [], unstoredRevoked: [] });
  });

  it('revokes a certificate signed but never stored only when asked, and owes its CRL', async () => {
    const [tbs] = await reserveMany(1, 4);
    clock.advance(20 * 60_000);
    const signatures = () =>
      fromList([{ digest: hex(tbs!), time: clock.now().toISOString(), source: 'issuing' }]);
    const found = await reconcile({ signatures: signatures(), certificates, clock });
    expect(found.signedButNotStored).toHaveLength(1);
    expect(found.unstoredRevoked).toEqual([]);
    expect(needsAttention(found)).toBe(true);

    const repaired = await reconcile({ signatures: signatures(), certificates, clock, revokeUnstored: true });
    const serial = repaired.unstoredRevoked[0]!;
    expect(await certificates.findStatus(serial)).toMatchObject({
      status: 'revoked',
      revocationReason: 'unspecified',
    });
    const owed = await createOwedWorkRepository({ db: getDatabase().db, clock }).list('crl');
    expect(owed.map((row) => row.key)).toEqual(['dev-intermediate/0']);
  });
});
