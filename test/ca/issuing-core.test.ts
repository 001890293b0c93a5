import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createCertificateAuthority } from '../../src/ca/ca.ts';
import { loadIssuers } from '../../src/ca/issuers.ts';
import type { CertificateAuthority, Requester } from '../../src/ca/types.ts';
import { createAuditRepository } from '../../src/db/audit.repository.ts';
import { createCertificatesRepository } from '../../src/db/certificates.repository.ts';
import { createIssuanceUnitOfWork } from '../../src/db/issuance.unit-of-work.ts';
import { createIssuersRepository } from '../../src/db/issuers.repository.ts';
import type { EmulatedPartition } from '../../src/hsm/partition.ts';
import type { PartitionSession } from '../../src/hsm/session.ts';
import { systemClock } from '../../src/lib/clock.ts';
import { AppError } from '../../src/lib/errors.ts';
import { createPolicyRegistry } from '../../src/policy/registry.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { CA_USER, OFFICER, openMemoryPartition } from '../hsm/helpers.ts';
import { generateTestKey, opensslCsr } from '../x509/fixtures.ts';
import { makeCertificate, type Node } from '../x509/path-fixtures.ts';

/**
 * The issuing core on its own (DESIGN.md "ca/"): createCertificateAuthority over a real partition
 * and a real database with the real migrations, no HTTP. The API suites test the same core through
 * its routes.
 */

let database: TestDatabase;
let partition: EmulatedPartition;
let signer: PartitionSession;
let root: Node;
let policyDir: string;
let ca: CertificateAuthority;

const issuer: Requester = { id: 'k_issuer', kind: 'apikey', policies: ['web-server'] };

beforeAll(async () => {
  database = await createTestDatabase('pglite');
  ({ partition } = await openMemoryPartition());
  const officer = partition.openSession();
  await officer.login({ user: OFFICER.name, pin: OFFICER.pin });
  const key = await officer.createKey({ label: 'issuing-2026', algorithm: 'ecdsa-p256' });
  signer = partition.openSession();
  await signer.login({ user: CA_USER.name, pin: CA_USER.pin });
  root = await makeCertificate({ subject: 'CN=Core Root,O=Example' });
  const issuing = await makeCertificate({
    issuer: root,
    subject: 'CN=Core Issuing CA,O=Example',
    spki: key.publicKey,
  });
  const issuers = createIssuersRepository({ db: database.db });
  await issuers.create({
    id: 'root',
    name: 'root',
    certificateDer: root.der,
    keyUri: 'hsm:partition=offline;label=root',
  });
  await issuers.create({
    id: 'issuing',
    name: 'issuing',
    parentId: 'root',
    certificateDer: issuing.der,
    keyUri: key.uri,
  });
  policyDir = mkdtempSync(join(tmpdir(), 'signet-core-'));
  const policy = readFileSync(join(import.meta.dirname, '../../policies/web-server.yaml'), 'utf8');
  writeFileSync(join(policyDir, 'web-server.yaml'), policy.replace(/^issuer: .*$/m, 'issuer: issuing'));
});

afterAll(async () => {
  await database?.destroy();
  if (policyDir) rmSync(policyDir, { recursive: true, force: true });
});

beforeEach(async () => {
  const certificates = createCertificatesRepository({ db: database.db });
  const audit = createAuditRepository({ db: database.db, nodeId: 'core-test' });
  ca = createCertificateAuthority({
    clock: systemClock,
    policies: await createPolicyRegistry({ dir: policyDir }),
    issuers: await loadIssuers({
      issuers: createIssuersRepository({ db: database.db }),
      partitions: new Map([['test', signer]]),
      trustedRoots: [root.der],
      clock: systemClock,
    }),
    certificates,
    audit,
    store: createIssuanceUnitOfWork({ db: database.db, audit }),
  });
});

const csrFor = async (name: string) =>
  opensslCsr(await generateTestKey('ecdsa-p256'), `/CN=${name}`, `DNS:${name}`);
const auditOf = async (target: string) =>
  (await createAuditRepository({ db: database.db, nodeId: 'core-test' }).list({ target })).items;

describe('the issuing core', () => {
  it('issues a certificate the issuer signed, stores it and audits it, without HTTP', async () => {
    const issued = await ca.issue({
      csr: await csrFor('www.example.com'),
      policy: 'web-server',
      requester: issuer,
    });
    const certificate = new X509Certificate(issued.certificateDer);
    expect(certificate.subjectAltName).toBe('DNS:www.example.com');
    expect(certificate.verify(new X509Certificate(issued.chainPem[0] ?? root.pem).publicKey)).toBe(true);
    const stored = await createCertificatesRepository({ db: database.db }).findBySerial(issued.serialNumber);
    expect(stored?.status).toBe('good');
    expect(Buffer.from(stored!.der!).equals(Buffer.from(issued.certificateDer))).toBe(true);
    expect(await auditOf(`certificate:${issued.serialNumber}`)).toEqual([
      expect.objectContaining({ action: 'certificate.issue', decision: 'allowed' }),
    ]);
    expect(await ca.stored(issued.serialNumber)).toMatchObject({ serialNumber: issued.serialNumber });
  });

  it('refuses a requester not bound to the policy with policy.requester_not_bound, audited once', async () => {
    const stranger: Requester = { id: 'k_stranger', kind: 'apikey', policies: ['spiffe-workload'] };
    const refused = await ca
      .issue({ csr: await csrFor('www.example.com'), policy: 'web-server', requester: stranger })
      .catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(AppError);
    expect((refused as AppError).code).toBe('policy.requester_not_bound');
    expect(await auditOf('policy:web-server')).toEqual([
      expect.objectContaining({ actor: 'k_stranger', decision: 'denied' }),
    ]);
  });

  it('answers hsm.unavailable, and marks the reservation failed, while its session is logged out', async () => {
    await signer.logout();
    try {
      const refused = await ca
        .issue({ csr: await csrFor('down.example.com'), policy: 'web-server', requester: issuer })
        .catch((error: unknown) => error);
      expect(refused).toBeInstanceOf(AppError);
      expect((refused as AppError).code).toBe('hsm.unavailable');
      const certificates = createCertificatesRepository({ db: database.db });
      const { items } = await certificates.list({ status: 'failed' });
      expect(items.map((item) => item.sans)).toEqual([[{ type: 'dns', value: 'down.example.com' }]]);
    } finally {
      await signer.login({ user: CA_USER.name, pin: CA_USER.pin });
    }
  });
});
