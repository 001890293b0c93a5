import { createHash } from 'node:crypto';
import { constants } from 'node:fs';
import { access, mkdir, open } from 'node:fs/promises';
import { dirname, isAbsolute, resolve } from 'node:path';
import { CeremonyError } from './errors.ts';

/**
 * Output files of a ceremony are written once: opened with O_CREAT|O_EXCL ('wx'), so an existing
 * file is never truncated even if it appeared after validation, then fsynced before the next step.
 */

export interface WrittenOutput {
  /** The path as the configuration names it. */
  path: string;
  /** What the file holds: certificate, public-key, crl, share, transcript-markdown, ... */
  kind: string;
  sha256: string;
  bytes: number;
}

/** Resolves a configuration path against the ceremony's base folder. */
export const resolvePath = (baseDir: string, path: string) =>
  isAbsolute(path) ? path : resolve(baseDir, path);

export async function pathExists(path: string): Promise<boolean> {
  try {
    await access(path, constants.F_OK);
    return true;
  } catch {
    return false;
  }
}

export async function writeOutputOnce(
  baseDir: string,
  path: string,
  data: Uint8Array | string,
  { kind, mode = 0o644 }: { kind: string; mode?: number },
): Promise<WrittenOutput> {
  const full = resolvePath(baseDir, path);
  const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : Buffer.from(data);
  await mkdir(dirname(full), { recursive: true });
  let handle: Awaited<ReturnType<typeof open>>;
  try {
    handle = await open(full, 'wx', mode);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') {
      throw new CeremonyError('ceremony.output_exists', `refusing to overwrite ${path}: it exists`, { path });
    }
    throw new CeremonyError(
      'ceremony.output_failed',
      `cannot create ${path}: ${(error as NodeJS.ErrnoException).code ?? 'error'}`,
      { path },
      { cause: error },
    );
  }
  try {
    await handle.writeFile(bytes);
    await handle.sync();
  } finally {
    await handle.close();
  }
  // The directory entry is durable only once the folder is synced (fsync(2)).
  const dir = await open(dirname(full), 'r');
  try {
    await dir.sync();
  } finally {
    await dir.close();
  }
  return { path, kind, sha256: sha256Hex(bytes), bytes: bytes.length };
}

export const sha256Hex = (data: Uint8Array | string) => createHash('sha256').update(data).digest('hex');
