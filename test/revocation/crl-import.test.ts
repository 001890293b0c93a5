import * as x509 from '@peculiar/x509';
import { afterAll, beforeAll, beforeEach, describe, expect, test } from 'vitest';
import { createImportFor } from '../../src/cli/revocation.ts';
import { createCrlsRepository } from '../../src/db/crls.repository.ts';
import { createIssuersRepository } from '../../src/db/issuers.repository.ts';
import { fixedClock } from '../../src/lib/clock.ts';
import { AppError } from '../../src/lib/errors.ts';
import { buildCrl } from '../../src/revocation/crl-builder.ts';
import { crlsSignedOnline } from '../../src/revocation/crl-import.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { createIntermediate, createRoot, keyParams, type TestCa } from './helpers/pki.ts';

/**
 * Issue #18: publishing a CRL signed offline, on a real (PGlite) database with the real
 * repositories, the way `signet serve` and `signet crl import --data` compose it.
 */
const NOW = new Date('2026-06-01T12:00:00Z');
const DAY = 86_400_000;

let database: TestDatabase;
let root: TestCa;
let impostor: TestCa;
let intermediate: TestCa;
const clock = fixedClock(NOW);

beforeAll(async () => {
  database = await createTestDatabase('pglite');
  const validity = {
    notBefore: new Date('2026-01-01T00:00:00Z'),
    notAfter: new Date('2036-01-01T00:00:00Z'),
  };
  root = await createRoot({ algorithm: 'ecdsa-p384', name: 'CN=Example Root R1,O=Example', ...validity });
  // Same name, another key: what a forger (or a mix-up of two roots) would present.
  impostor = await createRoot({ algorithm: 'ecdsa-p384', name: 'CN=Example Root R1,O=Example', ...validity });
  intermediate = await createIntermediate(root, validity);
});
afterAll(async () => {
  await database?.destroy();
});

let crls: ReturnType<typeof createCrlsRepository>;
let importer: ReturnType<typeof createImportFor>;
beforeEach(async () => {
  clock.set(NOW);
  await database.reset();
  const issuers = createIssuersRepository({ db: database.db, clock });
  crls = createCrlsRepository({ db: database.db });
  await issuers.create({
    id: 'example-root',
    name: 'Example Root R1',
    certificateDer: root.der,
    keyUri: 'hsm:partition=root;label=example-root-r1',
  });
  await issuers.create({
    id: 'example-intermediate',
    name: 'Example Intermediate',
    parentId: 'example-root',
    certificateDer: intermediate.der,
    keyUri: 'hsm:partition=issuing;label=example-intermediate',
  });
  // The server opens `issuing` only; the root's partition stays offline.
  importer = createImportFor({
    config: { partitions: { issuing: {} as never } },
    clock,
    issuers,
    crls,
  });
});

interface CrlSpec {
  by?: TestCa;
  number?: bigint;
  thisUpdate?: Date;
  nextUpdate?: Date;
  revoked?: string[];
}

/** A root CRL as the ceremony makes it (src/revocation's builder: v2, AKI, number, CA-only IDP). */
async function rootCrl({
  by = root,
  number = 2n,
  thisUpdate = new Date(NOW.getTime() - DAY),
  nextUpdate = new Date(NOW.getTime() + 365 * DAY),
  revoked = [],
}: CrlSpec = {}): Promise<Uint8Array> {
  const built = await buildCrl({
    issuer: by.der,
    signer: by.signer,
    number,
    thisUpdate,
    nextUpdate,
    entries: revoked.map((serial) => ({ serial, revokedAt: thisUpdate, reason: 'superseded' as const })),
    issuingDistributionPoint: { onlyContainsCACerts: true },
  });
  return built.der;
}

/** A CRL with the given extensions, by @peculiar/x509's generator (for shapes our builder never makes). */
async function oddCrl(extensions: x509.Extension[], { nextUpdate = true } = {}): Promise<Uint8Array> {
  const crl = await x509.X509CrlGenerator.create({
    issuer: root.certificate.subject,
    thisUpdate: new Date(NOW.getTime() - DAY),
    ...(nextUpdate ? { nextUpdate: new Date(NOW.getTime() + 30 * DAY) } : {}),
    extensions,
    signingKey: root.keys.privateKey,
    signingAlgorithm: keyParams(root.algorithm).sign,
  });
  return new Uint8Array(crl.rawData);
}

const number = (n: number) => new x509.Extension('2.5.29.20', false, Uint8Array.of(0x02, 0x01, n));

async function refusal(
  promise: Promise<unknown>,
): Promise<{ code: string; category: string; message: string }> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof AppError)
      return { code: error.code, category: error.category, message: error.message };
    throw error;
  }
  throw new Error('the import was not refused');
}

describe('importing a CRL signed offline', () => {
  test('publishes a root CRL as the latest full CRL of its issuer, marked imported, and raises its number sequence', async () => {
    const der = await rootCrl({ number: 7n, revoked: ['01a2'] });
    const imported = await importer.importCrl({ issuerId: 'example-root', der });
    expect(imported).toMatchObject({ issuerId: 'example-root', crlNumber: 7n, entries: 1 });
    const stored = await crls.getLatest('example-root', 0, 'full');
    expect(Buffer.from(stored!.der).equals(Buffer.from(der))).toBe(true);
    expect(stored).toMatchObject({ crlNumber: 7n, imported: true, generatedBy: 'import' });
    expect(stored!.nextUpdate).toEqual(imported.nextUpdate);
    // A number handed out for this scope later (were the key ever used online) stays above it.
    expect(await crls.allocateNumber('example-root', 0)).toBe(8n);
  });

  test('takes each higher number in turn, replacing what is served', async () => {
    await importer.importCrl({ issuerId: 'example-root', der: await rootCrl({ number: 1n }) });
    await importer.importCrl({ issuerId: 'example-root', der: await rootCrl({ number: 2n }) });
    expect((await crls.getLatestInfo('example-root', 0, 'full'))?.crlNumber).toBe(2n);
  });

  test.each<{
    name: string;
    crl: () => Promise<Uint8Array>;
    issuer?: string;
    code: string;
    category: string;
  }>([
    {
      name: 'bytes that are not a CRL',
      crl: async () => new TextEncoder().encode('not a CRL'),
      code: 'crl.malformed',
      category: 'invalid',
    },
    {
      name: 'a CRL followed by trailing bytes',
      crl: async () => new Uint8Array([...(await rootCrl()), 0]),
      code: 'crl.malformed',
      category: 'invalid',
    },
    {
      name: 'a delta CRL (RFC 5280 §5.2.4)',
      crl: () => oddCrl([number(3), new x509.Extension('2.5.29.27', true, Uint8Array.of(0x02, 0x01, 0x02))]),
      code: 'crl.malformed',
      category: 'invalid',
    },
    {
      name: 'a CRL without a CRL number (RFC 5280 §5.2.3)',
      crl: () => oddCrl([]),
      code: 'crl.malformed',
      category: 'invalid',
    },
    {
      name: 'a CRL without nextUpdate (RFC 5280 §5.1.2.5)',
      crl: () => oddCrl([number(3)], { nextUpdate: false }),
      code: 'crl.malformed',
      category: 'invalid',
    },
    {
      name: 'a CRL with a critical extension relying parties cannot process',
      crl: () =>
        oddCrl([number(3), new x509.Extension('1.3.6.1.4.1.32473.9', true, Uint8Array.of(0x05, 0x00))]),
      code: 'crl.malformed',
      category: 'invalid',
    },
    {
      name: "a CRL with the root's name signed by another key",
      crl: () => rootCrl({ by: impostor }),
      code: 'crl.signature_invalid',
      category: 'invalid',
    },
    {
      name: "the intermediate's CRL presented as the root's",
      crl: () => rootCrl({ by: intermediate }),
      code: 'crl.signature_invalid',
      category: 'invalid',
    },
    {
      name: 'a CRL whose nextUpdate has passed',
      crl: () =>
        rootCrl({
          thisUpdate: new Date(NOW.getTime() - 10 * DAY),
          nextUpdate: new Date(NOW.getTime() - 1000),
        }),
      code: 'crl.expired',
      category: 'unprocessable',
    },
    {
      name: 'a CRL whose thisUpdate is a day ahead',
      crl: () =>
        rootCrl({
          thisUpdate: new Date(NOW.getTime() + DAY),
          nextUpdate: new Date(NOW.getTime() + 30 * DAY),
        }),
      code: 'crl.not_yet_valid',
      category: 'unprocessable',
    },
    {
      name: 'a CRL for an issuer whose CRLs the online CA signs',
      crl: () => rootCrl({ by: intermediate }),
      issuer: 'example-intermediate',
      code: 'crl.issuer_signs_online',
      category: 'conflict',
    },
    {
      name: 'a CRL for an issuer that does not exist',
      crl: () => rootCrl(),
      issuer: 'nobody',
      code: 'issuer.not_found',
      category: 'not_found',
    },
  ])('refuses $name with $code', async ({ crl, issuer = 'example-root', code, category }) => {
    const answer = await refusal(importer.importCrl({ issuerId: issuer, der: await crl() }));
    expect(answer).toMatchObject({ code, category });
    expect(await crls.getLatestInfo(issuer, 0, 'full')).toBeNull();
  });

  test('refuses a CRL number that is not above the one served, whichever came first', async () => {
    await importer.importCrl({ issuerId: 'example-root', der: await rootCrl({ number: 5n }) });
    for (const n of [5n, 4n]) {
      const answer = await refusal(
        importer.importCrl({ issuerId: 'example-root', der: await rootCrl({ number: n }) }),
      );
      expect(answer.code).toBe('crl.number_not_increasing');
      expect(answer.category).toBe('conflict');
      expect(answer.message).toContain('5');
    }
    expect((await crls.getLatestInfo('example-root', 0, 'full'))?.crlNumber).toBe(5n);
  });

  test('of two imports racing with the same number, one wins and the other is refused', async () => {
    const [a, b] = [await rootCrl({ number: 9n }), await rootCrl({ number: 9n, revoked: ['0badf00d'] })];
    const outcomes = await Promise.allSettled([
      importer.importCrl({ issuerId: 'example-root', der: a }),
      importer.importCrl({ issuerId: 'example-root', der: b }),
    ]);
    expect(outcomes.filter((o) => o.status === 'fulfilled')).toHaveLength(1);
    const rejected = outcomes.find((o) => o.status === 'rejected') as PromiseRejectedResult;
    expect((rejected.reason as AppError).code).toBe('crl.number_not_increasing');
  });

  test('allows five minutes of clock skew on thisUpdate, no more', async () => {
    const ahead = (ms: number) =>
      rootCrl({ thisUpdate: new Date(NOW.getTime() + ms), nextUpdate: new Date(NOW.getTime() + 30 * DAY) });
    await expect(
      importer.importCrl({ issuerId: 'example-root', der: await ahead(4 * 60_000) }),
    ).resolves.toBeDefined();
    clock.set(NOW);
    const refused = await refusal(
      importer.importCrl({ issuerId: 'example-root', der: await ahead(6 * 60_000) }),
    );
    expect(refused.code).toBe('crl.not_yet_valid');
  });
});

describe('which issuers the online CA signs CRLs for', () => {
  const partitions = new Set(['issuing']);
  test.each([
    {
      name: 'an active intermediate whose key is in an opened partition',
      id: 'intermediate',
      keyUri: 'hsm:partition=issuing;label=a',
      status: 'active',
      online: true,
    },
    {
      name: 'a root, even with its key in an opened partition',
      id: 'root',
      keyUri: 'hsm:partition=issuing;label=a',
      status: 'active',
      online: false,
    },
    {
      name: 'an intermediate whose key partition the server does not open',
      id: 'intermediate',
      keyUri: 'hsm:partition=root;label=a',
      status: 'active',
      online: false,
    },
    {
      name: 'a disabled intermediate (the server does not load it)',
      id: 'intermediate',
      keyUri: 'hsm:partition=issuing;label=a',
      status: 'disabled',
      online: false,
    },
    {
      name: 'an issuer whose key URI is not one of ours',
      id: 'intermediate',
      keyUri: 'pkcs11:token=x',
      status: 'active',
      online: false,
    },
  ])('$name: $online', async ({ id, keyUri, status, online }) => {
    const certificateDer = id === 'root' ? root.der : intermediate.der;
    expect(crlsSignedOnline({ status, keyUri, certificateDer }, partitions)).toBe(online);
  });
});
