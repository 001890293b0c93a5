/**
 * Start-up time to ready after a restart: `signet init` once into a throwaway data folder, then
 * ROUNDS times start `signet serve` on it and time from spawning the process until
 * GET /readyz answers 200 (partition process spawned and unsealed, PGlite opened and migrated,
 * issuers loaded and their chains validated), then stop it with SIGTERM and wait for its exit.
 *
 *   node --import tsx bench/startup.ts [--signet PATH ...] [--rounds 5]
 *
 * --signet is a `bin/signet.js` to run (default this checkout's, which runs dist/: `npm run build`
 * first); point it at `node_modules/signet/bin/signet.js` of an `npm install --omit=dev
 * ./signet-*.tgz` to measure a packed install. Given several times, the installs take turns
 * round by round, so a busy machine slows each alike.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { freePort } from './support.ts';

const { values } = parseArgs({
  options: {
    signet: { type: 'string', multiple: true },
    rounds: { type: 'string', default: '5' },
  },
});
const signets = (values.signet ?? [path.resolve(import.meta.dirname, '../bin/signet.js')]).map((p) =>
  path.resolve(p),
);
const rounds = Number(values.rounds);
// The checkout's own runs must not pick up the suites' switch to run the TypeScript sources.
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

async function startOnce(signet: string, data: string, port: number): Promise<number> {
  const started = performance.now();
  const child = spawn(process.execPath, [signet, 'serve', '--data', data, '--port', String(port)], {
    env: { ...env, SIGNET_LOG_LEVEL: 'warn' },
    stdio: 'ignore',
  });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  try {
    return await readyAfter(child, `http://127.0.0.1:${port}`, started);
  } finally {
    child.kill('SIGTERM');
    await exited;
  }
}

const dir = mkdtempSync(path.join(tmpdir(), 'signet-bench-startup-'));
try {
  const setups = await Promise.all(
    signets.map(async (signet, i) => ({ signet, port: await freePort(), data: path.join(dir, `data-${i}`) })),
  );
  for (const { signet, port, data } of setups) {
    execFileSync(process.execPath, [signet, 'init', '--data', data, '--port', String(port)], {
      env,
      stdio: 'ignore',
    });
    await startOnce(signet, data, port); // the first start after init is not a restart
  }
  const times = setups.map(() => [] as number[]);
  for (let round = 0; round < rounds; round++) {
    for (const [i, { signet, port, data }] of setups.entries())
      times[i]!.push(await startOnce(signet, data, port));
  }
  for (const [i, { signet }] of setups.entries()) {
    const sorted = [...times[i]!].sort((a, b) => a - b);
    console.log(`signet: ${signet}`);
    console.log(`  ready after (ms): ${times[i]!.map((t) => t.toFixed(0)).join(', ')}`);
    console.log(
      `  median ${sorted[Math.floor(sorted.length / 2)]!.toFixed(0)} ms, min ${sorted[0]!.toFixed(0)} ms, max ${sorted.at(-1)!.toFixed(0)} ms`,
    );
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
