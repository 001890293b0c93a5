import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initDataDir } from '../../src/cli/init.ts';
import { createEmptyPostgresDatabase, postgresAvailable } from '../helpers/database.ts';
import { hasTool } from '../helpers/tools.ts';

/**
 * Issue #6's crash test: kill -9 the issuing process while many issuances are in flight; then
 * `signet audit reconcile` must account for every signature the partition made, no serial may
 * appear twice, every certificate a client received must be stored, and the CA must start again.
 * Run on the embedded default, and on PostgreSQL with two HTTP workers (issue #24), where every
 * process of the node (primary and workers) is killed at once.
 */
const SIGNET = path.resolve('bin/signet.js');
const haveOpenssl = hasTool('openssl', ['version']);

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer();
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

interface Variant {
  name: string;
  workers: number;
  postgres: boolean;
}

const VARIANTS: Variant[] = [
  { name: 'the embedded database', workers: 1, postgres: false },
  { name: 'PostgreSQL with --workers 2', workers: 2, postgres: true },
];

function serve(dataDir: string, port: number, variant: Variant, env: NodeJS.ProcessEnv): ChildProcess {
  return spawn(
    process.execPath,
    [SIGNET, 'serve', '--data', dataDir, '--port', String(port), '--workers', String(variant.workers)],
    { stdio: ['ignore', 'ignore', 'pipe'], env: { ...env, SIGNET_LOG_LEVEL: 'warn' } },
  );
}

/** SIGKILL to the process and every HTTP worker it forked, at once: no handler runs anywhere. */
function killNode(server: ChildProcess): void {
  const workers = spawnSync('pgrep', ['-P', String(server.pid), '-f', ' serve --data '], {
    encoding: 'utf8',
  });
  for (const pid of workers.stdout.split(/\s+/).filter(Boolean)) process.kill(Number(pid), 'SIGKILL');
  server.kill('SIGKILL');
}

async function waitReady(port: number, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      const response = await fetch(`http://127.0.0.1:${port}/readyz`);
      if (response.status === 200) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error('the server did not become ready');
}

describe.each(VARIANTS)('kill -9 during concurrent issuance ($name)', (variant) => {
  const available = haveOpenssl && (!variant.postgres || postgresAvailable());
  let dir: string;
  let dataDir: string;
  let csr: Buffer;
  let apiKey: string;
  let env: NodeJS.ProcessEnv = { ...process.env };
  let database: { url: string; drop(): Promise<void> } | undefined;

  beforeAll(async () => {
    if (!available) return;
    dir = mkdtempSync(path.join(tmpdir(), 'signet-crash-'));
    dataDir = path.join(dir, 'data');
    env = { ...process.env };
    delete env.DATABASE_URL;
    if (variant.postgres) {
      database = await createEmptyPostgresDatabase();
      env.DATABASE_URL = database.url;
    }
    await initDataDir({
      dataDir,
      port: 8080,
      publicUrl: 'http://127.0.0.1:8080',
      ...(database ? { databaseUrl: database.url } : {}),
    });
    apiKey = readFileSync(path.join(dataDir, 'secrets', 'admin-api-key'), 'utf8').trim();
    spawnSync('openssl', [
      'req',
      '-new',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-keyout',
      path.join(dir, 'k.pem'),
      '-subj',
      '/CN=crash.example.com',
      '-addext',
      'subjectAltName=DNS:crash.example.com',
      '-outform',
      'DER',
      '-out',
      path.join(dir, 'c.der'),
    ]);
    csr = readFileSync(path.join(dir, 'c.der'));
  }, 120_000);

  afterAll(async () => {
    if (dir) rmSync(dir, { recursive: true, force: true });
    await database?.drop();
  });

  it.skipIf(!available)(
    'leaves every signature accounted for, no serial twice, and a CA that starts again',
    async () => {
      const port = await freePort();
      const server = serve(dataDir, port, variant, env);
      await waitReady(port);

      const received: string[] = [];
      let stop = false;
      const worker = async () => {
        while (!stop) {
          try {
            const response = await fetch(`http://127.0.0.1:${port}/v1/certificates?policy=web-server`, {
              method: 'POST',
              headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/pkcs10' },
              body: csr,
            });
            if (response.status === 201)
              received.push(((await response.json()) as { certificate: string }).certificate);
          } catch {
            return; // the server is gone
          }
        }
      };
      const workers = Array.from({ length: 24 }, worker);
      // Let issuances run, then kill the CA mid-stream with SIGKILL: no handler runs.
      while (received.length < 50) await new Promise((r) => setTimeout(r, 50));
      const exited = new Promise((r) => server.once('exit', r));
      killNode(server);
      await exited;
      stop = true;
      await Promise.all(workers);
      expect(received.length).toBeGreaterThanOrEqual(50);

      // The partition child notices its parent is gone (its stdin closes) and exits; wait for it.
      for (let i = 0; i < 100; i++) {
        const ps = spawnSync('pgrep', [
          '-f',
          `hsm serve --socket ${path.join(dataDir, 'hsm', 'issuing.sock')}`,
        ]);
        if (ps.status !== 0) break;
        await new Promise((r) => setTimeout(r, 200));
      }

      const reconcile = (...extra: string[]) =>
        spawnSync(
          process.execPath,
          [SIGNET, 'audit', 'reconcile', '--data', dataDir, '--grace', 'PT0S', '--json', ...extra],
          { encoding: 'utf8', timeout: 120_000, env },
        );
      const first = reconcile();
      // Standard output is the JSON report and nothing else (issue #17).
      const report = JSON.parse(first.stdout);
      expect(report.signedWithoutRecord).toEqual([]);
      expect(report.certificatesWithoutSignature).toEqual([]);
      expect(report.signaturesExamined).toBeGreaterThanOrEqual(received.length);
      if (report.signedButNotStored.length === 0) {
        expect(first.stderr).toBe('');
        expect(first.status).toBe(0);
      } else {
        // Signed when the CA died, never stored: exit 1, and the way to put them on the CRL.
        expect(first.status).toBe(1);
        expect(first.stderr).toContain('--revoke-unstored');
        const repaired = reconcile('--revoke-unstored');
        expect(JSON.parse(repaired.stdout).unstoredRevoked).toHaveLength(report.signedButNotStored.length);
        expect(repaired.status).toBe(0);
      }

      // Restart: PGlite survived the kill, the partition's lock is recovered, and every
      // certificate a client received is there, good, under a serial seen once.
      const again = serve(dataDir, port, variant, env);
      try {
        await waitReady(port);
        const serials = new Set<string>();
        let cursor: string | null = null;
        do {
          const url = `http://127.0.0.1:${port}/v1/certificates?limit=500${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`;
          const page = (await (
            await fetch(url, { headers: { authorization: `Bearer ${apiKey}` } })
          ).json()) as {
            items: { serialNumber: string }[];
            nextCursor: string | null;
          };
          for (const item of page.items) {
            expect(serials.has(item.serialNumber)).toBe(false);
            serials.add(item.serialNumber);
          }
          cursor = page.nextCursor;
        } while (cursor);
        for (const pem of received) {
          const serial = new X509Certificate(pem).serialNumber.toLowerCase();
          const response = await fetch(`http://127.0.0.1:${port}/v1/certificates/${serial}`, {
            headers: { authorization: `Bearer ${apiKey}` },
          });
          expect(response.status).toBe(200);
          expect(((await response.json()) as { status: string }).status).toBe('valid');
        }
      } finally {
        again.kill('SIGTERM');
        await new Promise((r) => again.once('exit', r));
      }
    },
    300_000,
  );
});
