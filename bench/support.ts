/**
 * Shared by the benchmarks: a free loopback port, and a throwaway PostgreSQL 15 cluster on
 * 127.0.0.1 ($DATABASE_URL wins when set). Initdb refuses root, so as root the cluster runs as
 * the `postgres` user. fsync stays on: the benchmarks measure durable commits, as production
 * has them.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { chownSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';

export async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer();
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/**
 * Undefined when there is neither $DATABASE_URL nor a PostgreSQL 15 installation. `pid` is the
 * postmaster's (its backends are its children), for CPU read from /proc; unknown for $DATABASE_URL.
 */
export async function throwawayPostgres(): Promise<
  { url: string; stop(): void; pid?: () => number | undefined; dataDir?: string } | undefined
> {
  if (process.env.DATABASE_URL) return { url: process.env.DATABASE_URL, stop() {} };
  const bin = '/usr/lib/postgresql/15/bin';
  if (spawnSync(`${bin}/initdb`, ['--version']).status !== 0) return undefined;
  const dir = mkdtempSync(path.join(tmpdir(), 'signet-bench-pg-'));
  const asPostgres = process.getuid?.() === 0 ? ['runuser', '-u', 'postgres', '--'] : [];
  if (asPostgres.length) {
    const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }));
    const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }));
    chownSync(dir, uid, gid);
  }
  const run = (cmd: string, args: string[]) =>
    execFileSync(asPostgres[0] ?? cmd, asPostgres.length ? [...asPostgres.slice(1), cmd, ...args] : args, {
      stdio: 'ignore',
    });
  const port = await freePort();
  run(`${bin}/initdb`, ['-D', `${dir}/data`, '-A', 'trust', '-U', 'signet']);
  run(`${bin}/pg_ctl`, [
    '-D',
    `${dir}/data`,
    '-l',
    `${dir}/log`,
    '-w',
    '-o',
    `-c listen_addresses=127.0.0.1 -p ${port} -k ${dir}`,
    'start',
  ]);
  let stopped = false;
  return {
    url: `postgres://signet@127.0.0.1:${port}/postgres`,
    dataDir: `${dir}/data`,
    pid: () => {
      try {
        return Number(readFileSync(`${dir}/data/postmaster.pid`, 'utf8').split('\n')[0]);
      } catch {
        return undefined;
      }
    },
    stop() {
      if (stopped) return;
      stopped = true;
      run(`${bin}/pg_ctl`, ['-D', `${dir}/data`, '-m', 'immediate', 'stop']);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
