/**
 * What the benchmarks read from Linux's /proc: CPU time, resident memory and open file
 * descriptors of a process tree, split by role (a signet node's primary, its HTTP workers, its
 * partition processes), and the disk's own fdatasync latency.
 */
import { closeSync, fdatasyncSync, openSync, readdirSync, readFileSync, rmSync, writeSync } from 'node:fs';
import path from 'node:path';

const TICKS = 100; // USER_HZ on Linux

function children(pid: number): number[] {
  const kids: number[] = [];
  try {
    for (const task of readdirSync(`/proc/${pid}/task`)) {
      const text = readFileSync(`/proc/${pid}/task/${task}/children`, 'utf8').trim();
      if (text) kids.push(...text.split(' ').map(Number));
    }
  } catch {
    // Ended between reads.
  }
  return kids;
}

function ownCpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / TICKS;
  } catch {
    return 0;
  }
}

function rssMb(pid: number): number {
  try {
    const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match ? Number(match[1]) / 1024 : 0;
  } catch {
    return 0;
  }
}

function cmdline(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ');
  } catch {
    return '';
  }
}

function descendants(pid: number): number[] {
  const all: number[] = [];
  const visit = (p: number) => {
    all.push(p);
    for (const kid of children(p)) visit(kid);
  };
  visit(pid);
  return all;
}

/** CPU seconds (user + system) of a process and all its descendants. */
export function cpuSeconds(pid: number): number {
  return descendants(pid).reduce((sum, p) => sum + ownCpuSeconds(p), 0);
}

export interface ByRole {
  /** The process started (signet serve's primary, or the single process; cfssl). */
  server: number;
  /** Its HTTP workers (`serve --workers N`), each with its own descendants but partitions. */
  workers: number;
  /** Partition processes (`signet hsm serve`). */
  partition: number;
}

function splitByRole(root: number, measure: (pid: number) => number): ByRole {
  const result: ByRole = { server: measure(root), workers: 0, partition: 0 };
  const visit = (pid: number, role: 'workers' | 'partition' | 'server') => {
    for (const kid of children(pid)) {
      const line = cmdline(kid);
      const kidRole = line.includes(' hsm serve') ? 'partition' : line.includes(' serve ') ? 'workers' : role;
      result[kidRole] += measure(kid);
      visit(kid, kidRole);
    }
  };
  visit(root, 'server');
  return result;
}

function openFds(pid: number): number {
  try {
    return readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return 0;
  }
}

/** The role of each process of a server: its own pid, its workers' and its partitions'. */
export function rolesOf(root: number): Map<number, keyof ByRole> {
  const roles = new Map<number, keyof ByRole>([[root, 'server']]);
  splitByRole(root, (pid) => {
    if (!roles.has(pid)) {
      const line = cmdline(pid);
      roles.set(
        pid,
        line.includes(' hsm serve') ? 'partition' : line.includes(' serve ') ? 'workers' : 'server',
      );
    }
    return 0;
  });
  return roles;
}

export const cpuByRole = (root: number): ByRole => splitByRole(root, ownCpuSeconds);
export const rssByRole = (root: number): ByRole => splitByRole(root, rssMb);
/** Open file descriptors (entries of /proc/PID/fd), by role. */
export const fdsByRole = (root: number): ByRole => splitByRole(root, openFds);
/** How many processes a tree holds (a PostgreSQL postmaster and its backends). */
export const processCount = (root: number): number => descendants(root).length;

/**
 * The disk's own durable-write floor: `count` 8 KiB writes each followed by fdatasync, in a file
 * under `dir` (put it on the database's file system). Milliseconds, p50 and p99.
 */
export function fdatasyncLatencyMs(dir: string, count = 200): { p50: number; p99: number } {
  const file = path.join(dir, `fdatasync-probe-${process.pid}`);
  const fd = openSync(file, 'w');
  const block = Buffer.alloc(8192, 7);
  const times: number[] = [];
  try {
    for (let i = 0; i < count; i++) {
      const started = performance.now();
      writeSync(fd, block, 0, block.length, (i % 16) * block.length);
      fdatasyncSync(fd);
      times.push(performance.now() - started);
    }
  } finally {
    closeSync(fd);
    rmSync(file, { force: true });
  }
  times.sort((a, b) => a - b);
  return { p50: times[Math.floor(count / 2)]!, p99: times[Math.floor(count * 0.99)]! };
}
