/**
 * Several CA nodes on one PostgreSQL database and one partition cluster (issue #29), for the slow
 * tests: node A is made by `signet init`; node B from only what a new node needs — A's config and
 * secrets (no database, no partition folder), and its own partition member restored from a
 * backup of A's with the unseal secret. Each node spawns its own member (served over mutual TLS)
 * and lists the other node's member too, so the two members form one cluster that both nodes use.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { initDataDir } from '../../../src/cli/init.ts';
import { createEmptyPostgresDatabase } from '../../helpers/database.ts';

const SIGNET = path.resolve('bin/signet.js');

export async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const probe = createServer();
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as { port: number };
      probe.close(() => resolve(port));
    });
  });
}

export function signet(args: string[]) {
  return spawnSync(process.execPath, [SIGNET, ...args], { encoding: 'utf8', timeout: 120_000 });
}

export interface NodeProcess {
  name: string;
  dataDir: string;
  url: string;
  /** tls://127.0.0.1:PORT of the partition member this node spawns. */
  memberUrl: string;
  process?: ChildProcess;
  log: string;
  /** Starts `signet serve` and resolves once /readyz answers 200. */
  start(): Promise<void>;
  /** SIGTERM (or `signal`), and waits for the exit. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

export interface Nodes {
  dir: string;
  databaseUrl: string;
  apiKey: string;
  nodes: NodeProcess[];
  close(): Promise<void>;
}

type Config = Record<string, Record<string, unknown>>;

export interface NodesOptions {
  count?: number;
  workers?: number;
  /** Written into rateLimit (perMinute, failedAuthPerMinute). */
  rateLimit?: Record<string, number>;
  /** Tweaks both nodes' signet.yaml after it is written. */
  configure?(config: Config): void;
}

/** Makes (does not start) `count` nodes sharing a fresh PostgreSQL database and one partition cluster. */
export async function createNodes({
  count = 2,
  workers = 2,
  rateLimit,
  configure,
}: NodesOptions = {}): Promise<Nodes> {
  const dir = mkdtempSync(path.join(tmpdir(), 'signet-nodes-'));
  const database = await createEmptyPostgresDatabase();
  const ports = await Promise.all(Array.from({ length: count * 2 }, () => freePort()));
  const first = path.join(dir, 'node0');
  await initDataDir({
    dataDir: first,
    port: ports[0]!,
    publicUrl: `http://127.0.0.1:${ports[0]}`,
    databaseUrl: database.url,
    partitionListen: `tls://127.0.0.1:${ports[1]}`,
  });
  const backup = path.join(dir, 'issuing.backup');
  const made = signet(['hsm', 'backup', '--dir', path.join(first, 'hsm', 'issuing'), '--out', backup]);
  if (made.status !== 0) throw new Error(`hsm backup: ${made.stderr}`);

  const dataDirs = [first];
  for (let index = 1; index < count; index++) {
    const dataDir = path.join(dir, `node${index}`);
    // Only the config, policies, certificates and secrets: no database folder, no partition.
    cpSync(first, dataDir, {
      recursive: true,
      filter: (source) =>
        !/[/\\](hsm|db)([/\\]|$)/.test(path.relative(dir, source)) && !source.endsWith('db.lock'),
    });
    mkdirSync(path.join(dataDir, 'hsm'), { mode: 0o700 });
    const restored = signet([
      'hsm',
      'restore',
      '--in',
      backup,
      '--dir',
      path.join(dataDir, 'hsm', 'issuing'),
      '--secret-file',
      path.join(dataDir, 'secrets', 'unseal-issuing'),
    ]);
    if (restored.status !== 0) throw new Error(`hsm restore: ${restored.stderr}`);
    dataDirs.push(dataDir);
  }

  const memberUrls = dataDirs.map((_, index) => `tls://127.0.0.1:${ports[index * 2 + 1]}`);
  const nodes = dataDirs.map((dataDir, index) => {
    const file = path.join(dataDir, 'signet.yaml');
    const config = parseYaml(readFileSync(file, 'utf8')) as Config;
    const port = ports[index * 2]!;
    config.server = { ...config.server, port, workers };
    config.rateLimit = { ...config.rateLimit, ...rateLimit };
    const issuing = (config.partitions as Record<string, { members: Record<string, unknown>[] }>).issuing!;
    const own: Record<string, unknown> = { ...issuing.members[0]!, url: memberUrls[index] };
    const link = { cert: own.cert, key: own.key, ca: own.ca };
    issuing.members = [
      own,
      ...memberUrls.filter((_, other) => other !== index).map((url) => ({ url, ...link })),
    ];
    configure?.(config);
    writeFileSync(file, stringifyYaml(config));
    return makeNode(`node${index}`, dataDir, `http://127.0.0.1:${port}`, memberUrls[index]!, database.url);
  });

  return {
    dir,
    databaseUrl: database.url,
    apiKey: readFileSync(path.join(first, 'secrets', 'admin-api-key'), 'utf8').trim(),
    nodes,
    async close() {
      await Promise.all(nodes.map((node) => node.stop()));
      await database.drop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

function makeNode(
  name: string,
  dataDir: string,
  url: string,
  memberUrl: string,
  databaseUrl: string,
): NodeProcess {
  const node: NodeProcess = {
    name,
    dataDir,
    url,
    memberUrl,
    log: '',
    async start() {
      const child = spawn(process.execPath, [SIGNET, 'serve', '--data', dataDir], {
        stdio: ['ignore', 'pipe', 'pipe'],
        env: {
          ...process.env,
          DATABASE_URL: databaseUrl,
          SIGNET_LOG_LEVEL: process.env.SIGNET_LOG_LEVEL ?? 'warn',
        },
      });
      node.process = child;
      child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
        node.log += chunk;
      });
      child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
        node.log += chunk;
      });
      const deadline = Date.now() + 90_000;
      for (;;) {
        const ready = await fetch(`${url}/readyz`).catch(() => undefined);
        if (ready?.status === 200) return;
        if (Date.now() > deadline || child.exitCode !== null)
          throw new Error(`${name} did not become ready:\n${node.log}`);
        await new Promise((r) => setTimeout(r, 200));
      }
    },
    async stop(signal = 'SIGTERM') {
      const child = node.process;
      if (!child || child.exitCode !== null || child.signalCode !== null) return child?.exitCode ?? null;
      const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
      child.kill(signal);
      return exited;
    },
  };
  return node;
}
