import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { initDataDir } from '../../src/cli/init.ts';
import { createEmptyPostgresDatabase, postgresAvailable } from '../helpers/database.ts';

/**
 * Issue #24: `signet serve --workers N` on PostgreSQL. N worker processes answer on one port; the
 * per-credential rate limit is the node's, not N times it; a key revoked through one worker is
 * refused by every worker; the node stops cleanly; the embedded database refuses more than one.
 */
const SIGNET = path.resolve('bin/signet.js');
const PER_MINUTE = 40;

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const probe = createServer();
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as { port: number };
      probe.close(() => resolve(port));
    });
  });
}

/** A fresh TCP connection per request, so requests spread over the workers. */
async function get(url: string, key: string): Promise<number> {
  const response = await fetch(url, { headers: { authorization: `Bearer ${key}`, connection: 'close' } });
  await response.arrayBuffer();
  return response.status;
}

describe.skipIf(!postgresAvailable())('serve --workers 2 on PostgreSQL', () => {
  let dir: string;
  let dataDir: string;
  let port: number;
  let apiKey: string;
  let server: ChildProcess;
  let database: { url: string; drop(): Promise<void> };
  let log = '';

  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'signet-workers-'));
    dataDir = path.join(dir, 'data');
    port = await freePort();
    database = await createEmptyPostgresDatabase();
    await initDataDir({ dataDir, port, publicUrl: `http://127.0.0.1:${port}`, databaseUrl: database.url });
    const file = path.join(dataDir, 'signet.yaml');
    const config = parseYaml(readFileSync(file, 'utf8')) as Record<string, Record<string, unknown>>;
    config.rateLimit = { ...config.rateLimit, perMinute: PER_MINUTE };
    config.server = { ...config.server, workers: 2 };
    writeFileSync(file, stringifyYaml(config));
    apiKey = readFileSync(path.join(dataDir, 'secrets', 'admin-api-key'), 'utf8').trim();
    server = spawn(process.execPath, [SIGNET, 'serve', '--data', dataDir], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, DATABASE_URL: database.url, SIGNET_LOG_LEVEL: 'warn' },
    });
    server.stdout!.on('data', (chunk: Buffer) => {
      log += chunk.toString();
    });
    server.stderr!.on('data', (chunk: Buffer) => {
      log += chunk.toString();
    });
    for (let i = 0; i < 600 && !log.includes('HTTP workers'); i++) {
      if (server.exitCode !== null) throw new Error(`serve exited: ${log}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(log).toContain('with 2 HTTP workers');
  }, 120_000);

  afterAll(async () => {
    if (server && server.exitCode === null) {
      const exited = new Promise((r) => server.once('exit', r));
      server.kill('SIGTERM');
      await exited;
    }
    await database?.drop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('runs two HTTP workers and one partition process under the primary', () => {
    const children = spawnSync('pgrep', ['-P', String(server.pid), '-a'], { encoding: 'utf8' }).stdout;
    expect(children.split('\n').filter((line) => line.includes(' serve --data '))).toHaveLength(2);
    expect(children.split('\n').filter((line) => line.includes(' hsm serve '))).toHaveLength(1);
  });

  it('holds a credential to the node-wide rate limit, not one per worker', async () => {
    const started = Date.now();
    const statuses: number[] = [];
    // More than the burst of one credential, from many connections (both workers answer).
    for (let round = 0; round < 10; round++) {
      statuses.push(
        ...(await Promise.all(
          Array.from({ length: 10 }, () => get(`http://127.0.0.1:${port}/v1/policies`, apiKey)),
        )),
      );
    }
    const seconds = (Date.now() - started) / 1000;
    const allowed = statuses.filter((s) => s === 200).length;
    expect(statuses.filter((s) => s !== 200 && s !== 429)).toEqual([]);
    // The bucket holds PER_MINUTE tokens and refills PER_MINUTE per minute: per worker it would
    // allow up to twice that.
    expect(allowed).toBeLessThanOrEqual(PER_MINUTE + Math.ceil((seconds * PER_MINUTE) / 60) + 1);
    expect(allowed).toBeGreaterThanOrEqual(PER_MINUTE / 2);
  });

  it('refuses a key revoked through one worker on every worker', async () => {
    // The admin key has spent its budget above: wait for a few tokens.
    await new Promise((r) => setTimeout(r, 6000));
    const created = await fetch(`http://127.0.0.1:${port}/v1/apikeys`, {
      method: 'POST',
      headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ roles: ['auditor'], description: 'workers test' }),
    });
    expect(created.status).toBe(201);
    const { id, key } = (await created.json()) as { id: string; key: string };
    // Used through both workers, so both have it in memory.
    const before = await Promise.all(
      Array.from({ length: 8 }, () => get(`http://127.0.0.1:${port}/v1/policies`, key)),
    );
    expect(before).toEqual(Array(8).fill(200));
    const revoked = await fetch(`http://127.0.0.1:${port}/v1/apikeys/${id}`, {
      method: 'DELETE',
      headers: { authorization: `Bearer ${apiKey}`, connection: 'close' },
    });
    expect(revoked.status).toBeLessThan(300);
    const after = await Promise.all(
      Array.from({ length: 8 }, () => get(`http://127.0.0.1:${port}/v1/policies`, key)),
    );
    expect(after).toEqual(Array(8).fill(401));
  });

  it('stops the workers and the partition on SIGTERM', async () => {
    const pids = spawnSync('pgrep', ['-P', String(server.pid)], { encoding: 'utf8' })
      .stdout.split(/\s+/)
      .filter(Boolean)
      .map(Number);
    const exited = new Promise<number | null>((r) => server.once('exit', (code) => r(code)));
    server.kill('SIGTERM');
    expect(await exited).toBe(0);
    for (const pid of pids) {
      let alive = true;
      for (let i = 0; i < 50 && alive; i++) {
        try {
          process.kill(pid, 0);
          await new Promise((r) => setTimeout(r, 100));
        } catch {
          alive = false;
        }
      }
      expect(alive).toBe(false);
    }
  });

  it('refuses --workers 2 on the embedded database with a usage error', async () => {
    const pglite = path.join(dir, 'pglite');
    await initDataDir({ dataDir: pglite, port: await freePort(), publicUrl: 'http://127.0.0.1:8080' });
    const env = { ...process.env };
    delete env.DATABASE_URL;
    const result = spawnSync(process.execPath, [SIGNET, 'serve', '--data', pglite, '--workers', '2'], {
      encoding: 'utf8',
      env,
      timeout: 60_000,
    });
    expect(result.status).toBe(2);
    expect(result.stderr).toContain('use PostgreSQL');
  });
});
