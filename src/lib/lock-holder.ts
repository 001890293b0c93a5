/**
 * What the project's two lock files (the database folder's, src/db/lock-file.ts, and a
 * partition folder's, src/hsm/custody/lock.ts) share: who holds a lock, whether that process
 * still runs, and creating a lock file only if none exists.
 */

import { readFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { hostname } from 'node:os';

/**
 * The start time of a process (field 22 of /proc/<pid>/stat, in clock ticks since boot), which
 * tells a live holder from a new process that reused its pid. Undefined where /proc is absent.
 */
export function processStartTime(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) is in parentheses and may itself contain spaces or ')'.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

/**
 * Whether a lock's holder still runs. A lock from another host cannot be checked and counts as
 * held. A pid that exists but started at another time than recorded was reused: the holder is gone.
 */
export function holderAlive(holder: {
  pid: number;
  host?: string | undefined;
  start?: string | undefined;
}): boolean {
  if (holder.host !== undefined && holder.host !== hostname()) return true;
  try {
    process.kill(holder.pid, 0);
  } catch (error) {
    // EPERM: it exists but belongs to another user.
    if ((error as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  if (holder.start === undefined) return true;
  const start = processStartTime(holder.pid);
  return start === undefined || start === holder.start;
}

/** Creates `path` with `content` (mode 0600) only if it does not exist (O_EXCL); false if it does. */
export async function createExclusive(
  path: string,
  content: string,
  options: { sync?: boolean } = {},
): Promise<boolean> {
  let handle: Awaited<ReturnType<typeof open>>;
  try {
    handle = await open(path, 'wx', 0o600);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw error;
  }
  try {
    await handle.writeFile(content);
    if (options.sync) await handle.sync();
  } finally {
    await handle.close();
  }
  return true;
}
