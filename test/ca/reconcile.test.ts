import { randomBytes } from 'node:crypto';
import { beforeEach, expect, it } from 'vitest';
import { type PartitionSignature, reconcile } from '../../src/ca/reconcile.ts';
import { createCertificatesRepository } from '../../src/db/certificates.repository.ts';
import { createIssuersRepository } from '../../src/db/issuers.repository.ts';
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
