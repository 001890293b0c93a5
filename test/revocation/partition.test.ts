import { webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { RemotePartition } from '../../src/hsm/client.ts';
import { type PartitionProcess, startPartitionProcess, temporarySocketPath } from '../../src/hsm/process.ts';
import { createPartitionCrypto, getCryptoKey } from '../../src/hsm/webcrypto.ts';
import { buildCrl } from '../../src/revocation/crl-builder.ts';
import { createOcspResponder } from '../../src/revocation/ocsp-responder.ts';
import { partitionSigner } from '../../src/revocation/partition-signer.ts';
import { hasTool } from '../helpers/tools.ts';
import { memoryCertificates } from './helpers/memory.ts';
import { buildOcspRequest, serveOcsp } from './helpers/ocsp.ts';
import { openssl, scratch } from './helpers/openssl.ts';
import { createLeaf, createRoot, type TestCa } from './helpers/pki.ts';

/**
 * CRLs and OCSP responses signed by a real partition process (`signet hsm serve`) through the
 * WebCrypto facade, with purpose-bound handles; a CRL larger than one partition frame goes
 * through signStream.
 */

const USERS = [
  { name: 'officer', role: 'officer' as const, pin: 'officer-pin-1234' },
  { name: 'ca', role: 'user' as const, pin: 'ca-user-pin-5678' },
];
const DAY = 86_400_000;

describe.runIf(hasTool('openssl', ['version']))('signing through a partition process', () => {
  const dir = scratch();
  let partitionProcess: PartitionProcess;
  let cleanupSocket: () => Promise<void>;
  let user: RemotePartition;
  let root: TestCa;
  let ca: TestCa;
  let partitionCrypto: ReturnType<typeof createPartitionCrypto>;
  let keysByPurpose: Record<'crl' | 'ocsp' | 'certificate', Awaited<ReturnType<typeof getCryptoKey>>>;
  let edCa: { der: Uint8Array; pem: string; signer: ReturnType<typeof partitionSigner> };

  beforeAll(async () => {
    const socket = await temporarySocketPath();
    cleanupSocket = socket.cleanup;
    partitionProcess = await startPartitionProcess({
      socketPath: socket.socketPath,
      name: 'issuing',
      ephemeral: { users: USERS },
    });
    const connect = (who: (typeof USERS)[number]) =>
      RemotePartition.connect({
        socketPath: socket.socketPath,
        onConnect: (p) => p.login({ user: who.name, pin: who.pin }).then(() => {}),
      });
    const officer = await connect(USERS[0]!);
    const info = await officer.createKey({ label: 'revocation-ca', algorithm: 'ecdsa-p256' });
    const edInfo = await officer.createKey({ label: 'revocation-ca-ed25519', algorithm: 'ed25519' });
    await officer.close();
    user = await connect(USERS[1]!);

    // An intermediate whose key lives in the partition, certified by an in-process test root.
    root = await createRoot();
    partitionCrypto = createPartitionCrypto(user);
    const certificate = await x509.X509CertificateGenerator.create(
      {
        serialNumber: '0123456789abcdef',
        subject: 'CN=Partition Intermediate,O=Example',
        issuer: root.certificate.subject,
        notBefore: new Date(Date.now() - 3_600_000),
        notAfter: new Date(Date.now() + 30 * DAY),
        publicKey: new x509.PublicKey(info.publicKey),
        signingKey: root.keys.privateKey,
        signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
        extensions: [
          new x509.BasicConstraintsExtension(true, 0, true),
          new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
          await x509.SubjectKeyIdentifierExtension.create(
            new x509.PublicKey(info.publicKey),
            false,
            webcrypto,
          ),
        ],
      },
      webcrypto,
    );
    keysByPurpose = {
      crl: await getCryptoKey(user, { label: 'revocation-ca' }, { purpose: 'crl' }),
      ocsp: await getCryptoKey(user, { label: 'revocation-ca' }, { purpose: 'ocsp' }),
      certificate: await getCryptoKey(user, { label: 'revocation-ca' }, { purpose: 'certificate' }),
    };
    ca = {
      certificate,
      der: new Uint8Array(certificate.rawData),
      pem: certificate.toString('pem'),
      // Leaves are signed in-process by the test helper; only CRLs and OCSP go through the partition.
      keys: {
        privateKey: keysByPurpose.certificate,
        publicKey: await certificate.publicKey.export(webcrypto),
      } as never,
      algorithm: 'ecdsa-p256',
      signer: partitionSigner(partitionCrypto, keysByPurpose.crl, 'crl'),
    };
    // Issue #28: an Ed25519 issuer in the partition (pure EdDSA has no multi-part form: the partition
    // gathers the pieces and signs the whole body).
    const edCertificate = await x509.X509CertificateGenerator.create(
      {
        serialNumber: '0123456789abcdee',
        subject: 'CN=Partition Ed25519 Intermediate,O=Example',
        issuer: root.certificate.subject,
        notBefore: new Date(Date.now() - 3_600_000),
        notAfter: new Date(Date.now() + 30 * DAY),
        publicKey: new x509.PublicKey(edInfo.publicKey),
        signingKey: root.keys.privateKey,
        signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
        extensions: [
          new x509.BasicConstraintsExtension(true, 0, true),
          new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
          await x509.SubjectKeyIdentifierExtension.create(
            new x509.PublicKey(edInfo.publicKey),
            false,
            webcrypto,
          ),
        ],
      },
      webcrypto,
    );
    edCa = {
      der: new Uint8Array(edCertificate.rawData),
      pem: edCertificate.toString('pem'),
      signer: partitionSigner(
        partitionCrypto,
        await getCryptoKey(user, { label: 'revocation-ca-ed25519' }, { purpose: 'crl' }),
        'crl',
      ),
    };
  }, 120_000);

  afterAll(async () => {
    await user?.close();
    await partitionProcess?.stop();
    await cleanupSocket?.();
    dir.cleanup();
  });

  test('a CRL larger than one partition frame is streamed, signed with purpose crl, and openssl accepts it', async () => {
    let streamed = 0;
    const signer = ca.signer;
    const counting = {
      ...signer,
      signStream: async (chunks: AsyncIterable<Uint8Array>) => {
        streamed += 1;
        return signer.signStream!(chunks);
      },
    };
    const entries = Array.from({ length: 25_000 }, (_, i) => ({
      serial: (0x40000000 + i).toString(16).padStart(32, '5'),
      revokedAt: new Date(),
      reason: 'superseded' as const,
    }));
    const now = new Date();
    const crl = await buildCrl({
      issuer: ca.der,
      signer: counting,
      number: 5n,
      thisUpdate: now,
      nextUpdate: new Date(now.getTime() + DAY),
      entries: [entries],
    });
    expect(crl.der.byteLength).toBeGreaterThan(1024 * 1024);
    expect(streamed).toBe(1);
    const result = await openssl([
      'crl',
      '-inform',
      'DER',
      '-in',
      dir.write('partition.crl', crl.der),
      '-CAfile',
      dir.write('partition-ca.pem', ca.pem),
      '-noout',
      '-verify',
    ]);
    expect(result.output).toContain('verify OK');
  });

  test('an Ed25519 CRL larger than one partition frame is sent in pieces and openssl accepts it', async () => {
    let pieces = 0;
    const signer = {
      ...edCa.signer,
      signStream: async (chunks: AsyncIterable<Uint8Array>) => {
        async function* counted() {
          for await (const chunk of chunks) {
            pieces += 1;
            yield chunk;
          }
        }
        return edCa.signer.signStream!(counted());
      },
    };
    const entries = Array.from({ length: 25_000 }, (_, i) => ({
      serial: (0x50000000 + i).toString(16).padStart(32, '6'),
      revokedAt: new Date(),
      reason: 'keyCompromise' as const,
    }));
    const now = new Date();
    const crl = await buildCrl({
      issuer: edCa.der,
      signer,
      number: 6n,
      thisUpdate: now,
      nextUpdate: new Date(now.getTime() + DAY),
      entries: [entries],
    });
    expect(crl.der.byteLength).toBeGreaterThan(1024 * 1024);
    expect(pieces).toBeGreaterThan(4);
    const result = await openssl([
      'crl',
      '-inform',
      'DER',
      '-in',
      dir.write('partition-ed25519.crl', crl.der),
      '-CAfile',
      dir.write('partition-ed25519-ca.pem', edCa.pem),
      '-noout',
      '-verify',
    ]);
    expect(result.output).toContain('verify OK');
  });

  test('a small CRL goes through subtle.sign', async () => {
    const now = new Date();
    const crl = await buildCrl({
      issuer: ca.der,
      signer: ca.signer,
      number: 6n,
      thisUpdate: now,
      nextUpdate: new Date(now.getTime() + DAY),
    });
    const result = await openssl([
      'crl',
      '-inform',
      'DER',
      '-in',
      dir.write('small.crl', crl.der),
      '-CAfile',
      dir.file('partition-ca.pem'),
      '-noout',
      '-verify',
    ]);
    expect(result.output).toContain('verify OK');
  });

  test('a handle made for certificates is refused for CRLs and OCSP', async () => {
    expect(() => partitionSigner(partitionCrypto, keysByPurpose.certificate, 'crl')).toThrow(/'crl' handle/);
    const now = new Date();
    await expect(
      buildCrl({
        issuer: ca.der,
        signer: { crypto: partitionCrypto, key: keysByPurpose.certificate as never },
        number: 7n,
        thisUpdate: now,
        nextUpdate: new Date(now.getTime() + DAY),
      }),
    ).rejects.toThrow(/'crl' handle/);
    expect(() =>
      createOcspResponder({
        issuers: [
          {
            id: 'p',
            certificate: ca.der,
            signer: { crypto: partitionCrypto, key: keysByPurpose.certificate as never },
          },
        ],
        status: memoryCertificates(),
        clock: { now: () => new Date() },
      }),
    ).toThrow(/'ocsp' handle/);
  });

  test('openssl verifies OCSP responses signed with purpose ocsp; a stopped partition answers tryLater', async () => {
    const leaf = await createLeaf(ca, { signingCrypto: partitionCrypto });
    const certificates = memoryCertificates();
    certificates.add({
      serial: leaf.serial,
      issuerId: 'p',
      notAfter: new Date(Date.now() + DAY),
      status: 'revoked',
      revokedAt: new Date(),
      revocationReason: 'keyCompromise',
    });
    const responder = createOcspResponder({
      issuers: [
        {
          id: 'p',
          certificate: ca.der,
          signer: partitionSigner(partitionCrypto, keysByPurpose.ocsp, 'ocsp'),
        },
      ],
      status: certificates,
      clock: { now: () => new Date() },
    });
    const server = await serveOcsp(responder);
    try {
      const result = await openssl([
        'ocsp',
        '-url',
        server.url,
        '-issuer',
        dir.file('partition-ca.pem'),
        '-cert',
        dir.write('partition-leaf.pem', leaf.pem),
        '-CAfile',
        dir.write('partition-root.pem', root.pem),
      ]);
      expect(result.output).toContain('Response verify OK');
      expect(result.stdout).toContain(': revoked');
    } finally {
      await server.close();
    }
    await partitionProcess.stop();
    const answer = await responder.answer(
      buildOcspRequest({ certIds: [{ issuer: ca, serial: leaf.serial }] }),
    );
    expect(answer.status).toBe('tryLater');
  });
});
