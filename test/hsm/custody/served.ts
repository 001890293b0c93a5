import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { RemotePartition } from '../../../src/hsm/client.ts';
import {
  type PartitionProcess,
  startPartitionProcess,
  temporarySocketPath,
} from '../../../src/hsm/process.ts';
import { OFFICER_PIN, tempDir, USER_PIN } from './helpers.ts';

const SIGNET = fileURLToPath(new URL('../../../bin/signet.js', import.meta.url));

export const OFFICER = { user: 'officer', pin: OFFICER_PIN };
export const CA = { user: 'ca', pin: USER_PIN };

/** Runs `signet ...` as its own process; secrets go through files, never arguments. */
export function signet(args: string[], env: NodeJS.ProcessEnv = {}) {
  const result = spawnSync(process.execPath, [SIGNET, ...args], {
    encoding: 'utf8',
    timeout: 60_000,
    env: { ...process.env, SIGNET_HSM_PIN: '', SIGNET_HSM_SECRET: '', ...env },
  });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

/** Writes a secret or PIN to a private file and returns its path. */
export function secretFile(content: string, name = 'secret'): string {
  const path = join(tempDir(), name);
  writeFileSync(path, content, { mode: 0o600 });
  return path;
}

export interface Served {
  socketPath: string;
  process: PartitionProcess;
  /** What the partition process wrote to stderr. */
  logs: string[];
  /** A new connection, logged in as `who` when given. */
  connect(who?: { user: string; pin: string }): Promise<RemotePartition>;
  stop(): Promise<void>;
}

/** `signet hsm serve --dir DIR` as a child process. */
export async function serve(dir: string): Promise<Served> {
  const { socketPath, cleanup } = await temporarySocketPath();
  const logs: string[] = [];
  const proc = await startPartitionProcess({ socketPath, dir, onLog: (line) => logs.push(line) });
  const clients: RemotePartition[] = [];
  return {
    socketPath,
    process: proc,
    logs,
    async connect(who) {
      const client = await RemotePartition.connect({ socketPath });
      clients.push(client);
      if (who) await client.login(who);
      return client;
    },
    async stop() {
      await Promise.all(clients.map((client) => client.close().catch(() => {})));
      await proc.stop();
      await cleanup();
    },
  };
}

export async function unsealWith(served: Served, material: { secret?: string; shares?: string[] }) {
  const client = await served.connect();
  try {
    return await client.unseal({
      ...(material.secret !== undefined ? { secret: Buffer.from(material.secret) } : {}),
      ...(material.shares ? { shares: material.shares.map((share) => Buffer.from(share)) } : {}),
    });
  } finally {
    await client.close();
  }
}

/**
 * Serves DIR, creates keys through an officer client (several in flight) until `after` are
 * acknowledged, then kills the partition process with SIGKILL while it is still creating more.
 * Returns the labels it acknowledged.
 */
export async function killServerDuringKeyCreation(
  dir: string,
  material: { secret?: string },
  after: number,
  round: number,
): Promise<Set<string>> {
  const served = await serve(dir);
  const acked = new Set<string>();
  try {
    await unsealWith(served, material);
    const officer = await served.connect(OFFICER);
    let n = 0;
    let killed = false;
    const worker = async () => {
      while (!killed) {
        const label = `r${round}-k${n++}`;
        try {
          await officer.createKey({ label, algorithm: 'ecdsa-p256' });
          acked.add(label);
        } catch {
          return; // the process is gone
        }
        if (acked.size >= after && !killed) {
          killed = true;
          // Let a few more creations get under way, so the kill lands in the middle of writes.
          setTimeout(() => served.process.child.kill('SIGKILL'), Math.floor(Math.random() * 10));
        }
      }
    };
    await Promise.all([worker(), worker(), worker(), worker()]);
    await served.process.exited;
  } finally {
    await served.stop();
  }
  return acked;
}
