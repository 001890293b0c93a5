/**
 * An exclusive lock file for the embedded database folder. PGlite takes no lock of its own and
 * two processes opening one data directory corrupt it (NOTES.md "Storage"), so Signet holds one.
 *
 * The file names its holder: `{"pid":..,"startTime":..,"hostname":..}`. It is created complete
 * and atomically (written to a temporary file, then hard-linked into place, which fails if the
 * lock exists), so a reader never sees a half-written lock. A lock whose holder is gone (no such
 * pid, or the pid now belongs to a process started at another time) is stale: it is removed under
 * a second, short-lived "break" lock so that two processes recovering at once cannot both win.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync, unlinkSync } from 'node:fs';
import { link, readFile, stat, unlink, writeFile } from 'node:fs/promises';
import { hostname as osHostname } from 'node:os';
import {
  createExclusive as createWithOpenExclusive,
  holderAlive,
  processStartTime,
} from '../lib/lock-holder.ts';
import { DatabaseLockedError } from './errors.ts';

interface LockHolder {
  pid: number;
  /** Start time of the process in clock ticks since boot (/proc/PID/stat field 22), if known. */
  startTime?: string;
  hostname?: string;
}

export interface LockFile {
  readonly path: string;
  /** Removes the lock if it is still ours. Safe to call more than once. */
  release(): Promise<void>;
}

/** A break lock older than this whose holder is dead is abandoned: its holder crashed mid-break. */
const STALE_BREAK_LOCK_MS = 5_000;
/** An unreadable lock file younger than this may be someone else's (e.g. written by an older tool). */
const UNREADABLE_LOCK_GRACE_MS = 10_000;
const MAX_ATTEMPTS = 20;

export async function acquireLockFile(path: string): Promise<LockFile> {
  const me = describeSelf();
  const content = `${JSON.stringify(me)}\n`;
  for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
    if (await createExclusive(path, content)) return holdLock(path, content);
    const existing = await readLock(path);
    if (existing === 'missing') continue; // released between our attempt and our read: try again
    if (existing.holder === undefined) {
      if (Date.now() - existing.mtimeMs < UNREADABLE_LOCK_GRACE_MS) {
        throw new DatabaseLockedError(path, undefined, undefined, 'the lock file exists but cannot be read');
      }
    } else if (isAlive(existing.holder)) {
      throw lockedBy(path, existing.holder);
    }
    await breakStaleLock(path, existing.raw, me);
    await sleep(5 + Math.floor(Math.random() * 20));
  }
  throw new DatabaseLockedError(path, undefined, undefined, 'could not take the lock (contended)');
}

function lockedBy(path: string, holder: LockHolder): DatabaseLockedError {
  const self = holder.pid === process.pid && holder.hostname === osHostname();
  const otherHost = holder.hostname !== undefined && holder.hostname !== osHostname();
  // A process on another host (or in another container) cannot be checked from here.
  const detail = self
    ? `this process (pid ${holder.pid}) already has it open`
    : otherHost
      ? `process ${holder.pid} on host ${holder.hostname} holds it; stop that process first, or delete the lock file if that host no longer runs Signet`
      : `process ${holder.pid} holds it; stop that process first`;
  return new DatabaseLockedError(path, holder.pid, holder.hostname, detail);
}

function holdLock(path: string, content: string): LockFile {
  let held = true;
  // A normal exit without close() still frees the folder; a crash leaves a stale lock, recovered
  // by the next opener.
  const onExit = () => {
    try {
      if (readFileSync(path, 'utf8') === content) unlinkSync(path);
    } catch {
      // Already gone.
    }
  };
  process.once('exit', onExit);
  return {
    path,
    async release() {
      if (!held) return;
      held = false;
      process.off('exit', onExit);
      try {
        if ((await readFile(path, 'utf8')) === content) await unlink(path);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
      }
    },
  };
}

/** Creates `path` with `content` if it does not exist; false if it does. Atomic. */
async function createExclusive(path: string, content: string): Promise<boolean> {
  const temp = `${path}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
  await writeFile(temp, content, { mode: 0o600, flag: 'wx' });
  try {
    await link(temp, path);
    return true;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') return false;
    // File systems without hard links: O_EXCL is atomic too, only the content lands a moment later.
    if (code === 'EPERM' || code === 'ENOTSUP' || code === 'EOPNOTSUPP' || code === 'ENOSYS') {
      return createWithOpenExclusive(path, content);
    }
    throw error;
  } finally {
    await unlink(temp).catch(() => {});
  }
}

type ReadLock = 'missing' | { raw: string; holder: LockHolder | undefined; mtimeMs: number };

async function readLock(path: string): Promise<ReadLock> {
  try {
    const [raw, info] = await Promise.all([readFile(path, 'utf8'), stat(path)]);
    return { raw, holder: parseHolder(raw), mtimeMs: info.mtimeMs };
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return 'missing';
    throw error;
  }
}

function parseHolder(raw: string): LockHolder | undefined {
  try {
    const value = JSON.parse(raw) as Partial<LockHolder>;
    if (typeof value.pid !== 'number' || !Number.isInteger(value.pid) || value.pid <= 0) return undefined;
    return {
      pid: value.pid,
      startTime: typeof value.startTime === 'string' ? value.startTime : undefined,
      hostname: typeof value.hostname === 'string' ? value.hostname : undefined,
    };
  } catch {
    return undefined;
  }
}

/**
 * Removes a stale lock whose content is still `staleRaw`. Only the holder of the break lock
 * removes locks, and while the stale lock exists nobody can create a new one, so the check and
 * the unlink cannot remove a live lock.
 */
async function breakStaleLock(path: string, staleRaw: string, me: LockHolder): Promise<void> {
  const breakPath = `${path}.break`;
  if (!(await createExclusive(breakPath, `${JSON.stringify(me)}\n`))) {
    const other = await readLock(breakPath);
    if (
      other !== 'missing' &&
      (other.holder === undefined || !isAlive(other.holder)) &&
      Date.now() - other.mtimeMs > STALE_BREAK_LOCK_MS
    ) {
      await unlink(breakPath).catch(() => {});
    }
    return;
  }
  try {
    const current = await readLock(path);
    if (current !== 'missing' && current.raw === staleRaw) await unlink(path);
  } finally {
    await unlink(breakPath).catch(() => {});
  }
}

function describeSelf(): LockHolder {
  return { pid: process.pid, startTime: processStartTime(process.pid), hostname: osHostname() };
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** The holder as src/lib/lock-holder.ts reads it (this file's lock records its hostname and start time). */
const isAlive = (holder: LockHolder): boolean =>
  holderAlive({ pid: holder.pid, host: holder.hostname, start: holder.startTime });
