import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { RemotePartition } from './client.ts';
import { HsmError, type Role } from './types.ts';

/**
 * Starts a partition as its own OS process (`signet hsm serve`), the way the CA's embedded
 * default and the tests do, and waits until its socket answers status.
 */
export interface EphemeralPartitionSpec {
  /** Users provisioned in the in-memory store. */
  users: { name: string; role: Role; pin: string }[];
  /** With it the partition starts sealed and opens only for this secret. */
  unsealSecret?: Uint8Array;
}

export interface StartPartitionOptions {
  socketPath: string;
  /** A partition folder (sealed file store from custody). Exactly one of dir and ephemeral. */
  dir?: string;
  /** An in-memory partition that forgets everything when it stops (tests, benchmarks). */
  ephemeral?: EphemeralPartitionSpec;
  /** Partition name; default the folder's name (required with ephemeral). */
  name?: string;
  /** More arguments for `signet hsm serve`. */
  args?: string[];
  env?: NodeJS.ProcessEnv;
  /** Default 20 s. */
  startTimeoutMs?: number;
  /** Each line the partition writes to stderr; by default the last lines are kept for error messages. */
  onLog?: (line: string) => void;
}

export interface PartitionProcess {
  socketPath: string;
  child: ChildProcess;
  /** Resolves with the exit code (or signal name) when the process ends. */
  exited: Promise<number | string>;
  /** SIGTERM, then SIGKILL after 5 s; resolves once the process has exited. */
  stop(): Promise<void>;
}

const SIGNET = fileURLToPath(new URL('../../bin/signet.js', import.meta.url));
/**
 * The partition runs the same code as the process that starts it: the compiled dist/ when this
 * module is dist/hsm/process.js, the TypeScript sources (through tsx) when it is this file.
 */
const FROM_SOURCES = import.meta.url.endsWith('.ts');

export async function startPartitionProcess(options: StartPartitionOptions): Promise<PartitionProcess> {
  if ((options.dir === undefined) === (options.ephemeral === undefined)) {
    throw new Error('startPartitionProcess takes exactly one of dir and ephemeral');
  }
  const args = ['hsm', 'serve', '--socket', options.socketPath, '--exit-with-stdin'];
  let scratch: string | undefined;
  if (options.dir !== undefined) args.push('--dir', options.dir);
  if (options.ephemeral) {
    // The provisioning file holds PINs: a private folder, mode 0600, removed once the partition is up.
    scratch = await mkdtemp(join(tmpdir(), 'signet-hsm-'));
    const file = join(scratch, 'ephemeral.json');
    const { users, unsealSecret } = options.ephemeral;
    const spec = {
      users,
      ...(unsealSecret ? { unsealSecret: Buffer.from(unsealSecret).toString('base64') } : {}),
    };
    await writeFile(file, JSON.stringify(spec), { mode: 0o600 });
    args.push('--ephemeral', file);
  }
  if (options.name !== undefined) args.push('--name', options.name);
  args.push(...(options.args ?? []));

  // stdin is the lifeline: when this process dies, the partition sees end of input and stops.
  const { SIGNET_RUN_SOURCES: _inherited, ...env } = options.env ?? process.env;
  const child = spawn(process.execPath, [SIGNET, ...args], {
    stdio: ['pipe', 'ignore', 'pipe'],
    env: FROM_SOURCES ? { ...env, SIGNET_RUN_SOURCES: '1' } : env,
  });
  const logTail: string[] = [];
  let buffered = '';
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (text: string) => {
    buffered += text;
    const lines = buffered.split('\n');
    buffered = lines.pop() ?? '';
    for (const line of lines) {
      options.onLog?.(line);
      logTail.push(line);
      if (logTail.length > 20) logTail.shift();
    }
  });
  child.stdin!.on('error', () => {});
  const exited = new Promise<number | string>((resolve) => {
    child.once('exit', (code, signal) => resolve(code ?? signal ?? 'unknown'));
  });
  let stopping: Promise<void> | undefined;
  const stop = () => {
    stopping ??= (async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
        await exited;
        clearTimeout(timer);
      }
      if (scratch) await rm(scratch, { recursive: true, force: true });
    })();
    return stopping;
  };

  try {
    await waitUntilServing(options.socketPath, exited, options.startTimeoutMs ?? 20_000, () =>
      logTail.join('\n'),
    );
  } catch (error) {
    await stop();
    throw error;
  }
  if (scratch) {
    await rm(scratch, { recursive: true, force: true });
    scratch = undefined;
  }
  return { socketPath: options.socketPath, child, exited, stop };
}

async function waitUntilServing(
  socketPath: string,
  exited: Promise<number | string>,
  timeoutMs: number,
  log: () => string,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let dead: number | string | undefined;
  void exited.then((code) => {
    dead = code;
  });
  for (;;) {
    if (dead !== undefined)
      throw new Error(`the partition process exited (${dead}) before serving:\n${log()}`);
    try {
      const client = await RemotePartition.connect({
        socketPath,
        connectTimeoutMs: 1000,
        requestTimeoutMs: 2000,
      });
      try {
        await client.status();
        return;
      } finally {
        await client.close();
      }
    } catch (error) {
      if (!(error instanceof HsmError)) throw error;
    }
    if (Date.now() > deadline)
      throw new Error(`the partition did not serve ${socketPath} within ${timeoutMs} ms:\n${log()}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** A socket path in a fresh private folder under the system temporary folder (sockets have a ~107-octet limit). */
export async function temporarySocketPath(): Promise<{ socketPath: string; cleanup(): Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), `sh-${randomBytes(3).toString('hex')}-`));
  return { socketPath: join(dir, 'p.sock'), cleanup: () => rm(dir, { recursive: true, force: true }) };
}
