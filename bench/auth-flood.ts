/**
 * bench/auth-flood (issue #19): a flood of bad credentials from one address against `signet
 * serve`, as the hostile run that found 2,648 × 401 in 20 s, no 429 and 2,748 new audit rows.
 * Counts the answers by status (wrk with a Lua script) and the audit rows the flood left.
 *
 *   node --import tsx bench/auth-flood.ts [--seconds 20] [--connections 32]
 *
 * Needs wrk (Debian: apt-get install wrk). `signet init` + `signet serve` on a fresh data folder
 * (embedded PGlite, default configuration: rateLimit.failedAuthPerMinute 60, audit.failedAuthInterval
 * PT1M), on 127.0.0.1, removed afterwards.
 */
import { type ChildProcess, execFile, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs, promisify } from 'node:util';
import { freePort } from './support.ts';

const { values } = parseArgs({
  options: { seconds: { type: 'string', default: '20' }, connections: { type: 'string', default: '32' } },
});
const REPO = fileURLToPath(new URL('..', import.meta.url));
const BAD_KEY = `sgk_0123456789abcdef_${'A'.repeat(43)}`;

// Counts statuses per wrk thread and prints their sum as one JSON line at the end.
const COUNTER = `
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) counts = {} end
function response(status, headers, body) counts[status] = (counts[status] or 0) + 1 end
function done(summary, latency, requests)
  local total = {}
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("counts")) do total[status] = (total[status] or 0) + n end
  end
  local parts = {}
  for status, n in pairs(total) do table.insert(parts, string.format('"%d": %d', status, n)) end
  io.write("STATUSES {" .. table.concat(parts, ", ") .. "}\\n")
end
`;

async function main(): Promise<void> {
  const work = mkdtempSync(path.join(tmpdir(), 'signet-bench-flood-'));
  let server: ChildProcess | undefined;
  try {
    const dir = path.join(work, 'data');
    const port = await freePort();
    const env: NodeJS.ProcessEnv = { ...process.env, SIGNET_LOG_LEVEL: 'info' };
    delete env.DATABASE_URL;
    const signet = path.join(REPO, 'bin/signet.js');
    execFileSync(process.execPath, [signet, 'init', '--data', dir, '--port', String(port)], {
      env,
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    const log = openSync(path.join(work, 'serve.log'), 'w');
    server = spawn(process.execPath, [signet, 'serve', '--data', dir, '--port', String(port)], {
      env,
      stdio: ['ignore', log, log],
    });
    const base = `http://127.0.0.1:${port}`;
    for (let i = 0; ; i++) {
      if (i > 300) throw new Error('signet serve did not answer');
      if (
        await fetch(`${base}/healthz`).then(
          (r) => r.ok,
          () => false,
        )
      )
        break;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    const admin = readFileSync(path.join(dir, 'secrets', 'admin-api-key'), 'utf8').trim();
    const auditRows = async () => {
      let rows = 0;
      let cursor: string | null = null;
      do {
        const url = `${base}/v1/audit?actor=anonymous&limit=500${cursor ? `&cursor=${cursor}` : ''}`;
        const page = (await (await fetch(url, { headers: { authorization: `Bearer ${admin}` } })).json()) as {
          items: unknown[];
          nextCursor: string | null;
        };
        rows += page.items.length;
        cursor = page.nextCursor;
      } while (cursor);
      return rows;
    };
    const before = await auditRows();

    const script = path.join(work, 'count.lua');
    writeFileSync(script, COUNTER);
    const { stdout } = await promisify(execFile)('wrk', [
      '-t2',
      `-c${values.connections}`,
      `-d${values.seconds}s`,
      '-s',
      script,
      '-H',
      `Authorization: Bearer ${BAD_KEY}`,
      `${base}/v1/policies`,
    ]);
    const statuses = JSON.parse(/STATUSES (\{.*\})/.exec(stdout)?.[1] ?? '{}') as Record<string, number>;
    const rate = /Requests\/sec:\s+([\d.]+)/.exec(stdout)?.[1];
    const latency = /Latency\s+(\S+)/.exec(stdout)?.[1];
    // The flood spent this address's budget: wait for a token before the admin asks.
    await new Promise((resolve) => setTimeout(resolve, 2_000));
    const after = await auditRows();
    console.log(
      JSON.stringify({
        seconds: Number(values.seconds),
        connections: Number(values.connections),
        requestsPerSecond: Number(rate),
        meanLatency: latency,
        statuses,
        auditRowsAdded: after - before,
      }),
    );
  } finally {
    if (server && server.exitCode === null) {
      const exited = new Promise((resolve) => server?.once('exit', resolve));
      server.kill('SIGINT');
      await exited;
    }
    rmSync(work, { recursive: true, force: true });
  }
}

await main();
