import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initDataDir } from '../../src/cli/init.ts';
import { certificateDer } from '../../src/x509/pem.ts';
import { signDevRootCrl } from '../helpers/dev-root-crl.ts';
import { hasTool } from '../helpers/tools.ts';
import { budget, printTally, runSeed } from './fuzz/mutator.ts';
import { fuzzParser } from './fuzz/parser-fuzz.ts';

/**
 * Issue #34: the parsers behind the API and the CLI, run in a worker thread over mutated real
 * inputs, far more of them than the HTTP suite (fuzz-service.test.ts) can send: the CSR parser,
 * the OCSP request parser, the CRL import (`signet crl import`, POST /v1/issuers/{id}/crl) and
 * the certificate checks of `signet issuer add`. Each may only refuse with its own error type and
 * a message, never accept a changed signed object, and never stall (a watcher stops a thread
 * that makes no progress for 30 s and keeps the input).
 */
const haveOpenssl = hasTool('openssl', ['version']);
const SEED = runSeed();

let dir: string;
let dataDir: string;
const seeds = {
  csr: [] as Uint8Array[],
  ocsp: [] as Uint8Array[],
  crl: [] as Uint8Array[],
  certificate: [] as Uint8Array[],
};
let rootDer: Uint8Array;
let intermediatePublicKey: Uint8Array;

describe.runIf(haveOpenssl || process.env.CI)('parsers under mutated input', () => {
  beforeAll(async () => {
    if (!haveOpenssl) throw new Error('openssl is required in CI');
    dir = mkdtempSync(path.join(tmpdir(), 'signet-fuzz-parsers-'));
    dataDir = path.join(dir, 'data');
    await initDataDir({ dataDir, port: 0, publicUrl: 'http://127.0.0.1:8080', log: () => {} });
    const certs = path.join(dataDir, 'certs');
    rootDer = certificateDer(readFileSync(path.join(certs, 'dev-root.pem'), 'utf8'));
    const intermediate = certificateDer(readFileSync(path.join(certs, 'dev-intermediate.pem'), 'utf8'));
    intermediatePublicKey = new Uint8Array(
      new X509Certificate(intermediate).publicKey.export({ type: 'spki', format: 'der' }),
    );
    seeds.certificate.push(intermediate);
    const openssl = (args: string[]) =>
      new Uint8Array(execFileSync('openssl', args, { stdio: ['ignore', 'pipe', 'ignore'] }));
    for (const key of [
      ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-384'],
      ['-newkey', 'rsa:2048'],
      ['-newkey', 'ed25519'],
    ]) {
      seeds.csr.push(
        openssl([
          'req',
          '-new',
          ...key,
          '-nodes',
          '-keyout',
          '/dev/null',
          '-subj',
          '/CN=www.example.com',
          '-addext',
          'subjectAltName=DNS:www.example.com,IP:192.0.2.1',
          '-outform',
          'DER',
        ]),
      );
    }
    const pem = (name: string) => path.join(certs, `${name}.pem`);
    for (const extra of [['-no_nonce'], [], ['-sha256', '-cert', pem('dev-intermediate')]]) {
      const out = path.join(dir, `ocsp-${seeds.ocsp.length}.der`);
      execFileSync(
        'openssl',
        ['ocsp', '-issuer', pem('dev-root'), '-cert', pem('dev-intermediate'), ...extra, '-reqout', out],
        { stdio: 'ignore' },
      );
      seeds.ocsp.push(new Uint8Array(readFileSync(out)));
    }
    const now = Date.now();
    seeds.crl.push(
      await signDevRootCrl(dataDir, {
        number: 7n,
        thisUpdate: new Date(now - 60_000),
        nextUpdate: new Date(now + 86_400_000),
      }),
    );
  }, 180_000);

  afterAll(() => {
    printTally('fuzz-parsers');
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it.each([
    { target: 'csr' as const, count: 40_000 },
    { target: 'ocsp' as const, count: 40_000 },
    { target: 'crl' as const, count: 15_000 },
    { target: 'certificate' as const, count: 15_000 },
  ])(
    'the $target parser refuses $count mutated inputs with its own error, and accepts no changed signed object',
    async ({ target, count }) => {
      const failures = await fuzzParser({
        target,
        seed: SEED,
        count: budget(count),
        seeds: seeds[target],
        context: {
          keyPublicKey: intermediatePublicKey,
          roots: [rootDer],
          issuerDer: rootDer,
          now: Date.now(),
        },
      });
      expect(failures, `seed ${SEED}`).toEqual([]);
    },
    600_000,
  );
});
