/**
 * Start-up time to ready after a restart: `signet init` once into a throwaway data folder, then
 * ROUNDS times start `signet serve` on it and time from spawning the process until
 * GET /readyz answers 200 (partition process spawned and unsealed, PGlite opened and migrated,
 * issuers loaded and their chains validated), then stop it with SIGTERM and wait for its exit.
 *
 *   node --import tsx bench/startup.ts [--signet PATH] [--rounds 5]
 *
 * --signet is the `bin/signet.js` to run (default this checkout's): point it at
 * `node_modules/signet/bin/signet.js` of an `npm install --omit=dev ./signet-*.tgz` to measure
 * the packed install.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { freePort } from './support.ts';

const { values } = parseArgs({
  options: {
    signet: { type: 'string', default: path.resolve(import.meta.dirname, '../bin/signet.js') },
    rounds: { type: 'string', default: '5' },
  },
});
const signet = path.resolve(values.signet!);
const rounds = Number(values.rounds);
// The checkout's own runs must not pick up a test-only switch from the caller's environment.
const { SIGNET_RUN_SOURCES: _ignored, ...env } = process.env;

async function readyAfter(child: ChildProcess, url: string, started: number): Promise<number> {
  for (;;) {
    if (child.exitCode !== null)
      throw new Error(`signet serve exited (${child.exitCode}) before it was ready`);
    try {
      const response = await fetch(`${url}/readyz`);
      if (response.status === 200) return performance.now() - started;
    } catch {
      // not listening yet
    }
    if (performance.now() - started > 120_000) throw new Error('not ready within 120 s');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

const dir = mkdtempSync(path.join(tmpdir(), 'signet-bench-startup-'));
try {
  const port = await freePort();
  const data = path.join(dir, 'data');
  execFileSync(process.execPath, [signet, 'init', '--data', data, '--port', String(port)], {
    env,
    stdio: 'ignore',
  });
  const times: number[] = [];
  for (let round = 0; round < rounds; round++) {
    const started = performance.now();
    const child = spawn(process.execPath, [signet, 'serve', '--data', data, '--port', String(port)], {
      env: { ...env, SIGNET_LOG_LEVEL: 'warn' },
      stdio: 'ignore',
    });
    const exited = new Promise((resolve) => child.once('exit', resolve));
    try {
      times.push(await readyAfter(child, `http://127.0.0.1:${port}`, started));
    } finally {
      child.kill('SIGTERM');
      await exited;
    }
  }
  const sorted = [...times].sort((a, b) => a - b);
  const median = sorted[Math.floor(sorted.length / 2)]!;
  console.log(`signet: ${signet}`);
  console.log(`ready after (ms): ${times.map((t) => t.toFixed(0)).join(', ')}`);
  console.log(
    `median ${median.toFixed(0)} ms, min ${sorted[0]!.toFixed(0)} ms, max ${sorted.at(-1)!.toFixed(0)} ms`,
  );
} finally {
  rmSync(dir, { recursive: true, force: true });
}
