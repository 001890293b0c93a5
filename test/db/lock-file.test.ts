import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, test } from 'vitest';
import { createCertificatesRepository } from '../../src/db/certificates.repository.ts';
import { embeddedPaths, openDatabase } from '../../src/db/database.ts';
import { DatabaseLockedError } from '../../src/db/errors.ts';
import { acquireLockFile } from '../../src/db/lock-file.ts';
import { createPgliteDataDir } from '../helpers/database.ts';

const FIXTURES = join(import.meta.dirname, 'fixtures');
const cleanups: (() => void | Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'signet-lock-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

async function pgliteDataDir(): Promise<string> {
  const dir = await createPgliteDataDir();
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Starts `database-process.ts hold DIR [serials]` and resolves once it reports ready. */
function holdInChild(dataDir: string, serials: string[] = []): Promise<ChildProcess> {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', join(FIXTURES, 'database-process.ts'), 'hold', dataDir, ...serials],
    {
      stdio: ['pipe', 'pipe', 'pipe'],
    },
  );
  cleanups.push(() => {
    child.kill('SIGKILL');
  });
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    child.stdout!.on('data', (chunk) => {
      out += chunk;
      if (out.includes('"ready":true')) resolve(child);
    });
    child.stderr!.on('data', (chunk) => {
      err += chunk;
    });
    child.once('exit', (code) => reject(new Error(`holder exited with ${code}: ${out}${err}`)));
  });
}

function tryInChild(dataDir: string): { status: number | null; report: Record<string, unknown> } {
  const result = spawnSync(
    process.execPath,
    ['--import', 'tsx', join(FIXTURES, 'database-process.ts'), 'try', dataDir],
    { encoding: 'utf8', timeout: 60_000 },
  );
  const line = result.stdout.trim().split('\n').at(-1) ?? '';
  return { status: result.status, report: line ? JSON.parse(line) : { stderr: result.stderr } };
}

function exited(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once('exit', () => resolve());
  });
}

/** A pid that certainly does not run: a child that has exited and been reaped. */
function deadPid(): number {
  const result = spawnSync(process.execPath, ['-e', 'console.log(process.pid)'], { encoding: 'utf8' });
  return Number(result.stdout.trim());
}

describe('the embedded database lock file', () => {
  test('a second process is refused with an error naming the holder pid while a first holds the folder', async () => {
    const dataDir = await pgliteDataDir();
    const holder = await holdInChild(dataDir);

    const { status, report } = tryInChild(dataDir);
    expect(status).toBe(1);
    expect(report.code).toBe('db.locked');
    expect(report.pid).toBe(holder.pid);
    expect(report.message).toContain(`process ${holder.pid}`);

    // And this process is refused the same way.
    const error = await openDatabase({ dataDir }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DatabaseLockedError);
    expect((error as DatabaseLockedError).pid).toBe(holder.pid);

    holder.stdin!.end();
    await exited(holder);
    expect(existsSync(embeddedPaths(dataDir).lockPath)).toBe(false);
    expect(tryInChild(dataDir)).toMatchObject({ status: 0, report: { opened: true } });
  });

  test('a process killed with SIGKILL leaves a stale lock that the next opener recovers, with its rows intact', async () => {
    const dataDir = await pgliteDataDir();
    const serials = ['01a1', '01a2', '01a3'];
    const holder = await holdInChild(dataDir, serials);
    holder.kill('SIGKILL');
    await exited(holder);
    const lock = JSON.parse(readFileSync(embeddedPaths(dataDir).lockPath, 'utf8'));
    expect(lock.pid).toBe(holder.pid);

    const database = await openDatabase({ dataDir });
    try {
      const certificates = createCertificatesRepository({ db: database.db });
      // The reservations were acknowledged before the kill: they survived it, still pending, so
      // a reconcile can account for whatever the signer may have produced.
      const pending = (await certificates.list({ status: 'pending', limit: 1000 })).items;
      expect(pending.map((c) => c.serial).sort()).toEqual(serials);
      expect(JSON.parse(readFileSync(embeddedPaths(dataDir).lockPath, 'utf8')).pid).toBe(process.pid);
    } finally {
      await database.close();
    }
  });

  test('opening the same folder twice in one process is refused', async () => {
    const dataDir = await pgliteDataDir();
    const database = await openDatabase({ dataDir });
    cleanups.push(() => database.close());
    const error = await openDatabase({ dataDir }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DatabaseLockedError);
    expect((error as Error).message).toContain('this process');
  });

  test('closing releases the lock so the folder can be opened again', async () => {
    const dataDir = await pgliteDataDir();
    await (await openDatabase({ dataDir })).close();
    expect(existsSync(embeddedPaths(dataDir).lockPath)).toBe(false);
    await (await openDatabase({ dataDir })).close();
  });
});

describe('acquireLockFile', () => {
  test('takes over a lock whose pid no longer runs', async () => {
    const path = join(tempDir(), 'db.lock');
    writeFileSync(path, JSON.stringify({ pid: deadPid(), hostname: hostname() }));
    const lock = await acquireLockFile(path);
    expect(JSON.parse(readFileSync(path, 'utf8')).pid).toBe(process.pid);
    await lock.release();
    expect(existsSync(path)).toBe(false);
  });

  test('takes over a lock whose pid was reused by a process started at another time', async () => {
    const path = join(tempDir(), 'db.lock');
    // Our own pid, but a start time that is not ours: a previous process with the same pid.
    writeFileSync(path, JSON.stringify({ pid: process.pid, startTime: '1', hostname: hostname() }));
    const lock = await acquireLockFile(path);
    await lock.release();
  });

  test('refuses a lock held by a live process of this host', async () => {
    const path = join(tempDir(), 'db.lock');
    const sleeper = spawn('sleep', ['30']);
    cleanups.push(() => {
      sleeper.kill('SIGKILL');
    });
    writeFileSync(path, JSON.stringify({ pid: sleeper.pid, hostname: hostname() }));
    await expect(acquireLockFile(path)).rejects.toMatchObject({ code: 'db.locked', pid: sleeper.pid });
  });

  test('refuses a lock from another host, whose process it cannot check', async () => {
    const path = join(tempDir(), 'db.lock');
    writeFileSync(path, JSON.stringify({ pid: deadPid(), hostname: 'elsewhere.example.com' }));
    const error = (await acquireLockFile(path).catch((e: unknown) => e)) as DatabaseLockedError;
    expect(error).toBeInstanceOf(DatabaseLockedError);
    expect(error.message).toContain('on host elsewhere.example.com');
  });

  test('refuses a fresh unreadable lock but recovers an old one', async () => {
    const path = join(tempDir(), 'db.lock');
    writeFileSync(path, 'not json');
    await expect(acquireLockFile(path)).rejects.toBeInstanceOf(DatabaseLockedError);
    const old = new Date(Date.now() - 60_000);
    utimesSync(path, old, old);
    const lock = await acquireLockFile(path);
    await lock.release();
  });

  test('does not remove a lock that another process took after ours was released', async () => {
    const path = join(tempDir(), 'db.lock');
    const lock = await acquireLockFile(path);
    await lock.release();
    const other = JSON.stringify({ pid: 1, hostname: hostname() });
    writeFileSync(path, other);
    await lock.release();
    expect(readFileSync(path, 'utf8')).toBe(other);
  });

  test('of eight processes racing for a stale lock exactly one wins', async () => {
    const path = join(tempDir(), 'db.lock');
    writeFileSync(path, JSON.stringify({ pid: deadPid(), hostname: hostname() }));
    const racers = Array.from({ length: 8 }, () => {
      const child = spawn(process.execPath, ['--import', 'tsx', join(FIXTURES, 'lock-race.ts'), path]);
      cleanups.push(() => {
        child.kill('SIGKILL');
      });
      let out = '';
      const lines = (count: number) =>
        new Promise<string[]>((resolve, reject) => {
          const check = () => {
            const got = out.trim().split('\n').filter(Boolean);
            if (got.length >= count) resolve(got);
          };
          child.stdout.on('data', (chunk) => {
            out += chunk;
            check();
          });
          child.once('exit', () => reject(new Error(`racer exited early: ${out}`)));
          check();
        });
      return { child, lines };
    });
    // Everyone is started and waiting before anyone tries: a real race, not a queue.
    await Promise.all(racers.map((r) => r.lines(1)));
    for (const { child } of racers) child.stdin.write('go\n');
    const results = (await Promise.all(racers.map((r) => r.lines(2)))).map((got) => got[1]);
    expect(results.filter((r) => r === 'won')).toHaveLength(1);
    expect(results.filter((r) => r === 'locked')).toHaveLength(7);
    for (const { child } of racers) child.stdin.end();
  });
});
