import { execFile, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { createApp } from '../../src/api/app.ts';
import { createLogger } from '../../src/api/logger.ts';
import { type RunningServer, startServer } from '../../src/api/server.ts';
import { initDataDir } from '../../src/cli/init.ts';
import { openRuntime, type Runtime } from '../../src/cli/runtime.ts';
import { createCrlsRepository } from '../../src/db/crls.repository.ts';
import { openDatabase } from '../../src/db/database.ts';
import { fixedClock } from '../../src/lib/clock.ts';
import { decodePem } from '../../src/x509/pem.ts';
import { signDevRootCrl } from '../helpers/dev-root-crl.ts';
import { hasTool } from '../helpers/tools.ts';
import { crlPem } from './helpers/pki.ts';

/**
 * Issue #18 on a data folder made by `signet init` and the service runtime `signet serve` runs:
 * the dev root's CRL is served at the URL the intermediate names, so `openssl verify
 * -crl_check_all` (revocation checked along the whole chain) accepts a fresh leaf, and still does
 * two days later; the crl ceremony on the dev root's partition numbers its CRL after the one served,
 * and `signet crl import` publishes it through the running server, or on the folder when no server
 * holds it. The CA's clock is injected; openssl checks at that time.
 */
const haveOpenssl = hasTool('openssl', ['version']);
const execFileAsync = promisify(execFile);
const DAY = 86_400_000;

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer();
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

describe.skipIf(!haveOpenssl)("the dev root's CRL", () => {
  let dir: string;
  let dataDir: string;
  let runtime: Runtime | undefined;
  let server: RunningServer | undefined;
  let baseUrl: string;
  const clock = fixedClock(new Date(Math.floor(Date.now() / 1000) * 1000));
  const file = (name: string) => path.join(dir, name);

  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'signet-root-crl-'));
    dataDir = file('data');
    const port = await freePort();
    baseUrl = `http://127.0.0.1:${port}`;
    await initDataDir({ dataDir, port, publicUrl: baseUrl, clock });
    // What `signet serve` runs, with this test's clock.
    const logger = createLogger({ level: 'silent' });
    runtime = await openRuntime({ dataDir, clock, revocation: true, logger });
    const r = runtime;
    const app = createApp({
      clock,
      logger,
      ca: r.ca,
      apiKeys: r.repositories.apiKeys,
      idempotency: r.repositories.idempotency,
      certificates: r.repositories.certificates,
      issuers: r.repositories.issuers,
      policies: r.policies,
      audit: r.repositories.audit,
      readiness: { database: () => r.database.ping(), partition: async () => ({ state: 'unsealed' }) },
      revocation: r.revocation!,
    });
    server = await startServer(app, { host: '127.0.0.1', port });
    await r.revocation!.scheduler.idle();

    // A leaf from this fresh CA, through the same issuing core `signet issue` uses.
    spawnSync('openssl', [
      'req',
      '-new',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-keyout',
      file('leaf.key'),
      '-subj',
      '/CN=www.example.com',
      '-addext',
      'subjectAltName=DNS:www.example.com',
      '-out',
      file('leaf.csr'),
    ]);
    const issued = await r.ca.issue({
      csr: new Uint8Array(readFileSync(file('leaf.csr'))),
      policy: 'web-server',
      requester: { id: 'test', kind: 'cli', policies: '*' },
    });
    writeFileSync(file('leaf.pem'), issued.certificatePem);
    writeFileSync(file('intermediate.pem'), issued.chainPem.join(''));
    writeFileSync(file('root.pem'), readFileSync(path.join(dataDir, 'certs', 'dev-root.pem')));
  }, 180_000);

  afterAll(async () => {
    await server?.close(1000);
    await runtime?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** The CRL distribution point a certificate names (RFC 5280 §4.2.1.13), as openssl reads it. */
  const distributionPoint = (certificate: string) => {
    const text = spawnSync(
      'openssl',
      ['x509', '-in', file(certificate), '-noout', '-ext', 'crlDistributionPoints'],
      {
        encoding: 'utf8',
      },
    ).stdout;
    return /URI:(\S+)/.exec(text)?.[1];
  };

  /** Fetches a CRL over HTTP from the listening server, writes it as PEM and answers its DER. */
  const fetchCrl = async (url: string, name: string) => {
    const response = await fetch(url);
    expect(response.status, url).toBe(200);
    const der = new Uint8Array(await response.arrayBuffer());
    writeFileSync(file(name), crlPem(der));
    return der;
  };

  /** openssl verify with revocation checked for every certificate in the chain, at `at`. */
  const verify = (crls: string[], at: Date) => {
    const result = spawnSync(
      'openssl',
      [
        'verify',
        '-crl_check_all',
        '-attime',
        String(Math.floor(at.getTime() / 1000)),
        '-CAfile',
        file('root.pem'),
        '-untrusted',
        file('intermediate.pem'),
        ...crls.flatMap((crl) => ['-CRLfile', file(crl)]),
        file('leaf.pem'),
      ],
      { encoding: 'utf8' },
    );
    return { ok: result.status === 0, output: `${result.stdout}${result.stderr}` };
  };

  const crlText = (name: string) =>
    spawnSync('openssl', ['crl', '-in', file(name), '-noout', '-text'], { encoding: 'utf8' }).stdout;

  const rootPartitionCrlSignatures = () =>
    readFileSync(path.join(dataDir, 'hsm', 'root', 'audit.log'), 'utf8')
      .split('\n')
      .filter((line) => line.includes('"op":"sign"') && line.includes('"purpose":"crl"')).length;

  it('is served at the URL the intermediate names, so openssl -crl_check_all accepts a fresh leaf', async () => {
    expect(distributionPoint('intermediate.pem')).toBe(`${baseUrl}/crl/dev-root.crl`);
    expect(distributionPoint('leaf.pem')).toBe(`${baseUrl}/crl/dev-intermediate.crl`);
    await fetchCrl(distributionPoint('intermediate.pem')!, 'root.crl');
    await fetchCrl(distributionPoint('leaf.pem')!, 'intermediate.crl');
    expect(crlText('root.crl')).toMatch(/X509v3 CRL Number: \n\s*1\n/);
    expect(crlText('root.crl')).toContain('Only CA Certificates');
    // Valid for a year from init.
    const next = /Next Update: (.+)/.exec(crlText('root.crl'))![1]!;
    expect(Date.parse(next) - clock.now().getTime()).toBe(365 * DAY);

    const both = verify(['root.crl', 'intermediate.crl'], clock.now());
    expect(both.output).toContain('leaf.pem: OK');
    expect(both.ok).toBe(true);
    // What every leaf got before: without the root's CRL, the chain is refused.
    const withoutRoot = verify(['intermediate.crl'], clock.now());
    expect(withoutRoot.ok).toBe(false);
    expect(withoutRoot.output).toContain('unable to get certificate CRL');
  });

  it('still verifies two days on: the running CA has renewed its own CRL and serves the root CRL it never re-signs', async () => {
    const rootBefore = readFileSync(file('root.crl'), 'utf8');
    writeFileSync(file('intermediate-day0.crl'), readFileSync(file('intermediate.crl')));
    clock.advance(2 * DAY);
    // The scheduler's rescan (every minute on a real server) finds the CRL past its half-life and
    // makes a new one at once (its timer counts real time, which this test did not spend).
    const scheduler = runtime!.revocation!.scheduler;
    await scheduler.refresh();
    const deadline = Date.now() + 20_000;
    while (scheduler.status()[0]?.lastPublished?.thisUpdate.getTime() !== clock.now().getTime()) {
      if (Date.now() > deadline) throw new Error('no new intermediate CRL after the rescan');
      await new Promise((resolve) => setTimeout(resolve, 50));
      await scheduler.idle();
    }
    await fetchCrl(`${baseUrl}/crl/dev-root.crl`, 'root.crl');
    await fetchCrl(`${baseUrl}/crl/dev-intermediate.crl`, 'intermediate.crl');
    expect(readFileSync(file('root.crl'), 'utf8')).toBe(rootBefore);
    const last = /Last Update: (.+)/.exec(crlText('intermediate.crl'))![1]!;
    expect(Date.parse(last)).toBe(clock.now().getTime());

    const later = verify(['root.crl', 'intermediate.crl'], clock.now());
    expect(later.output).toContain('leaf.pem: OK');
    expect(later.ok).toBe(true);
    // The day-0 intermediate CRL (a day of validity) would not have done.
    const stale = verify(['root.crl', 'intermediate-day0.crl'], clock.now());
    expect(stale.ok).toBe(false);
    expect(stale.output).toContain('CRL has expired');
    // The only CRL the root partition ever signed is init's.
    expect(rootPartitionCrlSignatures()).toBe(1);
    expect(runtime!.revocation!.scheduler.status().map((s) => s.issuerId)).toEqual(['dev-intermediate']);
  });

  const signet = async (args: string[]) => {
    try {
      const { stdout, stderr } = await execFileAsync(process.execPath, ['bin/signet.js', ...args], {
        encoding: 'utf8',
        timeout: 60_000,
        env: { ...process.env, SIGNET_API_KEY: '', SIGNET_LOG_LEVEL: 'silent' },
      });
      return { status: 0, stdout, stderr };
    } catch (error) {
      const failed = error as { code: number; stdout: string; stderr: string };
      return { status: failed.code, stdout: failed.stdout, stderr: failed.stderr };
    }
  };
  // The CLI runs on the real clock; the CRLs it imports start a minute before it.
  const nextRootCrl = async (number: bigint, name: string) => {
    const now = Date.now();
    const der = await signDevRootCrl(dataDir, {
      number,
      thisUpdate: new Date(now - 60_000),
      nextUpdate: new Date(now + 365 * DAY),
    });
    writeFileSync(file(name), crlPem(der));
    return der;
  };

  it("the crl ceremony on the dev root's partition follows the CRL served, and signet crl import publishes it through the running server", async () => {
    // The routine of README "Root CRLs": fetch the CRL served, run the crl ceremony after it.
    writeFileSync(file('served-root.crl'), await fetchCrl(`${baseUrl}/crl/dev-root.crl`, 'root.crl'));
    const secrets = (name: string) => path.join(dataDir, 'secrets', name);
    const common = {
      'policy-url': 'https://example.com/cps#section-4.9.7',
      participants: [{ name: 'Alice Example', role: 'ceremony administrator' }],
    };
    // The dev root's certificate does not allow digitalSignature, so a key of its partition made
    // for the purpose signs the transcripts (ceremonies/README.md, transcript.signing-key).
    writeFileSync(
      file('transcript-key.yaml'),
      stringify({
        'ceremony-type': 'key',
        ...common,
        partition: { dir: 'data/hsm/root', name: 'root' },
        key: { label: 'dev-root-transcripts', type: 'ecdsa', 'ecdsa-curve': 'P-256' },
        outputs: { 'public-key-path': 'dev-root-transcripts.pem' },
        transcript: { path: 'transcripts/transcript-key.json' },
      }),
    );
    const now = Math.floor(Date.now() / 1000) * 1000;
    const iso = (ms: number) => new Date(ms).toISOString().replace('.000Z', 'Z');
    writeFileSync(
      file('root-crl.yaml'),
      stringify({
        'ceremony-type': 'crl',
        ...common,
        'offline-partition': { dir: 'data/hsm/root', name: 'root' },
        issuer: { 'key-label': 'dev-root', 'certificate-path': 'data/certs/dev-root.pem' },
        'crl-profile': {
          'this-update': iso(now),
          'next-update': iso(now + 365 * DAY),
          'previous-crl-path': 'served-root.crl',
        },
        outputs: { 'crl-path': 'root-2.crl' },
        transcript: { path: 'transcripts/root-crl.json', 'signing-key': 'dev-root-transcripts' },
      }),
    );
    const unseal = ['--secret-file', secrets('unseal-root'), '--pin-file', secrets('pin-root-ca')];
    const key = await signet([
      'ceremony',
      'run',
      file('transcript-key.yaml'),
      '--output-dir',
      dir,
      '--allow-network',
      '--officer-pin-file',
      secrets('offline/pin-root-officer'),
      ...unseal,
    ]);
    expect(key.stdout).toContain('Ceremony completed');
    const ceremony = await signet([
      'ceremony',
      'run',
      file('root-crl.yaml'),
      '--output-dir',
      dir,
      '--allow-network',
      ...unseal,
    ]);
    expect(ceremony.stdout).toContain('Build CRL number 2 ');
    expect(ceremony.stdout).toContain('Ceremony completed');
    const der = decodePem(readFileSync(file('root-2.crl'), 'utf8'), 'X509 CRL').der;

    const imported = await signet([
      'crl',
      'import',
      '--data',
      dataDir,
      '--issuer',
      'dev-root',
      file('root-2.crl'),
    ]);
    expect(imported.stderr).toBe('');
    expect(imported.status).toBe(0);
    expect(JSON.parse(imported.stdout)).toMatchObject({ issuer: 'dev-root', crlNumber: '2', entries: 0 });
    expect(
      Buffer.from(await fetchCrl(`${baseUrl}/crl/dev-root.crl`, 'root.crl')).equals(Buffer.from(der)),
    ).toBe(true);
    const audit = await runtime!.repositories.audit.list({ action: 'crl.import' });
    expect(audit.items.map((e) => [e.actor.startsWith('apikey:'), e.decision])).toEqual([[true, 'allowed']]);
    expect(verify(['root.crl', 'intermediate.crl'], clock.now()).ok).toBe(true);
  }, 60_000);

  it('and writes to the data folder directly once no server runs, refusing what it must', async () => {
    await server!.close(1000);
    server = undefined;
    await runtime!.close();
    runtime = undefined;
    await nextRootCrl(3n, 'root-3.crl');
    const args = ['crl', 'import', '--data', dataDir, '--issuer', 'dev-root', file('root-3.crl')];
    const imported = await signet(args);
    expect(imported.status).toBe(0);
    expect(JSON.parse(imported.stdout)).toMatchObject({ issuer: 'dev-root', crlNumber: '3' });
    const again = await signet(args);
    expect(again.status).toBe(1);
    expect(again.stderr).toContain('crl.number_not_increasing');
    expect((await signet(['crl', 'import', '--issuer', 'dev-root'])).status).toBe(2);

    const database = await openDatabase({ dataDir });
    try {
      const stored = await createCrlsRepository({ db: database.db }).getLatestInfo('dev-root', 0, 'full');
      expect(stored).toMatchObject({ crlNumber: 3n, imported: true });
    } finally {
      await database.close();
    }
  }, 90_000);

  it("never signs a root's CRL online, even when the server opens the root's partition", async () => {
    const config = path.join(dataDir, 'signet.yaml');
    const original = readFileSync(config, 'utf8');
    const doc = parse(original);
    doc.partitions.root = {
      dir: 'hsm/root',
      socket: 'hsm/root.sock',
      unsealSecretFile: 'secrets/unseal-root',
      pinFile: 'secrets/pin-root-ca',
    };
    writeFileSync(config, stringify(doc));
    const signedBefore = rootPartitionCrlSignatures();
    try {
      runtime = await openRuntime({
        dataDir,
        clock,
        revocation: true,
        logger: createLogger({ level: 'silent' }),
      });
      // The root is loaded (it could sign), but it is not among the issuers the CRL scheduler keeps.
      expect(runtime.issuers.get('dev-root')).toBeDefined();
      await runtime.revocation!.scheduler.idle();
      await runtime.revocation!.scheduler.publishNow('dev-root');
      expect(runtime.revocation!.scheduler.status().map((s) => s.issuerId)).toEqual(['dev-intermediate']);
      expect((await runtime.repositories.crls.getLatestInfo('dev-root', 0, 'full'))?.crlNumber).toBe(3n);
      await runtime.close();
      runtime = undefined;
      expect(rootPartitionCrlSignatures()).toBe(signedBefore);
    } finally {
      writeFileSync(config, original);
    }
  }, 60_000);
});
