/**
 * bench/http-issue (issue #10): certificates per second and p50/p99 latency over HTTP, through
 * `signet serve` (POST /v1/certificates?policy=web-server, every certificate stored) on the
 * embedded PGlite and on PostgreSQL, against cfssl's `cfssl serve` (/api/v1/cfssl/sign, nothing
 * stored) in the same run, at concurrency 1, 8 and 32. P-256 issuer, P-256 leaf, the same CSR.
 * Then a CPU profile of the PGlite server under c=32, summarised by module.
 *
 *   node --import tsx bench/http-issue.ts [--seconds 5] [--concurrency 1,8,32] [--no-profile]
 *
 * Needs `cfssl` (Debian: apt-get install golang-cfssl) and openssl. PostgreSQL: $DATABASE_URL if
 * set, else a throwaway PostgreSQL 15 cluster from /usr/lib/postgresql/15/bin, else skipped.
 * The load generator runs in its own process (this file with --load), so the server under test
 * has the event loop of its process to itself; runs are interleaved by concurrency.
 */
import { type ChildProcess, execFile, execFileSync, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs, promisify } from 'node:util';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { freePort, throwawayPostgres as startPostgres } from './support.ts';

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '5' },
    concurrency: { type: 'string', default: '1,8,32' },
    'no-profile': { type: 'boolean', default: false },
    load: { type: 'string' },
  },
});

// ---------------------------------------------------------------------------------------------
// Load generator mode: `--load <json>`; prints one JSON line with the result.

interface LoadSpec {
  url: string;
  headers: Record<string, string>;
  bodyFile: string;
  expectStatus: number;
  concurrency: number;
  seconds: number;
  warmupSeconds: number;
}

interface LoadResult {
  done: number;
  /** Requests answered during the warm-up, not timed. */
  warmedUp: number;
  /** The load generator's own CPU per timed request: near 1 ms means the client is the limit. */
  clientCpuMs: number;
  errors: number;
  firstError?: string;
  elapsedMs: number;
  latenciesMs: { p50: number; p99: number; max: number };
}

async function runLoad(spec: LoadSpec): Promise<LoadResult> {
  const body = readFileSync(spec.bodyFile);
  const agent = new Agent({ keepAlive: true, maxSockets: spec.concurrency });
  const url = new URL(spec.url);
  const once = () =>
    new Promise<{ status: number; text: string }>((resolve, reject) => {
      const req = request(
        {
          agent,
          host: url.hostname,
          port: url.port,
          path: url.pathname + url.search,
          method: 'POST',
          headers: { ...spec.headers, 'content-length': String(body.length) },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (chunk: Buffer) => chunks.push(chunk));
          res.on('end', () =>
            resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }),
          );
          res.on('error', reject);
        },
      );
      req.on('error', reject);
      req.end(body);
    });
  let errors = 0;
  let firstError: string | undefined;
  const latencies: number[] = [];
  let warmedUp = 0;
  const loop = async (until: number, record: boolean) => {
    while (performance.now() < until) {
      const started = performance.now();
      try {
        const { status, text } = await once();
        if (status !== spec.expectStatus) throw new Error(`HTTP ${status}: ${text.slice(0, 200)}`);
        if (record) latencies.push(performance.now() - started);
        else warmedUp += 1;
      } catch (error) {
        errors += 1;
        firstError ??= String(error);
        if (errors > 100) throw new Error(`too many errors, first: ${firstError}`);
      }
    }
  };
  const workers = (until: number, record: boolean) =>
    Promise.all(Array.from({ length: spec.concurrency }, () => loop(until, record)));
  await workers(performance.now() + spec.warmupSeconds * 1000, false);
  errors = 0;
  const started = performance.now();
  const cpuBefore = process.cpuUsage();
  await workers(started + spec.seconds * 1000, true);
  const cpu = process.cpuUsage(cpuBefore);
  const elapsedMs = performance.now() - started;
  agent.destroy();
  latencies.sort((a, b) => a - b);
  const at = (q: number) =>
    latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? NaN;
  return {
    done: latencies.length,
    warmedUp,
    clientCpuMs: (cpu.user + cpu.system) / 1000 / Math.max(1, latencies.length),
    errors,
    ...(firstError ? { firstError } : {}),
    elapsedMs,
    latenciesMs: { p50: at(0.5), p99: at(0.99), max: latencies.at(-1) ?? NaN },
  };
}

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
const children = new Set<ChildProcess>();
const temporary: string[] = [];
/** Stops for what is not a child of this process (a daemonised PostgreSQL cluster). */
const stops = new Set<() => void>();

function cleanup(): void {
  for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
  for (const stop of stops) {
    try {
      stop();
    } catch {
      // Already stopped.
    }
  }
  stops.clear();
  for (const dir of temporary) rmSync(dir, { recursive: true, force: true });
}
process.on('exit', cleanup);
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    cleanup();
    process.exit(130);
  });
}

function tempDir(prefix: string): string {
  const dir = mkdtempSync(path.join(tmpdir(), prefix));
  temporary.push(dir);
  return dir;
}

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

/** CPU seconds (user + system) of a process and all its descendants, from /proc. */
function cpuSeconds(pid: number): number {
  const ticks = 100; // USER_HZ on Linux
  let total = 0;
  const visit = (p: number) => {
    try {
      const stat = readFileSync(`/proc/${p}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      total += (Number(fields[11]) + Number(fields[12])) / ticks;
      for (const task of readdirSync(`/proc/${p}/task`)) {
        const kids = readFileSync(`/proc/${p}/task/${task}/children`, 'utf8').trim();
        for (const kid of kids ? kids.split(' ') : []) visit(Number(kid));
      }
    } catch {
      // The process ended between reads.
    }
  };
  visit(pid);
  return total;
}

async function throwawayPostgres(): Promise<{ url: string; stop(): void } | undefined> {
  const pg = await startPostgres();
  if (!pg) return undefined;
  // Registered so an interrupted run still stops the cluster.
  const stop = () => {
    stops.delete(stop);
    pg.stop();
  };
  stops.add(stop);
  return { url: pg.url, stop };
}

interface Target {
  name: string;
  url: string;
  headers: Record<string, string>;
  bodyFile: string;
  expectStatus: number;
  pid(): number;
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
  nodeFlags: string[] = [],
  dataDir?: string,
): Promise<Target & { dataDir: string }> {
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
      [...nodeFlags, path.join(REPO, 'bin/signet.js'), 'serve', '--data', dir, '--port', String(port)],
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
  const cpuBefore = cpuSeconds(target.pid());
  const { stdout: out } = await promisify(execFile)(
    process.execPath,
    ['--import', 'tsx', SELF, '--load', JSON.stringify(spec)],
    { cwd: REPO, encoding: 'utf8', timeout: (seconds + 60) * 1000 },
  );
  const cpu = cpuSeconds(target.pid()) - cpuBefore;
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
    cpuMsPerRequest: (cpu * 1000) / (result.done + result.warmedUp),
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
  cpuMsPerRequest: number;
  clientCpuMs: number;
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
// CPU profile summary: self time by module and by function.

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}

function moduleOf(url: string, functionName: string): string {
  if (!url) return functionName.startsWith('(') ? functionName : '(native)';
  const file = url.replace(/^file:\/\//, '');
  const nm = file.lastIndexOf('/node_modules/');
  if (nm >= 0) {
    const parts = file.slice(nm + '/node_modules/'.length).split('/');
    return parts[0]?.startsWith('@') ? `${parts[0]}/${parts[1]}` : (parts[0] ?? file);
  }
  if (file.startsWith('node:')) return file.split('/').slice(0, 2).join('/');
  const relative = path.relative(REPO, file);
  if (!relative.startsWith('..')) return path.dirname(relative);
  return file;
}

/**
 * Only samples inside [fromUs, toUs] count (the measured load, not start-up or shut-down): V8's
 * profile timestamps and process.hrtime are both CLOCK_MONOTONIC on Linux.
 */
function summariseProfile(file: string, fromUs: number, toUs: number): string[] {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as {
    nodes: ProfileNode[];
    samples: number[];
    timeDeltas: number[];
    startTime: number;
  };
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const selfUs = new Map<number, number>();
  let at = profile.startTime;
  profile.samples.forEach((id, i) => {
    const delta = profile.timeDeltas[i] ?? 0;
    at += delta;
    if (at < fromUs || at > toUs) return;
    selfUs.set(id, (selfUs.get(id) ?? 0) + delta);
  });
  let total = 0;
  let idle = 0;
  const modules = new Map<string, number>();
  const functions = new Map<string, number>();
  for (const [id, us] of selfUs) {
    const frame = byId.get(id)?.callFrame;
    if (!frame) continue;
    total += us;
    if (frame.functionName === '(idle)') {
      idle += us;
      continue;
    }
    const module = moduleOf(frame.url, frame.functionName);
    modules.set(module, (modules.get(module) ?? 0) + us);
    const fn = `${frame.functionName || '(anonymous)'} ${module}${frame.url ? `/${path.basename(frame.url)}:${frame.lineNumber + 1}` : ''}`;
    functions.set(fn, (functions.get(fn) ?? 0) + us);
  }
  const busy = total - idle;
  const lines = [
    `profile: ${(total / 1e6).toFixed(1)}s of load (warm-up included) sampled on the server's main thread, ${((idle / total) * 100).toFixed(0)}% idle; shares below are of the busy ${(busy / 1e6).toFixed(1)}s`,
    'self time by module:',
  ];
  const top = (map: Map<string, number>, n: number) => [...map].sort((a, b) => b[1] - a[1]).slice(0, n);
  for (const [name, us] of top(modules, 18))
    lines.push(`  ${((us / busy) * 100).toFixed(1).padStart(5)}%  ${name}`);
  lines.push('self time by function (top 15):');
  for (const [name, us] of top(functions, 15))
    lines.push(`  ${((us / busy) * 100).toFixed(1).padStart(5)}%  ${name}`);
  return lines;
}

// ---------------------------------------------------------------------------------------------

const fmt = (n: number, digits = 0) => (Number.isFinite(n) ? n.toFixed(digits) : '-');

async function main(): Promise<void> {
  if (spawnSync('cfssl', ['version']).status !== 0) {
    console.error('bench/http-issue needs cfssl: apt-get install golang-cfssl');
    process.exitCode = 1;
    return;
  }
  const work = tempDir('signet-bench-http-work-');
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

  console.log(
    `bench/http-issue: ${SECONDS}s per run after warm-up, concurrency ${CONCURRENCIES.join(',')}, P-256 issuer and leaf, one CSR`,
  );
  console.log(`machine: ${execFileSync('uptime', { encoding: 'utf8' }).trim()}`);
  const targets: Target[] = [];
  const pg = await throwawayPostgres();
  try {
    targets.push(await startSignet('signet-pglite', csrDer, undefined));
    if (pg) targets.push(await startSignet('signet-postgres', csrDer, pg.url));
    else console.log('[postgres] skipped: no DATABASE_URL and no PostgreSQL 15 binaries');
    targets.push(await startCfssl(work, csrPem));

    const rows: Row[] = [];
    for (const concurrency of CONCURRENCIES) {
      for (const target of targets) {
        const row = await load(target, concurrency, SECONDS);
        rows.push(row);
        console.log(
          `  ${row.target.padEnd(16)} c=${String(concurrency).padEnd(3)} ${fmt(row.rate).padStart(6)} /s  p50 ${fmt(row.p50, 2)} ms  p99 ${fmt(row.p99, 2)} ms`,
        );
      }
    }

    console.log('');
    // CPU per certificate is the server process and its children (signet's partition process),
    // user + system, from /proc: less sensitive than the rates to a machine busy with other work.
    console.log(
      '| server | c | certificates/s | p50 ms | p99 ms | server CPU ms per certificate | client CPU ms per request | errors |',
    );
    console.log('|--------|---|----------------|--------|--------|-----|-----|--------|');
    for (const row of rows) {
      console.log(
        `| ${row.target} | ${row.concurrency} | ${fmt(row.rate)} | ${fmt(row.p50, 2)} | ${fmt(row.p99, 2)} | ${fmt(row.cpuMsPerRequest, 2)} | ${fmt(row.clientCpuMs, 2)} | ${row.errors} |`,
      );
    }
    console.log('');
    console.log('| c | signet-pglite / cfssl | signet-postgres / cfssl |');
    console.log('|---|------|------|');
    for (const concurrency of CONCURRENCIES) {
      const of = (name: string) => rows.find((r) => r.target === name && r.concurrency === concurrency)?.rate;
      const cfssl = of('cfssl') ?? NaN;
      const ratio = (name: string) => fmt((of(name) ?? NaN) / cfssl, 2);
      console.log(`| ${concurrency} | ${ratio('signet-pglite')} | ${ratio('signet-postgres')} |`);
    }

    // Every 201 should be a stored certificate: count them back through the API.
    for (const target of targets.filter((t) => t.name.startsWith('signet'))) {
      const answered = rows.filter((r) => r.target === target.name).reduce((sum, r) => sum + r.answered, 0);
      console.log(
        `${target.name}: ${answered} certificates answered 201, ${await countStored(target)} listed`,
      );
    }

    if (!values['no-profile']) {
      const pglite = targets[0] as Target & { dataDir?: string };
      await pglite.stop();
      targets.shift();
      const profileDir = tempDir('signet-bench-prof-');
      const profiled = await startSignet(
        'signet-pglite (profiled)',
        csrDer,
        undefined,
        ['--cpu-prof', '--cpu-prof-dir', profileDir],
        (pglite as { dataDir: string }).dataDir,
      );
      targets.unshift(profiled);
      const maxC = Math.max(...CONCURRENCIES);
      const fromUs = Number(process.hrtime.bigint() / 1000n);
      const row = await load(profiled, maxC, SECONDS);
      const toUs = Number(process.hrtime.bigint() / 1000n);
      await profiled.stop();
      targets.shift();
      console.log('');
      console.log(
        `CPU profile of signet serve (PGlite) under c=${maxC}: ${fmt(row.rate)} /s while profiling`,
      );
      // CPU.<date>.<time>.<pid>.<thread>.<seq>.cpuprofile: thread 0 is the main thread (tsx's
      // module loader runs in a worker thread and writes its own, idle, profile).
      const main = readdirSync(profileDir).find((f) => f.endsWith('.cpuprofile') && f.split('.')[4] === '0');
      if (!main) console.log('no profile written');
      else for (const line of summariseProfile(path.join(profileDir, main), fromUs, toUs)) console.log(line);
    }
    console.log(`machine after: ${execFileSync('uptime', { encoding: 'utf8' }).trim()}`);
  } finally {
    for (const target of targets) await target.stop();
    pg?.stop();
  }
}

await main();
cleanup();
