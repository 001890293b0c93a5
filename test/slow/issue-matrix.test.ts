import { execFileSync, spawnSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initDataDir } from '../../src/cli/init.ts';
import { openRuntime, type Runtime } from '../../src/cli/runtime.ts';
import type { KeyAlgorithm } from '../../src/hsm/types.ts';
import { AppError } from '../../src/lib/errors.ts';
import { hasTool } from '../helpers/tools.ts';

/**
 * The issuance path end to end (issue #5): a data folder made by `signet init`, the real
 * partition process, PGlite with the real migrations, the real policies; each certificate checked
 * by three independent verifiers.
 */
const haveOpenssl = hasTool('openssl', ['version']);
const haveCerttool = hasTool('certtool', ['--version']);

const LEAF_KEYS: [string, string[]][] = [
  ['EC P-256', ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256']],
  ['EC P-384', ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-384']],
  ['RSA-2048', ['-newkey', 'rsa:2048']],
  ['RSA-3072', ['-newkey', 'rsa:3072']],
  ['Ed25519', ['-newkey', 'ed25519']],
];

const ISSUER_KEYS: KeyAlgorithm[] = ['ecdsa-p256', 'ecdsa-p384', 'rsa-3072'];
const logger = pino({ level: 'silent' });
const cli = { id: 'cli:test', kind: 'cli' as const, policies: '*' as const };

function makeCsr(dir: string, name: string, keyArgs: string[], subject: string, san: string): Buffer {
  const csrFile = path.join(dir, `${name}.csr`);
  execFileSync('openssl', [
    'req',
    '-new',
    ...keyArgs,
    '-nodes',
    '-keyout',
    path.join(dir, `${name}.key`),
    '-subj',
    subject,
    '-addext',
    `subjectAltName=${san}`,
    '-out',
    csrFile,
    '-outform',
    'DER',
  ]);
  return execFileSync('cat', [csrFile]);
}

describe.skipIf(!haveOpenssl).each(ISSUER_KEYS)('issuing with a %s intermediate', (issuerAlgorithm) => {
  let dir: string;
  let runtime: Runtime;

  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'signet-issue-'));
    await initDataDir({
      dataDir: path.join(dir, 'data'),
      port: 8080,
      publicUrl: 'http://127.0.0.1:8080',
      intermediateAlgorithm: issuerAlgorithm,
    });
    runtime = await openRuntime({ dataDir: path.join(dir, 'data'), logger });
  }, 120_000);

  afterAll(async () => {
    await runtime?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it.each(LEAF_KEYS)('issues a %s leaf that openssl, Node and GnuTLS accept', async (name, keyArgs) => {
    const slug = name.replace(/\W/g, '').toLowerCase();
    const host = `${slug}.example.com`;
    const csr = makeCsr(dir, slug, keyArgs, `/CN=${host}`, `DNS:${host},IP:192.0.2.7`);
    const issued = await runtime.ca.issue({ csr: new Uint8Array(csr), policy: 'web-server', requester: cli });

    const leafFile = path.join(dir, `${slug}.pem`);
    const chainFile = path.join(dir, `${slug}-chain.pem`);
    writeFileSync(leafFile, issued.certificatePem);
    writeFileSync(chainFile, issued.chainPem.join(''));
    const rootFile = path.join(dir, 'data', 'certs', 'dev-root.pem');

    const openssl = spawnSync(
      'openssl',
      [
        'verify',
        '-x509_strict',
        '-purpose',
        'sslserver',
        '-CAfile',
        rootFile,
        '-untrusted',
        chainFile,
        leafFile,
      ],
      { encoding: 'utf8' },
    );
    expect(openssl.stdout + openssl.stderr).toContain(`${leafFile}: OK`);
    expect(openssl.status).toBe(0);

    const leaf = new X509Certificate(issued.certificatePem);
    const intermediate = new X509Certificate(issued.chainPem[0]!);
    expect(leaf.checkIssued(intermediate)).toBe(true);
    expect(leaf.verify(intermediate.publicKey)).toBe(true);
    expect(leaf.checkHost(host)).toBe(host);
    expect(leaf.checkHost('other.example.com')).toBeUndefined();
    expect(leaf.checkIP('192.0.2.7')).toBe('192.0.2.7');
    expect(leaf.serialNumber.toLowerCase().replace(/^0+/, '')).toBe(issued.serialNumber.replace(/^0+/, ''));
    // The issuer's key picks the signature algorithm, never the CSR (NOTES.md "CSRs").
    const expectedSignature = issuerAlgorithm === 'ecdsa-p384' ? 'SHA384' : 'SHA256';
    expect(
      execFileSync('openssl', ['x509', '-in', leafFile, '-noout', '-text'], { encoding: 'utf8' }),
    ).toMatch(new RegExp(`Signature Algorithm: \\S*${expectedSignature}`, 'i'));

    if (haveCerttool) {
      const bundle = path.join(dir, `${slug}-bundle.pem`);
      writeFileSync(bundle, issued.certificatePem + issued.chainPem.join(''));
      const gnutls = spawnSync(
        'certtool',
        ['--verify', '--load-ca-certificate', rootFile, '--infile', bundle],
        {
          encoding: 'utf8',
        },
      );
      expect(gnutls.stdout).toContain('Chain verification output: Verified.');
      expect(gnutls.status).toBe(0);
    }

    const stored = await runtime.repositories.certificates.findBySerial(issued.serialNumber);
    expect(stored?.status).toBe('good');
    expect(Buffer.from(stored!.der!).equals(Buffer.from(issued.certificateDer))).toBe(true);
  });

  it('refuses a name the policy does not allow, names the rule, and stores nothing', async () => {
    const csr = makeCsr(dir, 'evil', LEAF_KEYS[0]![1], '/CN=www.example.net', 'DNS:www.example.net');
    const before = await runtime.repositories.certificates.countByStatus();
    const refusal = await runtime.ca
      .issue({ csr: new Uint8Array(csr), policy: 'web-server', requester: cli })
      .catch((error: unknown) => error);
    expect(refusal).toBeInstanceOf(AppError);
    expect((refusal as AppError).code).toBe('policy.refused');
    const violations = (refusal as AppError).details?.violations as { code: string; value: string }[];
    expect(violations.map((v) => v.value)).toContain('www.example.net');
    expect(await runtime.repositories.certificates.countByStatus()).toEqual(before);
  });
  it.runIf(issuerAlgorithm === 'ecdsa-p256')(
    'yields 200 certificates with 200 distinct serials under concurrency, every one stored as good',
    async () => {
      const csr = makeCsr(dir, 'many', LEAF_KEYS[0]![1], '/CN=many.example.com', 'DNS:many.example.com');
      const before = await runtime.repositories.certificates.countByStatus();
      const issued = await Promise.all(
        Array.from({ length: 200 }, () =>
          runtime.ca.issue({ csr: new Uint8Array(csr), policy: 'web-server', requester: cli }),
        ),
      );
      expect(new Set(issued.map((i) => i.serialNumber)).size).toBe(200);
      const after = await runtime.repositories.certificates.countByStatus();
      expect(after.good - before.good).toBe(200);
      expect(after.pending).toBe(0);
    },
  );
});
