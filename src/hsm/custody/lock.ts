import { randomBytes } from 'node:crypto';
import { readFile, rm, stat } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { createExclusive, holderAlive, processStartTime } from '../../lib/lock-holder.ts';
import { HsmError } from '../types.ts';
import { fsyncDir } from './atomic-file.ts';
import { isRecord } from './codec.ts';

/**
 * One process at a time may hold a partition folder (serve it, or change it offline). The lock
 * is a file created with O_EXCL that names its holder. A lock whose holder is gone (the pid no
 * longer runs, or runs as another process since the pid was reused) is stale and taken over; the
 * takeover itself is guarded by a second O_EXCL file so two starters cannot both take it.
 */
export const LOCK_FILE = 'partition.lock';
const TAKEOVER_FILE = 'partition.lock.takeover';

interface LockContent {
  pid: number;
  host: string;
  /** Process start time in clock ticks since boot (/proc/PID/stat field 22): detects pid reuse. */
  start?: string;
  token: string;
  since: string;
}

export interface DirLock {
  readonly path: string;
  release(): Promise<void>;
}

async function readHolder(path: string): Promise<LockContent | 'unreadable' | undefined> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
  try {
    const value: unknown = JSON.parse(text);
    if (isRecord(value) && Number.isInteger(value.pid) && typeof value.host === 'string') {
      return value as unknown as LockContent;
    }
  } catch {}
  return 'unreadable';
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function heldError(dir: string, holder: LockContent): HsmError {
  return new HsmError(
    'CKR_DEVICE_ERROR',
    `partition folder ${dir} is in use by process ${holder.pid} on ${holder.host} since ${holder.since}` +
      ' (another signet hsm serve or an offline command); stop it first',
  );
}

/** Takes the folder's lock, or throws HsmError naming the pid that holds it. */
export async function acquireDirLock(dir: string): Promise<DirLock> {
  const path = join(dir, LOCK_FILE);
  const mine: LockContent = {
    pid: process.pid,
    host: hostname(),
    start: processStartTime(process.pid),
    token: randomBytes(8).toString('hex'),
    since: new Date().toISOString(),
  };
  const content = `${JSON.stringify(mine)}\n`;
  for (let attempt = 0; attempt < 50; attempt++) {
    if (await createExclusive(path, content, { sync: true })) {
      await fsyncDir(dir);
      return { path, release: () => releaseLock(path, mine.token) };
    }
    const holder = await readHolder(path);
    if (holder === undefined) continue; // released meanwhile
    if (holder === 'unreadable') {
      // A holder between create and write, or a lock torn by a crash: wait, then treat as stale.
      const age = Date.now() - (await stat(path).catch(() => ({ mtimeMs: Date.now() }))).mtimeMs;
      if (age < 2_000) {
        await sleep(50);
        continue;
      }
    } else if (holderAlive(holder)) {
      throw heldError(dir, holder);
    }
    await takeOverStale(dir, path, holder);
  }
  throw new HsmError('CKR_DEVICE_ERROR', `could not take the lock on ${dir}: it keeps changing hands`);
}

async function takeOverStale(dir: string, path: string, stale: LockContent | 'unreadable'): Promise<void> {
  const guard = join(dir, TAKEOVER_FILE);
  const mine = JSON.stringify({ pid: process.pid, host: hostname(), start: processStartTime(process.pid) });
  if (!(await createExclusive(guard, mine, { sync: true }))) {
    const other = await readHolder(guard);
    if (other !== undefined && other !== 'unreadable' && holderAlive(other)) {
      await sleep(50); // another starter is taking it over; the loop re-reads the lock
      return;
    }
    // The guard's owner died mid-takeover.
    await rm(guard, { force: true });
    return;
  }
  try {
    // Re-read under the guard: only the same stale content may be removed.
    const now = await readHolder(path);
    const same =
      now !== undefined &&
      (now === 'unreadable' ? stale === 'unreadable' : stale !== 'unreadable' && now.token === stale.token);
    if (same) await rm(path, { force: true });
  } finally {
    await rm(guard, { force: true });
  }
}

async function releaseLock(path: string, token: string): Promise<void> {
  const holder = await readHolder(path);
  if (holder !== undefined && holder !== 'unreadable' && holder.token === token)
    await rm(path, { force: true });
}

/** Who holds the folder's lock, if a live process does (for status messages). */
export async function lockHolder(dir: string): Promise<{ pid: number; host: string } | undefined> {
  const holder = await readHolder(join(dir, LOCK_FILE));
  if (holder === undefined || holder === 'unreadable' || !holderAlive(holder)) return undefined;
  return { pid: holder.pid, host: holder.host };
}
