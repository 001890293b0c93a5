/**
 * A small harness for the fault tests of issue #29 (test/slow/fault-*.test.ts): CA nodes as real
 * `signet serve` processes, a PostgreSQL cluster of the test's own that it can restart, kill -9
 * of a node, reconcile, and the list of stored serials. Multi-node behaviour without faults is
 * test/slow/helpers/nodes.ts's (the other half of #29).
 */
import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import { chownSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as x509 from '@peculiar/x509';
import pg from 'pg';
import { newKeyAndCsr } from '../../helpers/openssl-csr.ts';

export const SIGNET = path.resolve('bin/signet.js');
const PG_BIN = '/usr/lib/postgresql/15/bin';

export async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const probe = createServer();
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as { port: number };
      probe.close(() => resolve(port));
    });
  });
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A P-256 CSR (DER) for `name`, made by OpenSSL; its key is left in `dir`. */
export function makeCsrDer(dir: string, name: string): Buffer {
  return newKeyAndCsr({
    keyFile: path.join(dir, `${name}.key`),
    subject: `/CN=${name}`,
    sans: [`DNS:${name}`],
  });
}

export interface Node {
  readonly child: ChildProcess;
  readonly port: number;
  readonly url: string;
  /** Everything the node wrote to stdout and stderr so far. */
  log(): string;
  /** SIGTERM, and wait for the exit. */
  stop(): Promise<void>;
}

export interface NodeOptions {
  dataDir: string;
  port: number;
  workers?: number;
  env?: NodeJS.ProcessEnv;
  /** A command to run the node under (e.g. `['faketime', '-f', '+0s']`). */
  wrapper?: string[];
}

/** Starts `signet serve` and waits until /readyz answers 200. */
export async function startNode(options: NodeOptions): Promise<Node> {
  const args = [
    SIGNET,
    'serve',
    '--data',
    options.dataDir,
    '--port',
    String(options.port),
    '--workers',
    String(options.workers ?? 1),
  ];
  const [command, argv] = options.wrapper
    ? [options.wrapper[0]!, [...options.wrapper.slice(1), process.execPath, ...args]]
    : [process.execPath, args];
  // A process group of its own: a wrapper such as faketime forks the node instead of becoming it,
  // and a SIGTERM to the wrapper alone left the node running after the test.
  const child = spawn(command, argv, {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { SIGNET_LOG_LEVEL: 'warn', ...(options.env ?? process.env) },
    detached: true,
  });
  let log = '';
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    log += chunk;
  });
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
    log += chunk;
  });
  const url = `http://127.0.0.1:${options.port}`;
  const node: Node = {
    child,
    port: options.port,
    url,
    log: () => log,
    async stop() {
      const group = -(child.pid as number);
      const alive = () => {
        try {
          process.kill(group, 0);
          return true;
        } catch {
          return false;
        }
      };
      if (!alive()) return;
      process.kill(group, 'SIGTERM');
      for (let waited = 0; alive() && waited < 15_000; waited += 100) await sleep(100);
      if (alive()) process.kill(group, 'SIGKILL');
    },
  };
  const deadline = Date.now() + 90_000;
  for (;;) {
    const ready = await fetch(`${url}/readyz`).catch(() => undefined);
    if (ready?.status === 200) return node;
    if (Date.now() > deadline || child.exitCode !== null)
      throw new Error(`the node on port ${options.port} did not become ready:\n${log}`);
    await sleep(200);
  }
}

/**
 * SIGKILL to a node's process and to every HTTP worker it forked, at once: no handler runs
 * anywhere. Its spawned partition member sees its stdin close and exits by itself; this waits
 * for that too (the member of `socket`).
 */
export async function killNode(node: Node, socket: string): Promise<void> {
  const pid = node.child.pid!;
  const workers = spawnSync('pgrep', ['-P', String(pid), '-f', ' serve --data '], { encoding: 'utf8' });
  for (const worker of workers.stdout.split(/\s+/).filter(Boolean)) process.kill(Number(worker), 'SIGKILL');
  const exited = new Promise((r) => node.child.once('exit', r));
  node.child.kill('SIGKILL');
  await exited;
  for (let i = 0; i < 150; i++) {
    if (spawnSync('pgrep', ['-f', `hsm serve --socket ${socket}`]).status !== 0) return;
    await sleep(200);
  }
  throw new Error(`the partition member of ${socket} outlived its node`);
}

/** `signet audit reconcile --json` over the given partition folders; the report and the exit. */
export function reconcile(
  dataDir: string,
  env: NodeJS.ProcessEnv,
  partitionDirs: string[] = [],
  extra: string[] = [],
): { report: Record<string, unknown[] | number>; status: number | null; stderr: string } {
  const result = spawnSync(
    process.execPath,
    [
      SIGNET,
      'audit',
      'reconcile',
      '--data',
      dataDir,
      '--grace',
      'PT0S',
      '--json',
      ...partitionDirs.flatMap((dir) => ['--partition-dir', dir]),
      ...extra,
    ],
    { encoding: 'utf8', timeout: 120_000, env },
  );
  let report: Record<string, unknown[] | number>;
  try {
    report = JSON.parse(result.stdout);
  } catch {
    throw new Error(`reconcile printed no JSON (exit ${result.status}):\n${result.stdout}\n${result.stderr}`);
  }
  return { report, status: result.status, stderr: result.stderr };
}

/**
 * Reconciles; a run that finds certificates signed but never stored (the node died between the
 * signature and the commit) must say how to revoke them, and a second run with
 * `--revoke-unstored` must leave nothing unaccounted for. Returns the first report.
 */
export function reconcileFully(
  dataDir: string,
  env: NodeJS.ProcessEnv,
  partitionDirs: string[] = [],
): Record<string, unknown[] | number> {
  const first = reconcile(dataDir, env, partitionDirs);
  const { report } = first;
  const problems = [report.signedWithoutRecord, report.certificatesWithoutSignature];
  if (problems.some((list) => !Array.isArray(list) || list.length > 0))
    throw new Error(`reconcile found unaccounted signatures: ${JSON.stringify(report)}`);
  const unstored = report.signedButNotStored as unknown[];
  if (unstored.length === 0) {
    if (first.status !== 0) throw new Error(`reconcile failed: ${first.stderr}`);
    return report;
  }
  if (first.status !== 1 || !first.stderr.includes('--revoke-unstored'))
    throw new Error(`reconcile did not point at --revoke-unstored: ${first.stderr}`);
  const repaired = reconcile(dataDir, env, partitionDirs, ['--revoke-unstored']);
  if (repaired.status !== 0 || (repaired.report.unstoredRevoked as unknown[]).length !== unstored.length)
    throw new Error(`reconcile --revoke-unstored failed: ${repaired.stderr}`);
  return report;
}

/** Every row of the certificates table: serial, status, and whether its DER is stored. */
export async function storedCertificates(
  databaseUrl: string,
): Promise<{ serial: string; status: string; hasDer: boolean }[]> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    const { rows } = await client.query<{ serial: string; status: string; has_der: boolean }>(
      'select serial, status, der is not null as has_der from certificates',
    );
    return rows.map((row) => ({ serial: row.serial, status: row.status, hasDer: row.has_der }));
  } finally {
    await client.end();
  }
}

// --- A PostgreSQL cluster of the test's own ------------------------------------------------

export interface PrivatePostgres {
  /** The superuser's URL to database `postgres`. */
  readonly adminUrl: string;
  readonly port: number;
  /** A new empty database's URL. */
  createDatabase(name: string): Promise<string>;
  /** pg_ctl stop -m MODE (fast: clients are disconnected; immediate: a crash). */
  stop(mode?: 'fast' | 'immediate'): void;
  /** Starts it again on the same address and data (a failover to a standby on the same address). */
  start(): void;
  /** Stops it and removes its folder. */
  destroy(): void;
}

/** Whether this process may start a cluster: root with a `postgres` user, or not root. */
export function privatePostgresProblem(): string | undefined {
  if (spawnSync('test', ['-x', `${PG_BIN}/pg_ctl`]).status !== 0) return `${PG_BIN}/pg_ctl is not installed`;
  if (process.getuid?.() === 0 && spawnSync('id', ['postgres']).status !== 0)
    return 'running as root and there is no postgres user';
  return undefined;
}

function asPostgres(command: string, args: string[]): [string, string[]] {
  return process.getuid?.() === 0 ? ['runuser', ['-u', 'postgres', '--', command, ...args]] : [command, args];
}

function pgRun(binary: string, args: string[]): void {
  const [command, argv] = asPostgres(path.join(PG_BIN, binary), args);
  execFileSync(command, argv, { stdio: ['ignore', 'pipe', 'pipe'], timeout: 60_000 });
}

/** initdb and pg_ctl start as .ci/postgres.sh does, on 127.0.0.1 and a free port. */
export async function startPrivatePostgres(): Promise<PrivatePostgres> {
  const dir = mkdtempSync(path.join(tmpdir(), 'signet-fault-pg-'));
  if (process.getuid?.() === 0) {
    const id = spawnSync('id', ['postgres'], { encoding: 'utf8' }).stdout;
    chownSync(dir, Number(/uid=(\d+)/.exec(id)![1]), Number(/gid=(\d+)/.exec(id)![1]));
  }
  pgRun('initdb', [
    '-D',
    path.join(dir, 'data'),
    '-A',
    'trust',
    '-U',
    'signet',
    '-E',
    'UTF8',
    '--no-locale',
    '-N',
  ]);
  const port = await freePort();
  const options = `-c listen_addresses=127.0.0.1 -p ${port} -k ${dir} -c fsync=off -c max_connections=100`;
  const adminUrl = `postgres://signet@127.0.0.1:${port}/postgres`;
  const start = () =>
    pgRun('pg_ctl', [
      '-D',
      path.join(dir, 'data'),
      '-l',
      path.join(dir, 'log'),
      '-w',
      '-o',
      options,
      'start',
    ]);
  const stop = (mode: 'fast' | 'immediate' = 'fast') =>
    pgRun('pg_ctl', ['-D', path.join(dir, 'data'), '-m', mode, '-w', 'stop']);
  start();
  return {
    adminUrl,
    port,
    async createDatabase(name) {
      const client = new pg.Client({ connectionString: adminUrl });
      await client.connect();
      try {
        await client.query(`create database ${name}`);
      } finally {
        await client.end();
      }
      return `postgres://signet@127.0.0.1:${port}/${name}`;
    },
    stop,
    start,
    destroy() {
      try {
        stop('immediate');
      } catch {
        // already stopped
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** The CRL number (RFC 5280 §5.2.3) and thisUpdate of a CRL. */
export function crlFacts(der: Uint8Array): { number: bigint; thisUpdate: Date } {
  const crl = new x509.X509Crl(der);
  const extension = crl.getExtension('2.5.29.20');
  if (!extension) throw new Error('the CRL has no CRL number');
  // The extension's value is a DER INTEGER: tag, one length octet (at most 20 octets), content.
  const value = new Uint8Array(extension.value);
  if (value[0] !== 0x02 || value[1]! > 21) throw new Error('the CRL number is not a short INTEGER');
  const number = BigInt(`0x${Buffer.from(value.subarray(2, 2 + value[1]!)).toString('hex')}`);
  return { number, thisUpdate: crl.thisUpdate };
}

// --- A small tmpfs in a private mount namespace ---------------------------------------------

export interface PrivateTmpfs {
  /** The mount point, as processes in the namespace see it. */
  readonly mountPoint: string;
  /** A path inside the tmpfs as this process reaches it (through /proc/PID/root). */
  outside(inside: string): string;
  /** Runs a command inside the namespace (a wrapper for startNode, or for spawnSync). */
  readonly wrapper: string[];
  destroy(): void;
}

/** Why a private tmpfs cannot be made here (it needs root, unshare and nsenter), or undefined. */
export function privateTmpfsProblem(): string | undefined {
  if (process.getuid?.() !== 0) return 'mounting a tmpfs in a private mount namespace needs root';
  for (const tool of ['unshare', 'nsenter'])
    if (spawnSync(tool, ['--version']).error) return `${tool} (util-linux) is not installed`;
  return undefined;
}

/**
 * A tmpfs of `sizeMb` on `mountPoint` (an existing empty folder) in a mount namespace of its own,
 * held by a sleeping process, with `seed`'s contents copied in. Nothing outside sees the mount.
 */
export async function startPrivateTmpfs(
  mountPoint: string,
  sizeMb: number,
  seed: string,
): Promise<PrivateTmpfs> {
  const holder = spawn(
    'unshare',
    [
      '--mount',
      '--propagation',
      'private',
      'sh',
      '-c',
      'mount -t tmpfs -o size="$1"m signet-fault "$2" && cp -a "$3/." "$2/" && echo mounted && exec sleep 100000',
      'sh',
      String(sizeMb),
      mountPoint,
      seed,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  holder.stdout!.setEncoding('utf8').on('data', (c: string) => {
    out += c;
  });
  holder.stderr!.setEncoding('utf8').on('data', (c: string) => {
    out += c;
  });
  for (let i = 0; i < 300 && !out.includes('mounted'); i++) {
    if (holder.exitCode !== null) break;
    await sleep(50);
  }
  if (!out.includes('mounted')) throw new Error(`the private tmpfs was not mounted: ${out}`);
  const pid = holder.pid!;
  return {
    mountPoint,
    outside: (inside) => path.join(`/proc/${pid}/root`, inside),
    wrapper: ['nsenter', `--mount=/proc/${pid}/ns/mnt`, '--'],
    destroy: () => holder.kill('SIGKILL'),
  };
}
