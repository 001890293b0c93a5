/**
 * bench/acme: ACME orders completed per second with http-01, validation included (issue #30).
 *
 *   node --import tsx bench/acme.ts [--seconds 20] [--concurrency 1,16] [--database pglite,postgres] [--profile DIR]
 *
 * Starts `signet init` + `signet serve` (a child process, plain HTTP on 127.0.0.1, log level
 * info to a file) with acme.validation pointed at this process's http-01 responder and at
 * pebble-challtestsrv's mock DNS (every name answers 127.0.0.1), and ACME rate limits lifted.
 * Each client is the test suite's hand-made JWS client (test/helpers/acme-client.ts) on its own
 * account; one order is newOrder (a name never asked before, so no authorisation is reused) ->
 * authorisation -> answer http-01 -> poll the authorisation every 25 ms until valid -> finalize
 * with a fresh P-256 CSR -> download the chain. Concurrency N runs N such clients in parallel.
 * PostgreSQL: $DATABASE_URL if set, else a throwaway PostgreSQL 15 cluster, else skipped. Besides
 * the rate it reports the CPU time per order of the server (with its partition process; the
 * PostgreSQL server's own CPU not counted) and of this client process.
 */
import 'reflect-metadata';
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { AcmeClient } from '../test/helpers/acme-client.ts';
import { startHttp01Responder } from '../test/helpers/acme-responders.ts';
import { generateTestKey, handCsr, sanExtension } from '../test/x509/fixtures.ts';
import { freePort, throwawayPostgres } from './support.ts';

const REPO = fileURLToPath(new URL('..', import.meta.url));

function option(name: string, fallback: string): string {
  const at = process.argv.indexOf(`--${name}`);
  return at >= 0 && process.argv[at + 1] ? process.argv[at + 1]! : fallback;
}

const SECONDS = Number(option('seconds', '20'));
const CONCURRENCY = option('concurrency', '1,16').split(',').map(Number);
const DATABASES = option('database', 'pglite,postgres').split(',');
const POLL_MS = 25;
/** --profile DIR: the server runs under node --cpu-prof, writing its profile into DIR at exit. */
const PROFILE = option('profile', '');

const children: ChildProcess[] = [];
process.on('exit', () => {
  for (const child of children) child.kill('SIGKILL');
});

async function waitFor(url: string): Promise<void> {
  for (let i = 0; i < 600; i++) {
    try {
      if ((await fetch(url)).ok) return;
    } catch {}
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`${url} did not come up`);
}

async function startSignet(work: string, httpPort: number, dnsPort: number, databaseUrl: string | undefined) {
  const env: NodeJS.ProcessEnv = { ...process.env, SIGNET_LOG_LEVEL: 'info' };
  delete env.DATABASE_URL;
  if (databaseUrl) env.DATABASE_URL = databaseUrl;
  const port = await freePort();
  const dataDir = path.join(work, 'data');
  const signet = (args: string[]) =>
    execFileSync(process.execPath, [path.join(REPO, 'bin/signet.js'), ...args], {
      cwd: REPO,
      env,
      stdio: ['ignore', 'ignore', 'inherit'],
    });
  signet(['init', '--data', dataDir, '--port', String(port)]);
  const configFile = path.join(dataDir, 'signet.yaml');
  const config = parseYaml(readFileSync(configFile, 'utf8')) as Record<string, Record<string, unknown>>;
  config.rateLimit = { perMinute: 100_000_000 };
  config.acme = {
    ...config.acme,
    validation: { httpPort, dnsResolver: `127.0.0.1:${dnsPort}` },
    rateLimit: { newAccountsPerMinute: 10_000, newOrdersPerMinute: 100_000 },
  };
  writeFileSync(configFile, stringifyYaml(config));
  const log = openSync(path.join(work, 'signet.log'), 'a');
  const profile = PROFILE ? ['--cpu-prof', `--cpu-prof-dir=${PROFILE}`] : [];
  const child = spawn(
    process.execPath,
    [...profile, path.join(REPO, 'bin/signet.js'), 'serve', '--data', dataDir],
    {
      cwd: REPO,
      env,
      stdio: ['ignore', log, log],
    },
  );
  children.push(child);
  const base = `http://127.0.0.1:${port}`;
  await waitFor(`${base}/healthz`);
  return {
    pid: child.pid!,
    directoryUrl: `${base}/acme/dev/directory`,
    stop: () =>
      new Promise<void>((resolve) => {
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  };
}

/** CPU seconds (user + system) of a process and its children still running (the partition). */
function cpuSeconds(pid: number): number {
  const ticks = (p: number) => {
    try {
      const fields = readFileSync(`/proc/${p}/stat`, 'utf8').split(') ')[1]!.split(' ');
      return Number(fields[11]) + Number(fields[12]);
    } catch {
      return 0;
    }
  };
  let children: number[] = [];
  try {
    children = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8')
      .trim()
      .split(/\s+/)
      .filter(Boolean)
      .map(Number);
  } catch {}
  return [pid, ...children].reduce((sum, p) => sum + ticks(p), 0) / 100;
}

let sequence = 0;

/** One complete order; answers its latency in ms. */
async function oneOrder(
  client: AcmeClient,
  responder: Awaited<ReturnType<typeof startHttp01Responder>>,
  label: string,
): Promise<number> {
  const started = performance.now();
  const name = `${label}-${++sequence}-${process.pid}.example.com`;
  const order = await client.newOrder([{ type: 'dns', value: name }]);
  if (order.status !== 201) throw new Error(`newOrder: ${order.status} ${JSON.stringify(order.body)}`);
  const authzUrl: string = order.body.authorizations[0];
  const authz = await client.post(authzUrl, '');
  const challenge = authz.body.challenges.find((c: { type: string }) => c.type === 'http-01');
  responder.answers.set(challenge.token, client.keyAuthorization(challenge.token));
  await client.post(challenge.url, {});
  const done = await client.poll(authzUrl, (body) => body.status !== 'pending', 400, POLL_MS);
  responder.answers.delete(challenge.token);
  if (done.body.status !== 'valid')
    throw new Error(`authorization ${done.body.status}: ${JSON.stringify(done.body)}`);
  const key = await generateTestKey('ecdsa-p256');
  const csr = handCsr({
    key,
    extensions: [sanExtension([{ type: 'dns', value: name }])],
    subject: new Uint8Array([0x30, 0]),
  });
  const finalized = await client.post(order.body.finalize, { csr: Buffer.from(csr).toString('base64url') });
  if (finalized.body.status !== 'valid') throw new Error(`finalize: ${JSON.stringify(finalized.body)}`);
  const chain = await client.post(finalized.body.certificate, '');
  if (chain.status !== 200) throw new Error(`certificate: ${chain.status}`);
  return performance.now() - started;
}

async function run(
  directoryUrl: string,
  serverPid: number,
  concurrency: number,
  responder: Awaited<ReturnType<typeof startHttp01Responder>>,
) {
  const clients = await Promise.all(
    Array.from({ length: concurrency }, async () => {
      const client = await new AcmeClient((url, init) => fetch(url, init), directoryUrl).init();
      await client.newAccount();
      return client;
    }),
  );
  // Warm-up: one order per client, not counted.
  await Promise.all(clients.map((client) => oneOrder(client, responder, 'warm')));
  const latencies: number[] = [];
  const deadline = performance.now() + SECONDS * 1000;
  const started = performance.now();
  const serverCpu = cpuSeconds(serverPid);
  const clientCpu = process.cpuUsage();
  await Promise.all(
    clients.map(async (client) => {
      while (performance.now() < deadline)
        latencies.push(await oneOrder(client, responder, `c${concurrency}`));
    }),
  );
  const elapsed = (performance.now() - started) / 1000;
  const serverMs = ((cpuSeconds(serverPid) - serverCpu) * 1000) / latencies.length;
  const used = process.cpuUsage(clientCpu);
  const clientMs = (used.user + used.system) / 1000 / latencies.length;
  latencies.sort((a, b) => a - b);
  const at = (q: number) =>
    latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? Number.NaN;
  return {
    orders: latencies.length,
    perSecond: latencies.length / elapsed,
    p50: at(0.5),
    p99: at(0.99),
    serverMs,
    clientMs,
  };
}

const responder = await startHttp01Responder('127.0.0.1');
const dnsPort = await freePort();
const dns = spawn(
  'pebble-challtestsrv',
  [
    '-defaultIPv6',
    '',
    '-dns01',
    `127.0.0.1:${dnsPort}`,
    '-management',
    `127.0.0.1:${await freePort()}`,
    '-http01',
    '',
    '-https01',
    '',
    '-tlsalpn01',
    '',
  ],
  { stdio: 'ignore' },
);
children.push(dns);

console.log(
  `bench/acme: ${SECONDS} s per run, concurrency ${CONCURRENCY.join(', ')}, poll every ${POLL_MS} ms`,
);
console.log(
  '| database | clients | orders | orders/s | p50 ms | p99 ms | server CPU ms/order | client CPU ms/order |',
);
console.log('|---|--:|--:|--:|--:|--:|--:|--:|');
for (const database of DATABASES) {
  const postgres = database === 'postgres' ? await throwawayPostgres() : undefined;
  if (database === 'postgres' && !postgres) {
    console.log('| postgres | skipped: no DATABASE_URL and no PostgreSQL 15 binaries |');
    continue;
  }
  const work = mkdtempSync(path.join(tmpdir(), 'signet-bench-acme-'));
  const signet = await startSignet(work, responder.port, dnsPort, postgres?.url);
  try {
    for (const concurrency of CONCURRENCY) {
      const result = await run(signet.directoryUrl, signet.pid, concurrency, responder);
      console.log(
        `| ${database} | ${concurrency} | ${result.orders} | ${result.perSecond.toFixed(1)} | ${result.p50.toFixed(0)} | ${result.p99.toFixed(0)} | ${result.serverMs.toFixed(1)} | ${result.clientMs.toFixed(1)} |`,
      );
    }
  } finally {
    await signet.stop();
    postgres?.stop();
    rmSync(work, { recursive: true, force: true });
  }
}
await responder.close();
dns.kill();
process.exit(0);
