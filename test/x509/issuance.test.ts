import { webcrypto, X509Certificate } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, test } from 'vitest';
import { lintCertificate, signCertificate } from '../../src/issuance/token.ts';
import { systemClock } from '../../src/lib/clock.ts';
import { buildTbsCertificate, generateSerial } from '../../src/x509/certificate.ts';
import { parseCsr } from '../../src/x509/csr.ts';
import { certificateToPem } from '../../src/x509/pem.ts';
import { hasTool } from '../helpers/tools.ts';
import {
  createTestChain,
  generateTestKey,
  leafTemplate,
  opensslCsr,
  run,
  type TestChain,
  type TestKey,
  type TestKeyName,
  tempDir,
} from './fixtures.ts';

const haveOpenssl = hasTool('openssl', ['version']);
const haveCerttool = hasTool('certtool', ['--version']);

const LEAF_KEYS: TestKeyName[] = ['ecdsa-p256', 'ecdsa-p384', 'rsa-2048', 'rsa-3072', 'ed25519'];
const ISSUER_KEYS: TestKeyName[] = ['ecdsa-p256', 'ecdsa-p384', 'rsa-3072'];
const EXPECTED_SIGNATURE: Record<string, string> = {
  'ecdsa-p256': 'ecdsa-with-SHA256',
  'ecdsa-p384': 'ecdsa-with-SHA384',
  'rsa-3072': 'sha256WithRSAEncryption',
};

const leafKeys = new Map<TestKeyName, TestKey>();
const chains = new Map<TestKeyName, TestChain>();
let dir: string;

beforeAll(async () => {
  dir = tempDir('signet-issuance-');
  const keys = await Promise.all(
    [...LEAF_KEYS, ...ISSUER_KEYS, 'ecdsa-p384'].map((name) => generateTestKey(name as TestKeyName)),
  );
  for (const [i, name] of LEAF_KEYS.entries()) leafKeys.set(name, keys[i]!);
  const rootKey = keys[keys.length - 1]!;
  for (const [i, name] of ISSUER_KEYS.entries()) {
    chains.set(name, await createTestChain(rootKey, keys[LEAF_KEYS.length + i]!));
  }
}, 120_000);

const matrix = ISSUER_KEYS.flatMap((issuer) => LEAF_KEYS.map((leaf) => [issuer, leaf] as const));

describe.skipIf(!haveOpenssl)('issued certificates are accepted by independent verifiers', () => {
  test.each(matrix)(
    'a %s intermediate issues a %s leaf that OpenSSL, Node and GnuTLS accept',
    async (issuerName, leafName) => {
      const chain = chains.get(issuerName)!;
      const leafKey = leafKeys.get(leafName)!;
      // A real request from OpenSSL, through intake, builder, linter and token.
      const csr = parseCsr(
        opensslCsr(leafKey, '/CN=www.example.com', 'DNS:www.example.com,DNS:example.com,IP:192.0.2.7'),
      );
      const template = leafTemplate(
        { spki: csr.publicKey, name: csr.keyAlgorithm },
        {
          subject: csr.subject,
          sans: csr.sans,
          keyUsage: ['digitalSignature', 'keyEncipherment'],
          extendedKeyUsage: ['serverAuth', 'clientAuth'],
        },
      );
      const built = buildTbsCertificate(template, chain.issuer, {
        serial: generateSerial(),
        clock: systemClock,
      });
      const lint = lintCertificate(built.der, { issuer: chain.issuer, profile: 'leaf' });
      expect(lint.findings).toEqual([]);
      if (!lint.ok) throw new Error('lint refused');
      const der = await signCertificate(lint.token, {
        crypto: webcrypto,
        key: chain.issuerKey.pair.privateKey,
      });

      const leafFile = join(dir, `${issuerName}-${leafName}.pem`);
      const rootFile = join(dir, `root-${issuerName}.pem`);
      const intermediateFile = join(dir, `intermediate-${issuerName}.pem`);
      writeFileSync(leafFile, certificateToPem(der));
      writeFileSync(rootFile, chain.root.pem);
      writeFileSync(intermediateFile, chain.intermediate.pem);

      const openssl = run('openssl', [
        'verify',
        '-x509_strict',
        '-purpose',
        'sslserver',
        '-verify_hostname',
        'www.example.com',
        '-CAfile',
        rootFile,
        '-untrusted',
        intermediateFile,
        leafFile,
      ]);
      expect(openssl.output).toContain(`${leafFile}: OK`);
      expect(openssl.status).toBe(0);

      const leaf = new X509Certificate(der);
      const intermediate = new X509Certificate(chain.intermediate.der);
      const root = new X509Certificate(chain.root.der);
      expect(leaf.checkIssued(intermediate)).toBe(true);
      expect(leaf.verify(intermediate.publicKey)).toBe(true);
      expect(intermediate.verify(root.publicKey)).toBe(true);
      expect(root.verify(root.publicKey)).toBe(true);
      expect(leaf.checkHost('www.example.com')).toBe('www.example.com');
      expect(leaf.checkIP('192.0.2.7')).toBe('192.0.2.7');
      expect(leaf.checkHost('www.example.net')).toBeUndefined();
      expect(leaf.serialNumber.toLowerCase()).toBe(built.serialNumber);
      expect(leaf.ca).toBe(false);
      expect(intermediate.ca).toBe(true);

      const text = run('openssl', ['x509', '-in', leafFile, '-noout', '-text']).output;
      expect(text).toContain(`Signature Algorithm: ${EXPECTED_SIGNATURE[issuerName]}`);

      if (haveCerttool) {
        const chainFile = join(dir, `chain-${issuerName}-${leafName}.pem`);
        writeFileSync(chainFile, certificateToPem(der) + chain.intermediate.pem);
        const gnutls = run('certtool', [
          '--verify',
          '--load-ca-certificate',
          rootFile,
          '--infile',
          chainFile,
          '--verify-hostname',
          'www.example.com',
          '--verify-purpose',
          '1.3.6.1.5.5.7.3.1',
        ]);
        expect(gnutls.output).toMatch(/Chain verification output: Verified\./);
        expect(gnutls.status).toBe(0);
      }
    },
  );

  test('a leaf for a name the verifier does not ask for fails hostname verification (the checks can fail)', async () => {
    const chain = chains.get('ecdsa-p256')!;
    const key = leafKeys.get('ecdsa-p256')!;
    const built = buildTbsCertificate(
      leafTemplate(key, { subject: [], sans: [{ type: 'dns', value: 'other.example.com' }] }),
      chain.issuer,
      {
        serial: generateSerial(),
        clock: systemClock,
      },
    );
    const lint = lintCertificate(built.der, { issuer: chain.issuer, profile: 'leaf' });
    if (!lint.ok) throw new Error(JSON.stringify(lint.findings));
    const der = await signCertificate(lint.token, {
      crypto: webcrypto,
      key: chain.issuerKey.pair.privateKey,
    });
    const leafFile = join(dir, 'other.pem');
    writeFileSync(leafFile, certificateToPem(der));
    writeFileSync(join(dir, 'root.pem'), chain.root.pem);
    writeFileSync(join(dir, 'int.pem'), chain.intermediate.pem);
    const openssl = run('openssl', [
      'verify',
      '-x509_strict',
      '-verify_hostname',
      'www.example.com',
      '-CAfile',
      join(dir, 'root.pem'),
      '-untrusted',
      join(dir, 'int.pem'),
      leafFile,
    ]);
    expect(openssl.status).not.toBe(0);
    expect(openssl.output).toMatch(/hostname mismatch/);
    // The empty subject made the SAN critical, which strict verifiers accept.
    expect(run('openssl', ['x509', '-in', leafFile, '-noout', '-ext', 'subjectAltName']).output).toMatch(
      /critical/,
    );
  });

  test.each(ISSUER_KEYS)(
    'the %s intermediate and the root pass openssl -x509_strict as CAs',
    (issuerName) => {
      const chain = chains.get(issuerName)!;
      const rootFile = join(dir, `root-ca-${issuerName}.pem`);
      const intermediateFile = join(dir, `intermediate-ca-${issuerName}.pem`);
      writeFileSync(rootFile, chain.root.pem);
      writeFileSync(intermediateFile, chain.intermediate.pem);
      const result = run('openssl', ['verify', '-x509_strict', '-CAfile', rootFile, intermediateFile]);
      expect(result.output).toContain(': OK');
      expect(run('openssl', ['verify', '-x509_strict', '-CAfile', rootFile, rootFile]).output).toContain(
        ': OK',
      );
    },
  );
});
