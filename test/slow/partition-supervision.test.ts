import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initDataDir } from '../../src/cli/init.ts';
import { hasTool } from '../helpers/tools.ts';

/**
 * Issue #22: `signet serve` supervises the partition it spawns. kill -9 the partition process
 * under load: /readyz goes 503 and back to 200 by itself, issuance resumes without restarting the
 * node, every answer meanwhile is a certificate or a clean 503, and the death is logged. Without
 * an unseal secret the restarted partition waits for custodians, and /readyz says so.
 */
const SIGNET = path.resolve('bin/signet.js');
const haveOpenssl = hasTool('openssl', ['version']);
const CI = process.env.CI === 'true';

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer();
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

interface Node {
  child: ChildProcess;
  log: () => string;
}

function serve(dataDir: string, port: number): Node {
  const child = spawn(process.execPath, [SIGNET, 'serve', '--data', dataDir, '--port', String(port)], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, SIGNET_LOG_LEVEL: 'info' },
  });
  let text = '';
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    text += chunk;
  });
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
    text += chunk;
  });
  return { child, log: () => text };
}

async function readyz(port: number): Promise<{ status: number; body: string }> {
  try {
    const response = await fetch(`http://127.0.0.1:${port}/readyz`);
    return { status: response.status, body: await response.text() };
  } catch {
    return { status: 0, body: '' };
  }
}

async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const value = await probe();
    if (value !== undefined) return value;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** The pid of the partition process serving `socket` (a child of the node). */
function partitionPid(socket: string): number {
  const ps = spawnSync('pgrep', ['-f', `hsm serve --socket ${socket}`], { encoding: 'utf8' });
  const pids = ps.stdout.trim().split('\n').filter(Boolean).map(Number);
  if (pids.length !== 1)
    throw new Error(`expected one partition process for ${socket}, found ${pids.length}`);
  return pids[0]!;
}

async function stopNode(node: Node): Promise<void> {
  if (node.child.exitCode !== null) return;
  node.child.kill('SIGTERM');
  await new Promise((r) => node.child.once('exit', r));
}

describe.skipIf(!haveOpenssl && !CI)('signet serve supervises the partition it spawns', () => {
  let dir: string;
  let dataDir: string;
  let csr: Buffer;
  let apiKey: string;
  let socket: string;

  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'signet-supervise-'));
    dataDir = path.join(dir, 'data');
    await initDataDir({ dataDir, port: 8080, publicUrl: 'http://127.0.0.1:8080' });
    apiKey = readFileSync(path.join(dataDir, 'secrets', 'admin-api-key'), 'utf8').trim();
    socket = path.join(dataDir, 'hsm', 'issuing.sock');
    const made = spawnSync('openssl', [
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
      '/CN=supervise.example.com',
      '-addext',
      'subjectAltName=DNS:supervise.example.com',
      '-outform',
      'DER',
      '-out',
      path.join(dir, 'c.der'),
    ]);
    expect(made.status).toBe(0);
    csr = readFileSync(path.join(dir, 'c.der'));
  }, 120_000);

  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  const issue = (port: number) =>
    fetch(`http://127.0.0.1:${port}/v1/certificates?policy=web-server`, {
      method: 'POST',
      headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/pkcs10' },
      body: csr,
    });

  it('restarts a partition killed with SIGKILL under load, unseals it, and serves again by itself', async () => {
    const port = await freePort();
    const node = serve(dataDir, port);
    try {
      await until('ready', async () => ((await readyz(port)).status === 200 ? true : undefined), 60_000);

      let issued = 0;
      const others: { status: number; retryAfter: string | null; type: string }[] = [];
      let stop = false;
      const worker = async () => {
        while (!stop) {
          const response = await issue(port);
          if (response.status === 201) issued += 1;
          else
            others.push({
              status: response.status,
              retryAfter: response.headers.get('retry-after'),
              type: ((await response.json()) as { type?: string }).type ?? '',
            });
          if (response.status === 201) await response.arrayBuffer();
        }
      };
      const workers = Array.from({ length: 8 }, worker);
      await until('issuance under way', async () => (issued >= 30 ? true : undefined), 60_000);

      const victim = partitionPid(socket);
      process.kill(victim, 'SIGKILL');
      const down = await until(
        '/readyz 503',
        async () => {
          const r = await readyz(port);
          return r.status === 503 ? r : undefined;
        },
        10_000,
      );
      expect(JSON.parse(down.body).checks.partition).not.toBe('ok');
      await until(
        '/readyz 200 again',
        async () => ((await readyz(port)).status === 200 ? true : undefined),
        30_000,
      );
      const issuedAtRecovery = issued;
      await until(
        'issuance resumed',
        async () => (issued >= issuedAtRecovery + 30 ? true : undefined),
        60_000,
      );
      stop = true;
      await Promise.all(workers);

      // A new process serves the socket; the node itself never restarted.
      expect(partitionPid(socket)).not.toBe(victim);
      expect(node.child.exitCode).toBeNull();
      // Whatever was not a certificate was a clean 503 with Retry-After, never a 500.
      for (const other of others) {
        expect(other.status).toBe(503);
        expect(other.retryAfter).not.toBeNull();
      }
      const log = node.log();
      expect(log).toContain('partition process died (signal SIGKILL)');
      expect(log).toContain('partition process restarted');
      expect(log).toMatch(new RegExp(`"pid":${victim}[^\\n]*partition process died`));
    } finally {
      await stopNode(node);
    }
  }, 240_000);

  it('without an unseal secret, waits for custodians after a restart and serves once they unseal', async () => {
    const config = path.join(dataDir, 'signet.yaml');
    const original = readFileSync(config, 'utf8');
    writeFileSync(config, original.replace(/^\s*unsealSecretFile: .*\n/m, ''));
    const unseal = () =>
      spawnSync(
        process.execPath,
        [
          SIGNET,
          'hsm',
          'unseal',
          '--socket',
          socket,
          '--secret-file',
          path.join(dataDir, 'secrets', 'unseal-issuing'),
        ],
        { encoding: 'utf8', timeout: 60_000 },
      );
    const port = await freePort();
    const node = serve(dataDir, port);
    try {
      // The node starts its partition sealed and waits: the custodians unseal it.
      await until(
        'the node waiting for custodians',
        async () => (node.log().includes('waiting for custodians') ? true : undefined),
        60_000,
      );
      expect(unseal().status).toBe(0);
      await until('ready', async () => ((await readyz(port)).status === 200 ? true : undefined), 60_000);
      expect((await issue(port)).status).toBe(201);

      process.kill(partitionPid(socket), 'SIGKILL');
      const waiting = await until(
        '/readyz naming the custodians',
        async () => {
          const r = await readyz(port);
          return r.status === 503 && r.body.includes('waiting for custodians') ? r : undefined;
        },
        30_000,
      );
      expect(JSON.parse(waiting.body).checks.partition).toBe(
        'sealed, waiting for custodians (signet hsm unseal)',
      );
      const refused = await issue(port);
      expect(refused.status).toBe(503);
      expect(refused.headers.get('retry-after')).not.toBeNull();
      await until(
        'the restart logged',
        async () => (node.log().includes('partition process restarted sealed') ? true : undefined),
        10_000,
      );

      expect(unseal().status).toBe(0);
      await until(
        'ready after unseal',
        async () => ((await readyz(port)).status === 200 ? true : undefined),
        30_000,
      );
      expect((await issue(port)).status).toBe(201);
    } finally {
      await stopNode(node);
      writeFileSync(config, original);
    }
  }, 240_000);
});
