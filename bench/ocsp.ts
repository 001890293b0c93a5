/**
 * bench/ocsp (issue #27): OCSP responses per second and p99 latency at c=1 and c=32, in one run:
 *
 *   signet pre-signed   a request without a nonce (POST and GET): answered from the pre-signed
 *                       response in memory, no signature
 *   cfssl ocspserve     Debian's cfssl serving a pre-signed response from a file (POST; its 2016
 *                       build answers every GET path with an error, so GET is held to its POST)
 *   signet nonce        a request with a nonce (POST): signed in the partition for each request
 *   openssl ocsp        `openssl ocsp -index` signing each response (POST, with a nonce)
 *
 *   npm run build && node --import tsx bench/ocsp.ts [--seconds 5] [--concurrency 1,32]
 *
 * Load comes from wrk (one thread). `openssl ocsp -port` binds every interface, so the whole
 * benchmark re-runs itself in a network namespace of its own (`unshare -rn`) with only `lo`
 * (brought up first); openssl ocsp also wedges once a connection closes without a request, so it
 * is restarted for every run. Signet runs as `signet serve` (bin/signet.js: the compiled dist/)
 * on the embedded PGlite, its nonce budget raised (ocsp.nonceRateLimit.perMinute) so that it
 * measures signing, not refusing. Goals: pre-signed >= 1.0x cfssl ocspserve; nonce >= 0.5x
 * openssl ocsp.
 */
import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '5' },
    concurrency: { type: 'string', default: '1,32' },
  },
});
const SECONDS = Number(values.seconds);
const CONCURRENCY = values.concurrency!.split(',').map(Number);
const HERE = path.dirname(fileURLToPath(import.meta.url));
const SIGNET = path.join(HERE, '..', 'bin', 'signet.js');

if (process.env.SIGNET_BENCH_NETNS !== '1') {
  // Re-run inside a network namespace of our own: only lo, which nobody else can reach.
  const result = spawnSync(
    'unshare',
    ['-rn', process.execPath, '--import', 'tsx', fileURLToPath(import.meta.url), ...process.argv.slice(2)],
    { stdio: 'inherit', env: { ...process.env, SIGNET_BENCH_NETNS: '1' } },
  );
  process.exit(result.status ?? 1);
}
execFileSync('ip', ['link', 'set', 'lo', 'up']);

const dir = mkdtempSync(path.join(tmpdir(), 'signet-bench-ocsp-'));
const at = (name: string) => path.join(dir, name);
const children: ChildProcess[] = [];
process.on('exit', () => {
  for (const child of children) child.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const openssl = (args: string[]) => execFileSync('openssl', args, { stdio: ['ignore', 'pipe', 'pipe'] });

async function waitFor(url: string, init?: RequestInit): Promise<void> {
  for (let i = 0; i < 600; i++) {
    try {
      const response = await fetch(url, init);
      if (response.status < 500) return;
    } catch {}
    await sleep(100);
  }
  throw new Error(`${url} did not answer`);
}

function start(command: string, args: string[], env: NodeJS.ProcessEnv = process.env): ChildProcess {
  const child = spawn(command, args, { stdio: ['ignore', 'ignore', 'inherit'], env });
  children.push(child);
  return child;
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  await Promise.race([exited, sleep(5000)]);
  if (child.exitCode === null) child.kill('SIGKILL');
}

// ---- Signet --------------------------------------------------------------------------------------

async function startSignet() {
  const dataDir = at('signet');
  const port = 18080;
  execFileSync(
    process.execPath,
    [SIGNET, 'init', '--data', dataDir, '--port', String(port), '--public-url', `http://127.0.0.1:${port}`],
    {
      stdio: 'ignore',
    },
  );
  const configFile = path.join(dataDir, 'signet.yaml');
  const config = parseYaml(readFileSync(configFile, 'utf8'));
  config.ocsp = { ...config.ocsp, nonceRateLimit: { perMinute: 100_000_000 } };
  config.log = { level: 'warn' };
  writeFileSync(configFile, stringifyYaml(config));
  const server = start(process.execPath, [SIGNET, 'serve', '--data', dataDir]);
  const base = `http://127.0.0.1:${port}`;
  await waitFor(`${base}/healthz`);
  openssl([
    'req',
    '-new',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:P-256',
    '-nodes',
    '-keyout',
    at('s-leaf.key'),
    '-out',
    at('s-leaf.csr'),
    '-subj',
    '/CN=bench.example.com',
    '-addext',
    'subjectAltName=DNS:bench.example.com',
  ]);
  const key = readFileSync(path.join(dataDir, 'secrets', 'admin-api-key'), 'utf8').trim();
  const response = await fetch(`${base}/v1/certificates`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ csr: readFileSync(at('s-leaf.csr'), 'utf8'), policy: 'web-server' }),
  });
  const issued = (await response.json()) as { certificate: string; chain: string[] };
  writeFileSync(at('s-leaf.pem'), issued.certificate);
  writeFileSync(at('s-issuer.pem'), issued.chain[0]!);
  openssl([
    'ocsp',
    '-issuer',
    at('s-issuer.pem'),
    '-cert',
    at('s-leaf.pem'),
    '-no_nonce',
    '-reqout',
    at('s-plain.der'),
  ]);
  openssl(['ocsp', '-issuer', at('s-issuer.pem'), '-cert', at('s-leaf.pem'), '-reqout', at('s-nonce.der')]);
  return { server, url: `${base}/ocsp` };
}

// ---- openssl ocsp and cfssl ocspserve over a throwaway CA ---------------------------------------

function makeOpensslCa() {
  openssl([
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:P-256',
    '-nodes',
    '-keyout',
    at('o-ca.key'),
    '-out',
    at('o-ca.pem'),
    '-subj',
    '/CN=Bench CA',
    '-days',
    '2',
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-addext',
    'keyUsage=critical,keyCertSign,cRLSign,digitalSignature',
  ]);
  openssl([
    'req',
    '-new',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:P-256',
    '-nodes',
    '-keyout',
    at('o-leaf.key'),
    '-out',
    at('o-leaf.csr'),
    '-subj',
    '/CN=bench.example.com',
  ]);
  openssl([
    'x509',
    '-req',
    '-in',
    at('o-leaf.csr'),
    '-CA',
    at('o-ca.pem'),
    '-CAkey',
    at('o-ca.key'),
    '-set_serial',
    '0x5eed5eed5eed5eed',
    '-days',
    '1',
    '-out',
    at('o-leaf.pem'),
  ]);
  const expiry = openssl(['x509', '-in', at('o-leaf.pem'), '-noout', '-enddate'])
    .toString()
    .trim()
    .slice('notAfter='.length);
  const d = new Date(expiry);
  const two = (n: number) => String(n).padStart(2, '0');
  const stamp = `${two(d.getUTCFullYear() % 100)}${two(d.getUTCMonth() + 1)}${two(d.getUTCDate())}${two(d.getUTCHours())}${two(d.getUTCMinutes())}${two(d.getUTCSeconds())}Z`;
  writeFileSync(at('index.txt'), `V\t${stamp}\t\t5EED5EED5EED5EED\tunknown\t/CN=bench.example.com\n`);
  openssl([
    'ocsp',
    '-issuer',
    at('o-ca.pem'),
    '-cert',
    at('o-leaf.pem'),
    '-no_nonce',
    '-reqout',
    at('o-plain.der'),
  ]);
  openssl(['ocsp', '-issuer', at('o-ca.pem'), '-cert', at('o-leaf.pem'), '-reqout', at('o-nonce.der')]);
  const signed = JSON.parse(
    execFileSync(
      'cfssl',
      [
        'ocspsign',
        '-ca',
        at('o-ca.pem'),
        '-responder',
        at('o-ca.pem'),
        '-responder-key',
        at('o-ca.key'),
        '-cert',
        at('o-leaf.pem'),
        '-status',
        'good',
      ],
      { stdio: ['ignore', 'pipe', 'ignore'] },
    ).toString(),
  ) as { ocspResponse: string };
  writeFileSync(at('responses.txt'), `${signed.ocspResponse}\n`);
}

async function withOpensslOcsp<T>(body: (url: string) => Promise<T>): Promise<T> {
  const port = 18090;
  // Not probed with a connection (one that closes without a request wedges it): its own line says when it listens.
  const child = spawn(
    'openssl',
    [
      'ocsp',
      '-index',
      at('index.txt'),
      '-port',
      String(port),
      '-rsigner',
      at('o-ca.pem'),
      '-rkey',
      at('o-ca.key'),
      '-CA',
      at('o-ca.pem'),
      '-nmin',
      '240',
      '-ignore_err',
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  children.push(child);
  await new Promise<void>((resolve, reject) => {
    let seen = '';
    child.stderr!.on('data', (chunk: Buffer) => {
      seen += chunk.toString();
      if (seen.includes('waiting for OCSP client connections')) resolve();
    });
    child.once('exit', () => reject(new Error(`openssl ocsp exited: ${seen}`)));
  });
  const url = `http://127.0.0.1:${port}/`;
  try {
    return await body(url);
  } finally {
    await stop(child);
  }
}

async function withCfssl<T>(body: (url: string) => Promise<T>): Promise<T> {
  const port = 18091;
  const child = start('cfssl', [
    'ocspserve',
    '-address',
    '127.0.0.1',
    '-port',
    String(port),
    '-responses',
    at('responses.txt'),
    '-loglevel',
    '5',
  ]);
  const url = `http://127.0.0.1:${port}/`;
  await waitFor(url, {
    method: 'POST',
    headers: { 'content-type': 'application/ocsp-request' },
    body: readFileSync(at('o-plain.der')),
  });
  try {
    return await body(url);
  } finally {
    await stop(child);
  }
}

// ---- wrk -----------------------------------------------------------------------------------------

interface Result {
  perSecond: number;
  p99Ms: number;
  errors: number;
}

const POST_SCRIPT = `local f = io.open(os.getenv("OCSP_BODY"), "rb")
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/ocsp-request"
`;

function wrk(url: string, concurrency: number, bodyFile?: string, extra: string[] = []): Result {
  writeFileSync(at('post.lua'), POST_SCRIPT);
  const args = [
    '-t1',
    `-c${concurrency}`,
    `-d${SECONDS}s`,
    '--latency',
    ...extra,
    ...(bodyFile ? ['-s', at('post.lua')] : []),
    url,
  ];
  const out = execFileSync('wrk', args, { env: { ...process.env, OCSP_BODY: bodyFile ?? '' } }).toString();
  const perSecond = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1]);
  const p99 = /\s99%\s+([\d.]+)(us|ms|s)/.exec(out);
  const scale = { us: 0.001, ms: 1, s: 1000 } as const;
  const p99Ms = p99 ? Number(p99[1]) * scale[p99[2] as keyof typeof scale] : Number.NaN;
  const errors =
    Number(/Non-2xx or 3xx responses:\s+(\d+)/.exec(out)?.[1] ?? 0) +
    Number(/Socket errors:.*timeout (\d+)/.exec(out)?.[1] ?? 0);
  return { perSecond, p99Ms, errors };
}

// RFC 6960 §A.1 asks for URL-encoding; Signet also takes the base64 as it is.
/**
 * A Node load client for the signed-per-request rows: wrk sends nothing `openssl ocsp` reads (it
 * hangs on wrk's connections; curl and Node work), so both rows with a nonce use this one, each
 * request on a new connection (`openssl ocsp` serves one connection at a time, HTTP/1.0).
 */
async function nodeLoad(url: string, concurrency: number, bodyFile: string): Promise<Result> {
  const body = readFileSync(bodyFile);
  const target = new URL(url);
  const latencies: number[] = [];
  let errors = 0;
  const deadline = performance.now() + SECONDS * 1000;
  const one = () =>
    new Promise<void>((resolve) => {
      const started = performance.now();
      const req = httpRequest(
        {
          host: target.hostname,
          port: target.port,
          path: target.pathname,
          method: 'POST',
          agent: false,
          headers: {
            'content-type': 'application/ocsp-request',
            'content-length': body.length,
            connection: 'close',
          },
        },
        (res) => {
          res.on('data', () => {});
          res.on('end', () => {
            if (res.statusCode === 200) latencies.push(performance.now() - started);
            else errors += 1;
            resolve();
          });
        },
      );
      req.on('error', () => {
        errors += 1;
        resolve();
      });
      req.end(body);
    });
  const worker = async () => {
    while (performance.now() < deadline) await one();
  };
  const begun = performance.now();
  await Promise.all(Array.from({ length: concurrency }, worker));
  const elapsed = (performance.now() - begun) / 1000;
  latencies.sort((a, b) => a - b);
  return {
    perSecond: latencies.length / elapsed,
    p99Ms: latencies[Math.floor(latencies.length * 0.99)] ?? Number.NaN,
    errors,
  };
}

const getUrl = (base: string, requestFile: string) =>
  `${base.replace(/\/$/, '')}/${readFileSync(requestFile).toString('base64')}`;

// ---- the run -------------------------------------------------------------------------------------

async function main(): Promise<void> {
  makeOpensslCa();
  const signet = await startSignet();
  // The first nonce-less request signs the response; every later one is served pre-signed.
  await fetch(signet.url, {
    method: 'POST',
    headers: { 'content-type': 'application/ocsp-request' },
    body: readFileSync(at('s-plain.der')),
  });
  const rows: { name: string; c: number; result: Result }[] = [];
  const record = (name: string, c: number, result: Result) => {
    rows.push({ name, c, result });
    console.log(
      `${name.padEnd(34)} c=${String(c).padEnd(3)} ${result.perSecond.toFixed(0).padStart(7)}/s  p99 ${result.p99Ms.toFixed(2).padStart(8)} ms${result.errors ? `  errors ${result.errors}` : ''}`,
    );
  };
  for (const c of CONCURRENCY) {
    record('signet pre-signed POST', c, wrk(signet.url, c, at('s-plain.der')));
    record('signet pre-signed GET', c, wrk(getUrl(signet.url, at('s-plain.der')), c));
    await withCfssl(async (url) => {
      record('cfssl ocspserve POST', c, wrk(url, c, at('o-plain.der')));
    });
    record('signet nonce POST (signed)', c, await nodeLoad(signet.url, c, at('s-nonce.der')));
    await withOpensslOcsp(async (url) => {
      record('openssl ocsp nonce POST (signed)', c, await nodeLoad(url, c, at('o-nonce.der')));
    });
  }
  await stop(signet.server);
  const find = (name: string, c: number) =>
    rows.find((row) => row.name === name && row.c === c)!.result.perSecond;
  console.log('\nratios (goal: pre-signed >= 1.0x cfssl ocspserve, nonce >= 0.5x openssl ocsp)');
  for (const c of CONCURRENCY) {
    const post = find('signet pre-signed POST', c) / find('cfssl ocspserve POST', c);
    // Debian's cfssl 2016 answers our GET paths with errors only: GET is held to its POST.
    const get = find('signet pre-signed GET', c) / find('cfssl ocspserve POST', c);
    const nonce = find('signet nonce POST (signed)', c) / find('openssl ocsp nonce POST (signed)', c);
    console.log(
      `c=${c}: pre-signed POST ${post.toFixed(2)}x, GET ${get.toFixed(2)}x cfssl; nonce ${nonce.toFixed(2)}x openssl ocsp`,
    );
  }
}

await main();
process.exit(0);
