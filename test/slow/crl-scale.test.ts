/**
 * Issue #28 end to end: a running service with four CRL shards and delta CRLs (signet.yaml), its
 * certificates pointing at their shard, a revocation published in its shard's delta CRL, checked
 * by openssl (`-crl_check`, `-use_deltas`) and by Go's crypto/x509 (test/go/crlcheck.go, standard
 * library only); and a 100,000-entry CRL built, signed and read back by both.
 */
import { execFile, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { initDataDir } from '../../src/cli/init.ts';
import { type Serving, serveDataDir } from '../../src/cli/serve.ts';
import { lintCrl } from '../../src/lint/crl.ts';
import { buildCrl, type CrlEntry } from '../../src/revocation/crl-builder.ts';
import { readIssuerFacts } from '../../src/revocation/issuer.ts';
import { hasTool } from '../helpers/tools.ts';
import { createIntermediate, createRoot, crlPem } from '../revocation/helpers/pki.ts';

const run = promisify(execFile);
const haveTools = hasTool('openssl', ['version']) && hasTool('go', ['version']);
const GO_PROGRAM = path.resolve('test/go/crlcheck.go');
const goEnv = {
  ...process.env,
  GOFLAGS: '-mod=mod',
  GOPROXY: 'off',
  GOCACHE: process.env.GOCACHE ?? path.join(tmpdir(), 'signet-go-cache'),
};

interface GoResult {
  file: string;
  number: string;
  entries: number;
  extensions: { oid: string; critical: boolean }[];
}

async function goCheck(issuerPem: string, crls: string[]): Promise<GoResult[]> {
  const { stdout } = await run('go', ['run', GO_PROGRAM, issuerPem, ...crls], {
    env: goEnv,
    maxBuffer: 1 << 20,
  });
  return stdout
    .trim()
    .split('\n')
    .map((line) => JSON.parse(line) as GoResult);
}

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'signet-crl-scale-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe.skipIf(!haveTools)('sharded and delta CRLs on the running service', () => {
  let serving: Serving;
  let adminKey: string;
  let rootFile: string;
  let caFile: string;
  const url = () => serving.server.url;

  beforeAll(async () => {
    const dataDir = path.join(dir, 'data');
    const init = await initDataDir({ dataDir, port: 0, publicUrl: 'http://127.0.0.1:8080', log: () => {} });
    const configFile = path.join(dataDir, 'signet.yaml');
    const config = readFileSync(configFile, 'utf8').replace(
      /\ncrl:\n/,
      '\ncrl:\n  shards: { dev-intermediate: 4 }\n  deltaInterval: PT1H\n',
    );
    expect(config).toContain('deltaInterval: PT1H');
    writeFileSync(configFile, config);
    adminKey = readFileSync(init.adminKeyFile, 'utf8').trim();
    rootFile = init.rootCertificateFile;
    process.env.SIGNET_LOG_LEVEL = 'silent';
    serving = await serveDataDir({ dataDir, port: 0 });
  }, 180_000);
  afterAll(async () => {
    await serving?.stop();
  });

  const api = async (method: string, route: string, body?: unknown) => {
    const response = await fetch(`${url()}${route}`, {
      method,
      headers: { authorization: `Bearer ${adminKey}`, 'content-type': 'application/json' },
      ...(body ? { body: JSON.stringify(body) } : {}),
    });
    return { status: response.status, body: (await response.json()) as Record<string, unknown> };
  };

  async function issue(name: string) {
    const keyFile = path.join(dir, `${name}.key`);
    const csrFile = path.join(dir, `${name}.csr`);
    execFileSync('openssl', [
      'req',
      '-new',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-keyout',
      keyFile,
      '-subj',
      `/CN=${name}.example.com`,
      '-addext',
      `subjectAltName=DNS:${name}.example.com`,
      '-out',
      csrFile,
    ]);
    const issued = await api('POST', '/v1/certificates', {
      csr: readFileSync(csrFile, 'utf8'),
      policy: 'web-server',
    });
    expect([200, 201]).toContain(issued.status);
    const pem = issued.body.certificate as string;
    caFile ??= path.join(dir, 'ca.pem');
    writeFileSync(caFile, (issued.body.chain as string[])[0]!);
    const file = path.join(dir, `${name}.pem`);
    writeFileSync(file, pem);
    const serial = issued.body.serialNumber as string;
    return { serial, file };
  }

  const textOf = (file: string) =>
    execFileSync('openssl', ['x509', '-in', file, '-noout', '-text'], { encoding: 'utf8' });
  const shardOf = (file: string): number => {
    const text = textOf(file);
    const match = /\/crl\/dev-intermediate\/(\d+)\.crl/.exec(text);
    if (!match) throw new Error(`no shard CRL DP in\n${text}`);
    return Number(match[1]);
  };

  async function fetchCrl(route: string, name: string): Promise<string> {
    const response = await fetch(`${url()}${route}`);
    expect(response.status, route).toBe(200);
    const file = path.join(dir, name);
    writeFileSync(file, Buffer.from(await response.arrayBuffer()));
    return file;
  }

  const verify = async (leaf: string, crls: string[], extra: string[] = []) =>
    run('openssl', [
      'verify',
      '-crl_check',
      ...extra,
      '-CAfile',
      rootFile,
      '-untrusted',
      caFile,
      // openssl 3.0's verify reads PEM CRLs only.
      ...crls.flatMap((crl) => {
        writeFileSync(`${crl}.pem`, crlPem(readFileSync(crl)));
        return ['-CRLfile', `${crl}.pem`];
      }),
      leaf,
    ]).then(
      (result) => ({ code: 0, output: result.stdout + result.stderr }),
      (error: { code: number; stdout: string; stderr: string }) => ({
        code: error.code,
        output: error.stdout + error.stderr,
      }),
    );

  test('certificates name their shard; a revocation reaches its shard delta; openssl and Go accept the CRLs', async () => {
    const leaves = [];
    for (let i = 0; i < 12; i++) leaves.push(await issue(`leaf${i}`));
    const shards = leaves.map((leaf) => shardOf(leaf.file));
    expect(new Set(shards).size).toBeGreaterThan(1);
    for (const leaf of leaves) expect(textOf(leaf.file)).toMatch(/\/crl\/dev-intermediate\/\d+\/delta\.crl/);
    const target = leaves[0]!;
    const shard = shards[0]!;
    const sibling = leaves.find((_leaf, i) => i > 0 && shards[i] === shard);
    await serving.runtime.revocation!.scheduler.idle();
    const baseBefore = await fetchCrl(`/crl/dev-intermediate/${shard}.crl`, 'base-before.crl');

    const started = performance.now();
    const revoked = await api('POST', `/v1/certificates/${target.serial}/revoke`, {
      reason: 'keyCompromise',
    });
    expect(revoked.status).toBe(200);
    let deltaFile = '';
    for (;;) {
      deltaFile = await fetchCrl(`/crl/dev-intermediate/${shard}/delta.crl`, 'delta.crl');
      const text = execFileSync('openssl', ['crl', '-inform', 'DER', '-in', deltaFile, '-noout', '-text'], {
        encoding: 'utf8',
      });
      if (text.toUpperCase().includes(target.serial.toUpperCase())) break;
      expect(performance.now() - started).toBeLessThan(5_000);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    // The default coalescing window is 100 ms: the delta follows well within a second.
    expect(performance.now() - started).toBeLessThan(1_000);

    const base = await fetchCrl(`/crl/dev-intermediate/${shard}.crl`, 'base.crl');
    expect(readFileSync(base).equals(readFileSync(baseBefore))).toBe(true);
    const onBase = await verify(target.file, [base]);
    expect(onBase.output).toContain(': OK');
    const withDelta = await verify(target.file, [base, deltaFile], ['-use_deltas']);
    expect(withDelta.code).not.toBe(0);
    expect(withDelta.output).toContain('certificate revoked');
    if (sibling)
      expect((await verify(sibling.file, [base, deltaFile], ['-use_deltas'])).output).toContain(': OK');

    const files = [base, deltaFile];
    for (let s = 0; s < 4; s++) files.push(await fetchCrl(`/crl/dev-intermediate/${s}.crl`, `shard${s}.crl`));
    const results = await goCheck(caFile, files);
    expect(results).toHaveLength(files.length);
    for (const result of results) {
      expect(result.extensions).toContainEqual({ oid: '2.5.29.28', critical: true });
    }
    expect(results[1]!.entries).toBe(1);
    expect(results[1]!.extensions).toContainEqual({ oid: '2.5.29.27', critical: true });
    expect(results[0]!.extensions).toContainEqual({ oid: '2.5.29.46', critical: false });
    // Shard 0 is also served at the unsharded URL; an unknown shard is a 404.
    expect((await fetch(`${url()}/crl/dev-intermediate.crl`)).status).toBe(200);
    expect((await fetch(`${url()}/crl/dev-intermediate/9.crl`)).status).toBe(404);
  });
});

describe.skipIf(!haveTools)('a 100,000-entry CRL', () => {
  test('is built, signed, linted and read back by openssl and Go with every entry', async () => {
    const root = await createRoot();
    const ca = await createIntermediate(root);
    const count = 100_000;
    const revokedAt = new Date(Date.now() - 3_600_000);
    async function* pages(): AsyncIterable<CrlEntry[]> {
      for (let start = 0; start < count; start += 5_000) {
        const page: CrlEntry[] = [];
        for (let i = start; i < start + 5_000; i++) {
          page.push({
            serial: `7f${i.toString(16).padStart(30, '0')}`,
            revokedAt,
            reason: i % 3 === 0 ? 'keyCompromise' : 'unspecified',
            ...(i % 7 === 0 ? { invalidityDate: new Date(revokedAt.getTime() - 86_400_000) } : {}),
          });
        }
        yield page;
      }
    }
    const now = new Date();
    const built = await buildCrl({
      issuer: ca.der,
      signer: ca.signer,
      number: 42n,
      thisUpdate: new Date(now.getTime() - 60_000),
      nextUpdate: new Date(now.getTime() + 86_400_000),
      entries: pages(),
    });
    expect(built.entryCount).toBe(count);
    const findings = lintCrl(tbsOf(built.der), { issuer: readIssuerFacts(ca.der) });
    expect(findings.filter((finding) => finding.severity === 'error')).toEqual([]);
    const crlFile = path.join(dir, 'big.crl');
    writeFileSync(crlFile, built.der);
    const caFile = path.join(dir, 'big-ca.pem');
    writeFileSync(caFile, ca.pem);
    const { stdout } = await run(
      'openssl',
      ['crl', '-inform', 'DER', '-in', crlFile, '-CAfile', caFile, '-noout', '-text'],
      { maxBuffer: 1 << 28 },
    );
    expect(stdout.match(/Serial Number:/g)).toHaveLength(count);
    expect(stdout).toContain(`Serial Number: 7F${(count - 1).toString(16).toUpperCase().padStart(30, '0')}`);
    writeFileSync(path.join(dir, 'big.pem'), crlPem(built.der));
    const [result] = await goCheck(caFile, [crlFile]);
    expect(result!.entries).toBe(count);
    expect(result!.number).toBe('42');
  });
});

/** The TBSCertList inside a CRL (what the linter reads). */
function tbsOf(der: Uint8Array): Uint8Array {
  // SEQUENCE { TBSCertList, ... }: the outer header is 4 or 5 octets for a CRL of this size.
  const outerLength = der[1]! & 0x7f;
  const offset = der[1]! & 0x80 ? 2 + outerLength : 2;
  const lengthOctets = der[offset + 1]! & 0x80 ? der[offset + 1]! & 0x7f : 0;
  let length = lengthOctets ? 0 : der[offset + 1]!;
  for (let i = 0; i < lengthOctets; i++) length = length * 256 + der[offset + 2 + i]!;
  return der.subarray(offset, offset + 2 + lengthOctets + length);
}
