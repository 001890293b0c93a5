/**
 * A running CA for the fuzz suites (issue #34): `signet init`, then `signet serve` as its own
 * process (so a crash is a dead process and a hang is a request without an answer), with the
 * per-credential and per-address limits raised so that inputs reach the parsers instead of a 429.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { initDataDir } from '../../../src/cli/init.ts';
import { newKeyAndCsr } from '../../helpers/openssl-csr.ts';

const SIGNET = path.resolve('bin/signet.js');

export async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer();
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

export interface FuzzService {
  dir: string;
  dataDir: string;
  url: string;
  adminKey: string;
  process: ChildProcess;
  /** The partition members the server spawned (their pids must not change: none may die). */
  children(): number[];
  /** What the server wrote to stderr (warnings and errors). */
  stderr(): string;
  stop(): Promise<void>;
}

export async function startFuzzService(prefix: string): Promise<FuzzService> {
  const dir = mkdtempSync(path.join(tmpdir(), `signet-fuzz-${prefix}-`));
  const dataDir = path.join(dir, 'data');
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const init = await initDataDir({ dataDir, port, publicUrl: url, log: () => {} });
  const configFile = path.join(dataDir, 'signet.yaml');
  const config = parseYaml(readFileSync(configFile, 'utf8')) as Record<string, Record<string, unknown>>;
  config.rateLimit = { perMinute: 10_000_000, failedAuthPerMinute: 10_000_000 };
  config.ocsp = { ...(config.ocsp ?? {}), nonceRateLimit: { perMinute: 10_000_000 } };
  config.acme = {
    ...(config.acme ?? {}),
    rateLimit: { newAccountsPerMinute: 10_000_000, newOrdersPerMinute: 10_000_000 },
  };
  writeFileSync(configFile, stringifyYaml(config));
  let stderr = '';
  const child = spawn(process.execPath, [SIGNET, 'serve', '--data', dataDir, '--port', String(port)], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, SIGNET_LOG_LEVEL: 'warn' },
  });
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr = (stderr + chunk.toString('utf8')).slice(-200_000);
  });
  await waitReady(url, child, () => stderr);
  return {
    dir,
    dataDir,
    url,
    adminKey: readFileSync(init.adminKeyFile, 'utf8').trim(),
    process: child,
    children: () =>
      spawnSync('pgrep', ['-P', String(child.pid)], { encoding: 'utf8' })
        .stdout.split(/\s+/)
        .filter(Boolean)
        .map(Number)
        .sort(),
    stderr: () => stderr,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((resolve) => child.once('exit', resolve));
        child.kill('SIGTERM');
        await Promise.race([exited, new Promise((r) => setTimeout(r, 15_000))]);
        if (child.exitCode === null) child.kill('SIGKILL');
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function waitReady(url: string, child: ChildProcess, stderr: () => string): Promise<void> {
  const deadline = Date.now() + 90_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`signet serve exited (${child.exitCode}): ${stderr()}`);
    try {
      if ((await fetch(`${url}/readyz`)).status === 200) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`signet serve did not become ready: ${stderr()}`);
}

/** A P-256 key and CSR from openssl (DER), with a DNS name the web-server policy allows. */
export function opensslCsr(
  dir: string,
  name: string,
  algorithm?: string[],
): { der: Buffer; keyFile: string } {
  const keyFile = path.join(dir, `${name}.key`);
  const der = newKeyAndCsr({
    keyFile,
    subject: `/CN=${name}.example.com`,
    sans: [`DNS:${name}.example.com`],
    ...(algorithm ? { algorithm } : {}),
  });
  return { der, keyFile };
}
