/**
 * bench/http-issue (issues #10, #24): certificates per second and p50/p99 latency over HTTP,
 * through `signet serve` (POST /v1/certificates?policy=web-server, every certificate stored) on
 * the embedded PGlite, on PostgreSQL with --workers 1 and with --workers N (default: the cores),
 * against cfssl's `cfssl serve` (/api/v1/cfssl/sign, nothing stored), interleaved in the same
 * run at concurrency 1, 8 and 32. P-256 issuer, P-256 leaf, the same CSR. Per run: CPU per
 * certificate of the server, its workers, its partition and PostgreSQL (from /proc), the ratio
 * to cfssl, and at c=1 the disk's fdatasync latency measured just before. Then RSS idle and after
 * --rss-seconds at c=32, and a CPU profile of one signet server (--profile) at the highest c.
 *
 *   node --import tsx bench/http-issue.ts [--seconds 5] [--concurrency 1,8,32] [--rss-seconds 60]
 *       [--workers N] [--profile signet-postgres-w1|signet-pglite] [--no-profile]
 *
 * Needs `cfssl` (Debian: apt-get install golang-cfssl) and openssl. PostgreSQL: $DATABASE_URL if
 * set, else a private PostgreSQL 15 cluster (fsync on) from /usr/lib/postgresql/15/bin, else
 * skipped. The load generator runs in its own process (this file with --load).
 */
import { type ChildProcess, execFile, execFileSync, spawn, spawnSync } from 'node:child_process';
import { openSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs, promisify } from 'node:util';
import pg from 'pg';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { summariseProfile } from './cpu-profile.ts';
import { type LoadResult, type LoadSpec, runLoad } from './http-load.ts';
import { cpuByRole, cpuSeconds, fdatasyncLatencyMs, rssByRole } from './proc.ts';
import { freePort, scratch, throwawayPostgres as startPostgres } from './support.ts';

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '5' },
    concurrency: { type: 'string', default: '1,8,32' },
    'no-profile': { type: 'boolean', default: false },
    /** Load at c=32 for this long before reading each server's RSS after load. */
    'rss-seconds': { type: 'string', default: '60' },
    /** HTTP workers of the second PostgreSQL server (default: the number of cores). */
    workers: { type: 'string', default: String(availableParallelism()) },
    /** Which servers run: any of pglite, postgres-w1, postgres-wn, cfssl. */
    only: { type: 'string', default: 'pglite,postgres-w1,postgres-wn,cfssl' },
    /** Which signet server is profiled under the highest concurrency. */
    profile: { type: 'string', default: 'signet-postgres-w1' },
    load: { type: 'string' },
  },
});

if (values.load !== undefined) {
  const result = await runLoad(JSON.parse(values.load) as LoadSpec);
  process.stdout.write(`${JSON.stringify(result)}\n`);
  process.exit(0);
}

// ---------------------------------------------------------------------------------------------
// Orchestrator mode.

const SECONDS = Number(values.seconds);
const CONCURRENCIES = values.concurrency.split(',').map(Number);
const REPO = fileURLToPath(new URL('..', import.meta.url));
const SELF = fileURLToPath(import.meta.url);
const { children, stops, tempDir } = scratch;
const cleanup = scratch.cleanup;

async function waitForHttp(url: string, child: ChildProcess, seconds = 60): Promise<void> {
  const deadline = Date.now() + seconds * 1000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`${url}: server exited with ${child.exitCode}`);
    try {
      await fetch(url, { signal: AbortSignal.timeout(1000) });
      return;
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }
  throw new Error(`${url}: not answering after ${seconds}s`);
}

/** A server's output goes to a file, not a pipe: a pipe nobody drains would block its logging. */
function logFile(label: string): { fd: number; file: string } {
  const file = path.join(tempDir('signet-bench-log-'), `${label.replace(/\W+/g, '-')}.log`);
  return { fd: openSync(file, 'w'), file };
}

function track(child: ChildProcess, label: string, log: string): ChildProcess {
  children.add(child);
  child.on('exit', (code, signal) => {
    children.delete(child);
    if (code && code !== 130) {
      const tail = readFileSync(log, 'utf8').slice(-2000);
      console.error(`${label} exited ${code ?? signal}: ${tail}`);
    }
  });
  return child;
}

async function stopChild(child: ChildProcess, signal: NodeJS.Signals = 'SIGINT'): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill(signal);
  const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
  await exited;
  clearTimeout(timer);
}

async function throwawayPostgres() {
  const pg = await startPostgres();
  if (!pg) return undefined;
  // Registered so an interrupted run still stops the cluster.
  const stop = () => {
    stops.delete(stop);
    pg.stop();
  };
  stops.add(stop);
  return { ...pg, stop };
}

/** A database of its own for each signet server on the cluster. */
async function createDatabase(url: string, name: string): Promise<string> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(`create database ${name}`);
  } finally {
    await client.end();
  }
  const database = new URL(url);
  database.pathname = `/${name}`;
  return database.toString();
}

interface Target {
  name: string;
  url: string;
  headers: Record<string, string>;
  bodyFile: string;
  expectStatus: number;
  pid(): number;
  /** The PostgreSQL postmaster this target's database runs in (its CPU is counted apart). */
  databasePid?: number;
  stop(): Promise<void>;
}

function signetCli(args: string[], env: NodeJS.ProcessEnv): void {
  execFileSync(process.execPath, [path.join(REPO, 'bin/signet.js'), ...args], {
    cwd: REPO,
    env,
    stdio: ['ignore', 'ignore', 'inherit'],
  });
}

/** `signet init` then `signet serve` on a fresh data folder; the rate limit is lifted for the run. */
async function startSignet(
  name: string,
  csrDer: string,
  databaseUrl: string | undefined,
  workers: number,
  nodeFlags: string[] = [],
  dataDir?: string,
): Promise<Target & { dataDir: string; databaseUrl: string | undefined; workers: number }> {
  const env: NodeJS.ProcessEnv = { ...process.env, SIGNET_LOG_LEVEL: 'info' };
  delete env.DATABASE_URL;
  if (databaseUrl) env.DATABASE_URL = databaseUrl;
  const port = await freePort();
  const dir = dataDir ?? path.join(tempDir('signet-bench-http-'), 'data');
  if (!dataDir) {
    signetCli(['init', '--data', dir, '--port', String(port)], env);
    const configFile = path.join(dir, 'signet.yaml');
    const config = parseYaml(readFileSync(configFile, 'utf8')) as Record<string, unknown>;
    // The default 6000 requests per credential per minute would cap the run at 100/s.
    config.rateLimit = { perMinute: 100_000_000 };
    writeFileSync(configFile, stringifyYaml(config));
  }
  // Logs are formatted and written to a file, as in production at level info.
  const log = logFile(name);
  const child = track(
    spawn(
      process.execPath,
      [
        ...nodeFlags,
        path.join(REPO, 'bin/signet.js'),
        'serve',
        '--data',
        dir,
        '--port',
        String(port),
        '--workers',
        String(workers),
      ],
      { cwd: REPO, env, stdio: ['ignore', log.fd, log.fd] },
    ),
    name,
    log.file,
  );
  const base = `http://127.0.0.1:${port}`;
  await waitForHttp(`${base}/healthz`, child);
  const key = readFileSync(path.join(dir, 'secrets', 'admin-api-key'), 'utf8').trim();
  return {
    name,
    dataDir: dir,
    databaseUrl,
    workers,
    url: `${base}/v1/certificates?policy=web-server`,
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/pkcs10' },
    bodyFile: csrDer,
    expectStatus: 201,
    pid: () => child.pid ?? 0,
    stop: () => stopChild(child),
  };
}

async function startCfssl(work: string, csrPem: string): Promise<Target> {
  const dir = path.join(work, 'cfssl');
  execFileSync('mkdir', ['-p', dir]);
  const caCsr = path.join(dir, 'ca-csr.json');
  writeFileSync(caCsr, JSON.stringify({ CN: 'cfssl bench CA', key: { algo: 'ecdsa', size: 256 } }));
  const out = JSON.parse(
    execFileSync('cfssl', ['gencert', '-initca', caCsr], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    }),
  ) as { cert: string; key: string };
  writeFileSync(path.join(dir, 'ca.pem'), out.cert);
  writeFileSync(path.join(dir, 'ca-key.pem'), out.key, { mode: 0o600 });
  const body = path.join(dir, 'sign.json');
  writeFileSync(body, JSON.stringify({ certificate_request: readFileSync(csrPem, 'utf8') }));
  const port = await freePort();
  // cfssl logs each request at its default level (info) to the file, as signet does.
  const log = logFile('cfssl');
  const child = track(
    spawn(
      'cfssl',
      ['serve', '-address', '127.0.0.1', '-port', String(port), '-ca', 'ca.pem', '-ca-key', 'ca-key.pem'],
      { cwd: dir, stdio: ['ignore', log.fd, log.fd] },
    ),
    'cfssl',
    log.file,
  );
  const url = `http://127.0.0.1:${port}/api/v1/cfssl/sign`;
  await waitForHttp(url, child);
  return {
    name: 'cfssl',
    url,
    headers: { 'content-type': 'application/json' },
    bodyFile: body,
    expectStatus: 200,
    pid: () => child.pid ?? 0,
    stop: () => stopChild(child, 'SIGTERM'),
  };
}

async function load(target: Target, concurrency: number, seconds: number): Promise<Row> {
  const spec: LoadSpec = {
    url: target.url,
    headers: target.headers,
    bodyFile: target.bodyFile,
    expectStatus: target.expectStatus,
    concurrency,
    seconds,
    warmupSeconds: Math.min(2, Math.max(0.5, seconds / 4)),
  };
  const cpuBefore = cpuByRole(target.pid());
  const databaseBefore = target.databasePid ? cpuSeconds(target.databasePid) : 0;
  const { stdout: out } = await promisify(execFile)(
    process.execPath,
    ['--import', 'tsx', SELF, '--load', JSON.stringify(spec)],
    { cwd: REPO, encoding: 'utf8', timeout: (seconds + 60) * 1000 },
  );
  const cpuAfter = cpuByRole(target.pid());
  const databaseCpu = target.databasePid ? cpuSeconds(target.databasePid) - databaseBefore : Number.NaN;
  const result = JSON.parse(out.trim().split('\n').at(-1) ?? '{}') as LoadResult;
  if (result.errors)
    console.error(`${target.name} c=${concurrency}: ${result.errors} errors, first: ${result.firstError}`);
  const rate = result.done / (result.elapsedMs / 1000);
  return {
    target: target.name,
    concurrency,
    rate,
    p50: result.latenciesMs.p50,
    p99: result.latenciesMs.p99,
    errors: result.errors,
    // Read around the whole load process, so it counts the warm-up requests too.
    cpuMs: {
      server: ((cpuAfter.server - cpuBefore.server) * 1000) / (result.done + result.warmedUp),
      workers: ((cpuAfter.workers - cpuBefore.workers) * 1000) / (result.done + result.warmedUp),
      partition: ((cpuAfter.partition - cpuBefore.partition) * 1000) / (result.done + result.warmedUp),
      database: (databaseCpu * 1000) / (result.done + result.warmedUp),
    },
    clientCpuMs: result.clientCpuMs,
    answered: result.done + result.warmedUp,
  };
}

interface Row {
  target: string;
  concurrency: number;
  rate: number;
  p50: number;
  p99: number;
  errors: number;
  /** CPU ms per certificate: the server process, its HTTP workers, its partition, PostgreSQL. */
  cpuMs: { server: number; workers: number; partition: number; database: number };
  clientCpuMs: number;
  /** At c=1: the disk's fdatasync latency measured just before (ms). */
  fdatasync?: { p50: number; p99: number };
  /** 201 (or 200) answers, warm-up included. */
  answered: number;
}

async function countStored(target: Target): Promise<number> {
  const base = new URL(target.url);
  let count = 0;
  let cursor: string | undefined;
  do {
    const url = new URL('/v1/certificates', base);
    url.searchParams.set('limit', '500');
    url.searchParams.set('policy', 'web-server');
    if (cursor) url.searchParams.set('cursor', cursor);
    const response = await fetch(url, { headers: { authorization: target.headers.authorization ?? '' } });
    if (!response.ok) throw new Error(`${target.name}: listing answered ${response.status}`);
    const page = (await response.json()) as { items: unknown[]; nextCursor?: string | null };
    count += page.items.length;
    cursor = page.nextCursor ?? undefined;
  } while (cursor);
  return count;
}

// ---------------------------------------------------------------------------------------------

const fmt = (n: number, digits = 0) => (Number.isFinite(n) ? n.toFixed(digits) : '-');

async function makeCsr(work: string): Promise<{ csrDer: string; csrPem: string }> {
  const csrDer = path.join(work, 'leaf.csr.der');
  const csrPem = path.join(work, 'leaf.csr.pem');
  execFileSync(
    'openssl',
    [
      'req',
      '-new',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-keyout',
      path.join(work, 'leaf.key'),
      '-subj',
      '/CN=bench.example.com',
      '-addext',
      'subjectAltName=DNS:bench.example.com',
      '-out',
      csrPem,
    ],
    { stdio: 'ignore' },
  );
  execFileSync('openssl', ['req', '-in', csrPem, '-outform', 'DER', '-out', csrDer]);
  return { csrDer, csrPem };
}

const rssText = (r: ReturnType<typeof rssByRole>) =>
  `server ${fmt(r.server)} MB, workers ${fmt(r.workers)} MB, partition ${fmt(r.partition)} MB, total ${fmt(r.server + r.workers + r.partition)} MB`;

function printTables(rows: Row[]): void {
  console.log('');
  // CPU per certificate from /proc (user + system), warm-up included: steadier than the rates on
  // a busy machine. PostgreSQL's own CPU (its backends) is apart; it is not in "excl. database".
  console.log(
    '| server | c | certificates/s | × cfssl | p50 ms | p99 ms | fdatasync p50/p99 ms | CPU ms/cert: server | workers | partition | excl. database | PostgreSQL | client CPU ms/req | errors |',
  );
  console.log('|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|');
  for (const row of rows) {
    const cfssl = rows.find((r) => r.target === 'cfssl' && r.concurrency === row.concurrency)?.rate ?? NaN;
    const c = row.cpuMs;
    console.log(
      `| ${row.target} | ${row.concurrency} | ${fmt(row.rate)} | ${fmt(row.rate / cfssl, 2)} | ${fmt(row.p50, 2)} | ${fmt(row.p99, 2)} | ${row.fdatasync ? `${fmt(row.fdatasync.p50, 2)} / ${fmt(row.fdatasync.p99, 2)}` : ''} | ${fmt(c.server, 2)} | ${fmt(c.workers, 2)} | ${fmt(c.partition, 2)} | ${fmt(c.server + c.workers + c.partition, 2)} | ${fmt(c.database, 2)} | ${fmt(row.clientCpuMs, 2)} | ${row.errors} |`,
    );
  }
}

async function profileTarget(
  target: Target & { dataDir: string; databaseUrl: string | undefined; workers: number },
  csrDer: string,
  concurrency: number,
): Promise<void> {
  await target.stop();
  const profileDir = tempDir('signet-bench-prof-');
  const profiled = await startSignet(
    `${target.name} (profiled)`,
    csrDer,
    target.databaseUrl,
    1,
    ['--cpu-prof', '--cpu-prof-dir', profileDir],
    target.dataDir,
  );
  const fromUs = Number(process.hrtime.bigint() / 1000n);
  const row = await load(profiled, concurrency, SECONDS);
  const toUs = Number(process.hrtime.bigint() / 1000n);
  await profiled.stop();
  console.log('');
  console.log(`CPU profile of ${target.name} under c=${concurrency}: ${fmt(row.rate)} /s while profiling`);
  // CPU.<date>.<time>.<pid>.<thread>.<seq>.cpuprofile: thread 0 is the main thread.
  const main = readdirSync(profileDir).find((f) => f.endsWith('.cpuprofile') && f.split('.')[4] === '0');
  if (!main) console.log('no profile written');
  else
    for (const line of summariseProfile(path.join(profileDir, main), fromUs, toUs, row.answered))
      console.log(line);
}

async function main(): Promise<void> {
  if (spawnSync('cfssl', ['version']).status !== 0) {
    console.error('bench/http-issue needs cfssl: apt-get install golang-cfssl');
    process.exitCode = 1;
    return;
  }
  const work = tempDir('signet-bench-http-work-');
  const { csrDer, csrPem } = await makeCsr(work);
  const workers = Number(values.workers);
  console.log(
    `bench/http-issue: ${SECONDS}s per run after warm-up, concurrency ${CONCURRENCIES.join(',')}, P-256 issuer and leaf, one CSR; ${availableParallelism()} cores`,
  );
  console.log(`machine: ${execFileSync('uptime', { encoding: 'utf8' }).trim()}`);
  const targets: (Target & Partial<{ dataDir: string; databaseUrl: string | undefined; workers: number }>)[] =
    [];
  const database = await throwawayPostgres();
  const databasePid = database?.pid?.();
  try {
    const only = new Set(values.only.split(','));
    if (only.has('pglite')) targets.push(await startSignet('signet-pglite', csrDer, undefined, 1));
    if (database && (only.has('postgres-w1') || only.has('postgres-wn'))) {
      console.log(`PostgreSQL: ${database.dataDir ? 'a private cluster, fsync on' : '$DATABASE_URL'}`);
      const w1 = await startSignet(
        'signet-postgres-w1',
        csrDer,
        await createDatabase(database.url, 'bench_w1'),
        1,
      );
      targets.push({ ...w1, ...(databasePid ? { databasePid } : {}) });
      if (workers > 1) {
        const wn = await startSignet(
          `signet-postgres-w${workers}`,
          csrDer,
          await createDatabase(database.url, 'bench_wn'),
          workers,
        );
        targets.push({ ...wn, ...(databasePid ? { databasePid } : {}) });
      }
    } else console.log('[postgres] skipped: no DATABASE_URL and no PostgreSQL 15 binaries');
    if (only.has('cfssl')) targets.push(await startCfssl(work, csrPem));

    // Idle memory: started, nothing asked yet but readiness, a few seconds to settle.
    await new Promise((resolve) => setTimeout(resolve, 3000));
    const idle = new Map(targets.map((t) => [t.name, rssByRole(t.pid())]));

    const rows: Row[] = [];
    const syncDir = database?.dataDir ?? work;
    for (const concurrency of CONCURRENCIES) {
      for (const target of targets) {
        const fdatasync = concurrency === 1 ? fdatasyncLatencyMs(syncDir) : undefined;
        const row = { ...(await load(target, concurrency, SECONDS)), ...(fdatasync ? { fdatasync } : {}) };
        rows.push(row);
        console.log(
          `  ${row.target.padEnd(20)} c=${String(concurrency).padEnd(3)} ${fmt(row.rate).padStart(6)} /s  p50 ${fmt(row.p50, 2)} ms  p99 ${fmt(row.p99, 2)} ms${fdatasync ? `  (fdatasync p50 ${fmt(fdatasync.p50, 2)} ms)` : ''}`,
        );
      }
    }
    printTables(rows);

    // Every 201 should be a stored certificate: count them back through the API.
    for (const target of targets.filter((t) => t.name.startsWith('signet'))) {
      const answered = rows.filter((r) => r.target === target.name).reduce((sum, r) => sum + r.answered, 0);
      console.log(
        `${target.name}: ${answered} certificates answered 201, ${await countStored(target)} listed`,
      );
    }

    const rssSeconds = Number(values['rss-seconds']);
    console.log('');
    console.log(`RSS idle, then after ${rssSeconds} s at c=32:`);
    for (const target of targets) {
      const loaded = await load(target, 32, rssSeconds);
      console.log(`  ${target.name.padEnd(20)} idle:  ${rssText(idle.get(target.name)!)}`);
      console.log(
        `  ${''.padEnd(20)} after: ${rssText(rssByRole(target.pid()))} (${fmt(loaded.rate)} /s during it)`,
      );
    }

    const profiled = targets.find((t) => t.name === values.profile);
    if (!values['no-profile'] && profiled?.dataDir) {
      targets.splice(targets.indexOf(profiled), 1);
      await profileTarget(
        profiled as Target & { dataDir: string; databaseUrl: string | undefined; workers: number },
        csrDer,
        Math.max(...CONCURRENCIES),
      );
    }
    console.log(`machine after: ${execFileSync('uptime', { encoding: 'utf8' }).trim()}`);
  } finally {
    for (const target of targets) await target.stop();
    database?.stop();
  }
}

await main();
cleanup();
