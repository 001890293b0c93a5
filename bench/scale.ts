/**
 * bench/scale (issue #34): does issuance, OCSP and the CRL stay as fast with millions of
 * certificates stored? One PostgreSQL 15 cluster (fsync on) holds one database per size, each
 * made by `signet init` (the real migrations, issuers, an admin key) and then filled by a bulk
 * loader with SIZE certificates issued by dev-intermediate under web-server (1% revoked by
 * default) and their audit events, every index of the migrations maintained as rows go in.
 * Then, round by round, for each size in turn (0, 1M, 5M, 0, 1M, 5M, ...), `signet serve` runs
 * on that size's database and the script measures:
 *
 *   issue          POST /v1/certificates?policy=web-server, one P-256 CSR, --concurrency in flight
 *   ocsp first     POST /ocsp without a nonce for stored serials never asked before: the status is
 *                  read, the response signed in the partition and stored as the pre-signed one
 *   ocsp cached    the same requests again: answered from the pre-signed response in memory
 *   ocsp nonce     POST /ocsp with a nonce for those serials: status read and signed every time
 *   crl build      dev-intermediate's complete CRL built from the database (the certificates
 *                  repository's stream, encode, lint, sign) in this process, as bench/crl.ts does
 *
 * and prints each against size 0 measured in the same round (medians over the rounds), with the
 * server's, its partition's and PostgreSQL's CPU per certificate, and the issuance statements'
 * mean execution time from pg_stat_statements at each size.
 *
 *   npm run build && node --import tsx bench/scale.ts [--sizes 0,1000000,5000000] [--rounds 3]
 *       [--seconds 10] [--concurrency 32] [--ocsp-concurrency 8] [--revoked 0.01] [--keep DIR]
 *
 * --keep DIR keeps the cluster and the signet folders in DIR and reuses the databases already
 * loaded there on the next run (a 5M load takes a while); without it everything is made in a
 * temporary folder and removed at the end.
 */
import 'reflect-metadata';
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { generateKeyPairSync, randomBytes, webcrypto } from 'node:crypto';
import {
  chmodSync,
  chownSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { Agent, request } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { OCSPResponse } from '@peculiar/asn1-ocsp';
import { AsnConvert } from '@peculiar/asn1-schema';
import * as x509 from '@peculiar/x509';
import pg from 'pg';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { createCertificatesRepository } from '../src/db/certificates.repository.ts';
import { openDatabase } from '../src/db/database.ts';
import { buildCrl } from '../src/revocation/crl-builder.ts';
import { runLoad } from './http-load.ts';
import { cpuByRole, cpuSeconds } from './proc.ts';
import { freePort, type OcspIssuerHashes, ocspIssuerHashes, ocspRequestDer } from './support.ts';

const { values } = parseArgs({
  options: {
    sizes: { type: 'string', default: '0,1000000,5000000' },
    rounds: { type: 'string', default: '3' },
    seconds: { type: 'string', default: '10' },
    concurrency: { type: 'string', default: '32' },
    'ocsp-concurrency': { type: 'string', default: '8' },
    /** Share of the loaded certificates that are revoked. */
    revoked: { type: 'string', default: '0.01' },
    /** Rows per loader statement (one transaction each). */
    chunk: { type: 'string', default: '50000' },
    keep: { type: 'string' },
    /** PostgreSQL's shared_buffers (its default is 128MB). */
    'shared-buffers': { type: 'string', default: '128MB' },
  },
});

const SIZES = values.sizes.split(',').map(Number);
const ROUNDS = Number(values.rounds);
const SECONDS = Number(values.seconds);
const CONCURRENCY = Number(values.concurrency);
const OCSP_CONCURRENCY = Number(values['ocsp-concurrency']);
const REVOKED_EVERY = Math.round(1 / Number(values.revoked));
const CHUNK = Number(values.chunk);
const REPO = fileURLToPath(new URL('..', import.meta.url));
const SIGNET = path.join(REPO, 'bin', 'signet.js');
const PG_BIN = '/usr/lib/postgresql/15/bin';
const ISSUER = 'dev-intermediate';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const loadavg = () => readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
const fmt = (n: number, digits = 0) =>
  Number.isFinite(n)
    ? n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits })
    : '-';
const median = (xs: number[]) => {
  const sorted = xs.filter(Number.isFinite).sort((a, b) => a - b);
  if (sorted.length === 0) return Number.NaN;
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
};
const sizeName = (size: number) =>
  size >= 1_000_000 && size % 1_000_000 === 0
    ? `${size / 1_000_000}M`
    : size >= 1000 && size % 1000 === 0
      ? `${size / 1000}k`
      : String(size);

// ---- the cluster ---------------------------------------------------------------------------------

const work = values.keep
  ? path.resolve(values.keep)
  : mkdtempSync(path.join(tmpdir(), 'signet-bench-scale-'));
mkdirSync(work, { recursive: true });
// As root the cluster runs as `postgres`, which must reach work/pg (mkdtemp makes 0700 folders).
chmodSync(work, 0o755);
const children = new Set<ChildProcess>();
let stopCluster: (() => void) | undefined;

function cleanup(): void {
  for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
  stopCluster?.();
  stopCluster = undefined;
  if (!values.keep) rmSync(work, { recursive: true, force: true });
}
process.on('exit', cleanup);
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    cleanup();
    process.exit(130);
  });
}

/**
 * A PostgreSQL 15 cluster in `work`/pg (kept with --keep), started on a free port; as root it runs
 * as `postgres` (initdb refuses root). Defaults but pg_stat_statements, for the per-statement times.
 */
async function startCluster(): Promise<{ url: (db: string) => string; dataDir: string; pid: () => number }> {
  const dir = path.join(work, 'pg');
  const dataDir = path.join(dir, 'data');
  const asPostgres = process.getuid?.() === 0 ? ['runuser', '-u', 'postgres', '--'] : [];
  const run = (cmd: string, args: string[]) =>
    execFileSync(asPostgres[0] ?? cmd, asPostgres.length ? [...asPostgres.slice(1), cmd, ...args] : args, {
      stdio: 'ignore',
    });
  if (!existsSync(dataDir)) {
    mkdirSync(dir, { recursive: true });
    if (asPostgres.length) {
      const id = (flag: string) => Number(execFileSync('id', [flag, 'postgres'], { encoding: 'utf8' }));
      chownSync(dir, id('-u'), id('-g'));
    }
    run(`${PG_BIN}/initdb`, ['-D', dataDir, '-A', 'trust', '-U', 'signet', '-E', 'UTF8', '--no-locale']);
  }
  const port = await freePort();
  run(`${PG_BIN}/pg_ctl`, [
    '-D',
    dataDir,
    '-l',
    path.join(dir, 'log'),
    '-w',
    '-o',
    `-c listen_addresses=127.0.0.1 -p ${port} -k ${dir} -c shared_preload_libraries=pg_stat_statements -c shared_buffers=${values['shared-buffers']}`,
    'start',
  ]);
  stopCluster = () => run(`${PG_BIN}/pg_ctl`, ['-D', dataDir, '-m', 'fast', 'stop']);
  return {
    url: (db) => `postgres://signet@127.0.0.1:${port}/${db}`,
    dataDir,
    pid: () => Number(readFileSync(path.join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]),
  };
}

async function withClient<T>(url: string, body: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await body(client);
  } finally {
    await client.end();
  }
}

// ---- signet --------------------------------------------------------------------------------------

interface Server {
  base: string;
  key: string;
  pid: number;
  stop(): Promise<void>;
}

async function startSignet(dataDir: string, databaseUrl: string): Promise<Server> {
  const port = await freePort();
  const env = { ...process.env, DATABASE_URL: databaseUrl, SIGNET_LOG_LEVEL: 'info' };
  // Logs go to a file at level info, as in production (a pipe nobody drains would block them).
  const log = openSync(path.join(dataDir, 'serve.log'), 'a');
  const child = spawn(
    process.execPath,
    [SIGNET, 'serve', '--data', dataDir, '--port', String(port), '--workers', '1'],
    { cwd: REPO, env, stdio: ['ignore', log, log] },
  );
  children.add(child);
  child.once('exit', () => children.delete(child));
  const base = `http://127.0.0.1:${port}`;
  for (let i = 0; ; i++) {
    if (child.exitCode !== null)
      throw new Error(`signet serve exited ${child.exitCode}: see ${dataDir}/serve.log`);
    try {
      if ((await fetch(`${base}/readyz`, { signal: AbortSignal.timeout(2000) })).ok) break;
    } catch {}
    if (i > 600) throw new Error('signet serve: not ready after 2 minutes');
    await sleep(200);
  }
  return {
    base,
    key: readFileSync(path.join(dataDir, 'secrets', 'admin-api-key'), 'utf8').trim(),
    pid: child.pid ?? 0,
    async stop() {
      if (child.exitCode !== null) return;
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

function signetInit(dataDir: string, databaseUrl: string): void {
  execFileSync(process.execPath, [SIGNET, 'init', '--data', dataDir], {
    cwd: REPO,
    env: { ...process.env, DATABASE_URL: databaseUrl },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const configFile = path.join(dataDir, 'signet.yaml');
  const config = parseYaml(readFileSync(configFile, 'utf8')) as Record<string, Record<string, unknown>>;
  // Measure issuing and signing, not refusing: the per-credential and nonce budgets are lifted.
  config.rateLimit = { perMinute: 100_000_000 };
  config.ocsp = { ...config.ocsp, nonceRateLimit: { perMinute: 100_000_000 } };
  writeFileSync(configFile, stringifyYaml(config));
}

function makeCsr(dir: string): Buffer {
  const file = path.join(dir, 'leaf.csr.der');
  if (!existsSync(file)) {
    execFileSync('openssl', [
      'req',
      '-new',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-keyout',
      path.join(dir, 'leaf.key'),
      '-subj',
      '/CN=bench.example.com',
      '-addext',
      'subjectAltName=DNS:bench.example.com',
      '-outform',
      'DER',
      '-out',
      file,
    ]);
  }
  return readFileSync(file);
}

// ---- the bulk loader -----------------------------------------------------------------------------

/**
 * SIZE certificates as issuance leaves them, in chunks of CHUNK rows (one statement and one
 * transaction each), oldest first, into the migrated schema with all its indexes: a template
 * certificate issued by the server supplies the DER (its serial octets overwritten by each row's
 * serial, so every DER is distinct and as long as a real one), the requester and the issuer.
 * Serials are 17 octets with the first in 0x40..0x7f, as src/x509/certificate.ts makes them, from
 * MD5 of a per-database salt and the row number (spread like random ones over the primary key).
 * Rows are created over the last 89 days (90-day validity: none expired, so every revoked one is
 * on the CRL); one in REVOKED_EVERY is revoked. Each certificate gets its certificate.issue audit
 * event, each revoked one a certificate.revoke event, on an audit chain of their own ('bulk-load':
 * the hashes are placeholders, so `signet audit verify` would refuse that chain).
 */
const LOAD_SQL = `
with s as (
  select i,
    substr('4567', (i % 4)::int + 1, 1) || substr(md5($1 || i::text) || md5(i::text || $1), 1, 33) as serial,
    date_trunc('milliseconds', $2::timestamptz + ($3::double precision * (i - 1)) * interval '1 millisecond') as created,
    i % $4 = 0 as revoked
  from generate_series($5::bigint, $6::bigint) as i
), r as (
  select s.*, s.created + (now() - s.created) / 2 as revoked_at,
    (array['keyCompromise', 'superseded', 'cessationOfOperation', 'affiliationChanged'])[1 + (i / $4) % 4] as reason
  from s
), c as (
  insert into certificates (serial, issuer_id, policy, requester, subject, sans, spki_sha256, not_before,
    not_after, status, crl_shard, tbs_sha256, csr_sha256, der, created_at, issued_at, revoked_at,
    revocation_reason, invalidity_date, status_changed_at)
  select serial, $7, 'web-server', $8, 'CN=host-' || i || '.example.com,O=Example Corp',
    jsonb_build_array(jsonb_build_object('type', 'dns', 'value', 'host-' || i || '.example.com')),
    sha256(convert_to('spki' || $1 || i, 'UTF8')), date_trunc('second', created) - interval '1 minute',
    date_trunc('second', created) + interval '90 days' - interval '1 minute',
    case when revoked then 'revoked' else 'good' end, 0, sha256(decode(serial, 'hex')),
    sha256(convert_to('csr' || $1 || i, 'UTF8')),
    overlay($9::bytea placing decode(serial, 'hex') from $10::int for 17),
    created, created + interval '40 milliseconds',
    case when revoked then revoked_at end, case when revoked then reason end,
    case when revoked and i % (10 * $4) = 0 then created end,
    case when revoked then revoked_at else created + interval '40 milliseconds' end
  from r
  returning 1
), e as (
  insert into audit_events (node_id, seq, at, actor, action, target, decision, details, prev_hash, hash)
  select 'bulk-load', 2 * i - 1, created + interval '40 milliseconds', $8, 'certificate.issue',
    'certificate:' || serial, 'allowed', jsonb_build_object('issuer', $7::text, 'policy', 'web-server'),
    sha256(int8send(2 * i - 2)), sha256(int8send(2 * i - 1))
  from r
  union all
  select 'bulk-load', 2 * i, revoked_at, $8, 'certificate.revoke', 'certificate:' || serial, 'allowed',
    jsonb_build_object('issuer', $7::text, 'reason', reason), sha256(int8send(2 * i - 1)), sha256(int8send(2 * i))
  from r where revoked
  returning 1
)
select (select count(*) from c) as certificates, (select count(*) from e) as events`;

interface Loaded {
  size: number;
  seconds: number;
  rowsPerSecond: number;
}

async function bulkLoad(url: string, size: number): Promise<Loaded> {
  return withClient(url, async (client) => {
    const template = await client.query<{ serial: string; der: Buffer; requester: string }>(
      `select serial, der, requester from certificates where policy = 'web-server' and status = 'good' limit 1`,
    );
    const row = template.rows[0];
    if (!row) throw new Error('no template certificate');
    const serialOctets = Buffer.from(row.serial, 'hex');
    if (serialOctets.length !== 17) throw new Error(`template serial ${row.serial} is not 17 octets`);
    const offset = row.der.indexOf(serialOctets);
    if (offset < 0) throw new Error('template serial not found in its DER');
    const salt = randomBytes(8).toString('hex');
    const start = new Date(Date.now() - 89 * 86_400_000).toISOString();
    const stepMs = (89 * 86_400_000) / size;
    const started = performance.now();
    let last = started;
    for (let from = 1; from <= size; from += CHUNK) {
      const to = Math.min(size, from + CHUNK - 1);
      await client.query(LOAD_SQL, [
        salt,
        start,
        stepMs,
        REVOKED_EVERY,
        from,
        to,
        ISSUER,
        row.requester,
        row.der,
        offset + 1,
      ]);
      if (performance.now() - last > 30_000 || to === size) {
        last = performance.now();
        const seconds = (last - started) / 1000;
        console.log(
          `  loaded ${fmt(to)} / ${fmt(size)} in ${fmt(seconds)} s (${fmt(to / seconds)} rows/s), load ${loadavg()}`,
        );
      }
    }
    await client.query(
      `insert into audit_heads (node_id, seq, hash) values ('bulk-load', $1, sha256(int8send($1::bigint)))`,
      [2 * size],
    );
    const seconds = (performance.now() - started) / 1000;
    // As autovacuum would have long since done on a database that grew this big over months.
    const vacuumStarted = performance.now();
    await client.query('vacuum (analyze) certificates, audit_events');
    await client.query('checkpoint');
    console.log(`  vacuum analyze + checkpoint ${fmt((performance.now() - vacuumStarted) / 1000)} s`);
    return { size, seconds, rowsPerSecond: size / seconds };
  });
}

interface DiskUse {
  database: number;
  certificates: number;
  certificatesIndexes: number;
  audit: number;
}

async function diskUse(url: string): Promise<DiskUse> {
  return withClient(url, async (client) => {
    const { rows } = await client.query<Record<keyof DiskUse, string>>(
      `select pg_database_size(current_database()) as database,
         pg_total_relation_size('certificates') as certificates,
         pg_indexes_size('certificates') as "certificatesIndexes",
         pg_total_relation_size('audit_events') as audit`,
    );
    const r = rows[0]!;
    return {
      database: Number(r.database),
      certificates: Number(r.certificates),
      certificatesIndexes: Number(r.certificatesIndexes),
      audit: Number(r.audit),
    };
  });
}

/** One database and signet folder per size, made and loaded unless --keep already has them. */
async function prepare(cluster: Awaited<ReturnType<typeof startCluster>>, size: number, csr: Buffer) {
  const name = `scale_${size}`;
  const dataDir = path.join(work, `signet-${size}`);
  const marker = path.join(dataDir, 'loaded.json');
  const url = cluster.url(name);
  if (existsSync(marker)) {
    const loaded = JSON.parse(readFileSync(marker, 'utf8')) as Loaded;
    console.log(`size ${sizeName(size)}: reusing ${name} (loaded earlier in ${fmt(loaded.seconds)} s)`);
    return { size, url, dataDir, loaded };
  }
  rmSync(dataDir, { recursive: true, force: true });
  await withClient(cluster.url('postgres'), async (client) => {
    await client.query(`drop database if exists ${name} with (force)`);
    await client.query(`create database ${name}`);
  });
  signetInit(dataDir, url);
  let loaded: Loaded = { size, seconds: 0, rowsPerSecond: Number.NaN };
  if (size > 0) {
    // The template: one certificate issued by the server itself.
    const server = await startSignet(dataDir, url);
    try {
      const response = await fetch(`${server.base}/v1/certificates?policy=web-server`, {
        method: 'POST',
        headers: { authorization: `Bearer ${server.key}`, 'content-type': 'application/pkcs10' },
        body: csr,
      });
      if (response.status !== 201) throw new Error(`template issuance: HTTP ${response.status}`);
    } finally {
      await server.stop();
    }
    console.log(`size ${sizeName(size)}: loading ${fmt(size)} certificates into ${name}, load ${loadavg()}`);
    loaded = await bulkLoad(url, size);
  }
  writeFileSync(marker, JSON.stringify(loaded));
  return { size, url, dataDir, loaded };
}

// ---- OCSP ----------------------------------------------------------------------------------------

async function issuerForOcsp(url: string): Promise<OcspIssuerHashes> {
  const der = await withClient(url, async (client) => {
    const { rows } = await client.query<{ der: Buffer }>(
      'select certificate_der as der from issuers where id = $1',
      [ISSUER],
    );
    return rows[0]!.der;
  });
  return ocspIssuerHashes(der);
}

/** An OCSPRequest for one SHA-1 CertID, as `openssl ocsp` sends it; with a fresh nonce or none. */
const ocspRequest = (issuer: OcspIssuerHashes, serial: string, nonce: boolean): Buffer =>
  ocspRequestDer(issuer, serial, nonce ? randomBytes(16) : undefined);

interface Rate {
  perSecond: number;
  done: number;
  p50: number;
  p99: number;
  errors: number;
}

/**
 * POSTs the bodies to /ocsp, `concurrency` at a time over keep-alive connections, each body once,
 * until they run out or `seconds` pass (`cycle`: round and round until `seconds` pass). The first
 * answer is decoded and must be a successful OCSPResponse.
 */
async function ocspLoad(base: string, bodies: Buffer[], seconds: number, cycle: boolean): Promise<Rate> {
  const agent = new Agent({ keepAlive: true, maxSockets: OCSP_CONCURRENCY });
  const url = new URL('/ocsp', base);
  let next = 0;
  let errors = 0;
  let checked = false;
  const latencies: number[] = [];
  const post = (body: Buffer) =>
    new Promise<void>((resolve) => {
      const started = performance.now();
      const req = request(
        {
          agent,
          host: url.hostname,
          port: url.port,
          path: url.pathname,
          method: 'POST',
          headers: { 'content-type': 'application/ocsp-request', 'content-length': String(body.length) },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (chunk: Buffer) => chunks.push(chunk));
          res.on('end', () => {
            if (res.statusCode !== 200) errors += 1;
            else {
              latencies.push(performance.now() - started);
              if (!checked) {
                checked = true;
                const answer = AsnConvert.parse(Buffer.concat(chunks), OCSPResponse);
                if (answer.responseStatus !== 0) throw new Error(`OCSP answered ${answer.responseStatus}`);
              }
            }
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
  const started = performance.now();
  const deadline = started + seconds * 1000;
  const worker = async () => {
    while (performance.now() < deadline && (cycle || next < bodies.length)) {
      await post(bodies[next++ % bodies.length]!);
    }
  };
  await Promise.all(Array.from({ length: OCSP_CONCURRENCY }, worker));
  const elapsed = (performance.now() - started) / 1000;
  agent.destroy();
  latencies.sort((a, b) => a - b);
  return {
    perSecond: latencies.length / elapsed,
    done: latencies.length,
    p50: latencies[Math.floor(latencies.length / 2)] ?? Number.NaN,
    p99: latencies[Math.floor(latencies.length * 0.99)] ?? Number.NaN,
    errors,
  };
}

/** Up to `count` stored serials of the issuer never asked for before, spread over the table. */
async function freshSerials(url: string, count: number, asked: Set<string>): Promise<string[]> {
  return withClient(url, async (client) => {
    const { rows: estimate } = await client.query<{ n: number }>(
      `select greatest(reltuples, 1)::float8 as n from pg_class where relname = 'certificates'`,
    );
    const percent = Math.min(100, ((count * 3) / estimate[0]!.n) * 100);
    const { rows } = await client.query<{ serial: string }>(
      `select serial from certificates tablesample system (${percent})
        where issuer_id = $1 and policy = 'web-server' and status in ('good', 'revoked') limit $2`,
      [ISSUER, count * 2],
    );
    return rows
      .map((r) => r.serial)
      .filter((s) => !asked.has(s))
      .slice(0, count);
  });
}

// ---- CRL -----------------------------------------------------------------------------------------

/**
 * dev-intermediate's key stays in the partition: the CRL of its entries is signed by a stand-in
 * P-256 issuer of this process (bench/crl.ts does the same; the partition adds one streamed
 * signature). Reads the entries through the certificates repository, encodes, lints and signs.
 */
async function standInIssuer() {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const algorithm = { name: 'ECDSA', namedCurve: 'P-256' };
  const keys = {
    privateKey: await webcrypto.subtle.importKey(
      'pkcs8',
      privateKey.export({ type: 'pkcs8', format: 'der' }),
      algorithm,
      false,
      ['sign'],
    ),
    publicKey: await webcrypto.subtle.importKey(
      'spki',
      publicKey.export({ type: 'spki', format: 'der' }),
      algorithm,
      true,
      ['verify'],
    ),
  };
  const certificate = await x509.X509CertificateGenerator.createSelfSigned(
    {
      serialNumber: '01',
      name: 'CN=Bench scale CRL issuer',
      notBefore: new Date(Date.now() - 3_600_000),
      notAfter: new Date(Date.now() + 365 * 86_400_000),
      keys: keys as webcrypto.CryptoKeyPair,
      signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
      extensions: [
        new x509.BasicConstraintsExtension(true, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      ],
    },
    webcrypto,
  );
  return { der: new Uint8Array(certificate.rawData), key: keys.privateKey };
}

async function timeCrl(url: string, issuer: Awaited<ReturnType<typeof standInIssuer>>) {
  const database = await openDatabase({ url }, { migrate: false, poolSize: 2 });
  try {
    const certificates = createCertificatesRepository({ db: database.db });
    const build = async () => {
      const started = performance.now();
      const crl = await buildCrl({
        issuer: issuer.der,
        signer: { crypto: webcrypto, key: issuer.key },
        number: 1n,
        thisUpdate: new Date(),
        nextUpdate: new Date(Date.now() + 86_400_000),
        entries: certificates.streamRevokedForCrl(ISSUER, { pageSize: 10_000 }),
      });
      return { ms: performance.now() - started, entries: crl.entryCount, bytes: crl.der.byteLength };
    };
    // The first build reads the rows from wherever they are; the second finds them cached.
    const first = await build();
    const again = await build();
    return { ...first, againMs: again.ms };
  } finally {
    await database.close();
  }
}

// ---- pg_stat_statements --------------------------------------------------------------------------

interface StatementTime {
  query: string;
  calls: number;
  meanMs: number;
  rowsPerCall: number;
  hitRatio: number;
}

/** The statements of one database that took the most time since the last reset. */
async function topStatements(adminUrl: string, database: string, limit = 6): Promise<StatementTime[]> {
  return withClient(adminUrl, async (client) => {
    const { rows } = await client.query<{
      query: string;
      calls: string;
      mean: number;
      rows: string;
      hit: string;
      read: string;
    }>(
      `select regexp_replace(query, '\\s+', ' ', 'g') as query, calls, mean_exec_time as mean, rows,
         shared_blks_hit as hit, shared_blks_read as read
       from pg_stat_statements s join pg_database d on d.oid = s.dbid
       where d.datname = $1 order by total_exec_time desc limit $2`,
      [database, limit],
    );
    return rows.map((r) => ({
      query: r.query.slice(0, 90),
      calls: Number(r.calls),
      meanMs: r.mean,
      rowsPerCall: Number(r.rows) / Math.max(1, Number(r.calls)),
      hitRatio: Number(r.hit) / Math.max(1, Number(r.hit) + Number(r.read)),
    }));
  });
}

// ---- the run -------------------------------------------------------------------------------------

interface Measure {
  size: number;
  round: number;
  issue: number;
  issueP99: number;
  /** CPU ms per certificate: signet serve (+ its partition), PostgreSQL. */
  serverCpu: number;
  partitionCpu: number;
  databaseCpu: number;
  ocspFirst: number;
  ocspCached: number;
  ocspNonce: number;
  crlMs: number;
  crlAgainMs: number;
  crlEntries: number;
  crlBytes: number;
  statements: StatementTime[];
  walKbPerCert: number;
  fpiPerCert: number;
}

async function measure(
  cluster: Awaited<ReturnType<typeof startCluster>>,
  target: Awaited<ReturnType<typeof prepare>>,
  round: number,
  csrFile: string,
  asked: Set<string>,
  crlIssuer: Awaited<ReturnType<typeof standInIssuer>>,
): Promise<Measure> {
  const server = await startSignet(target.dataDir, target.url);
  try {
    const adminUrl = cluster.url('postgres');
    await withClient(adminUrl, async (client) => {
      await client.query('select pg_stat_statements_reset()');
      await client.query(`select pg_stat_reset_shared('wal')`);
    });
    const cpuBefore = cpuByRole(server.pid);
    const databaseBefore = cpuSeconds(cluster.pid());
    const load = await runLoad({
      url: `${server.base}/v1/certificates?policy=web-server`,
      headers: { authorization: `Bearer ${server.key}`, 'content-type': 'application/pkcs10' },
      bodyFile: csrFile,
      expectStatus: 201,
      concurrency: CONCURRENCY,
      seconds: SECONDS,
      warmupSeconds: 2,
    });
    const cpuAfter = cpuByRole(server.pid);
    const databaseCpu = cpuSeconds(cluster.pid()) - databaseBefore;
    const statements = await topStatements(adminUrl, `scale_${target.size}`);
    // Only this server writes to the cluster meanwhile: its WAL per certificate, and how much of it
    // is full-page images (the first change of a page after a checkpoint writes the whole page).
    const wal = await withClient(adminUrl, async (client) => {
      const { rows } = await client.query<{ bytes: string; fpi: string }>(
        'select wal_bytes as bytes, wal_fpi as fpi from pg_stat_wal',
      );
      return rows[0]!;
    });
    if (load.errors) console.error(`  issue: ${load.errors} errors, first: ${load.firstError}`);
    const answered = load.done + load.warmedUp;

    const issuer = await issuerForOcsp(target.url);
    const serials = await freshSerials(target.url, 4000, asked);
    for (const serial of serials) asked.add(serial);
    const first = await ocspLoad(
      server.base,
      serials.map((s) => ocspRequest(issuer, s, false)),
      SECONDS / 2,
      false,
    );
    const repeat = serials.slice(0, Math.min(first.done, 500));
    const cached = await ocspLoad(
      server.base,
      repeat.map((s) => ocspRequest(issuer, s, false)),
      SECONDS / 2,
      true,
    );
    const nonceBodies = Array.from({ length: 4000 }, (_, i) =>
      ocspRequest(issuer, repeat[i % repeat.length]!, true),
    );
    const nonce = await ocspLoad(server.base, nonceBodies, SECONDS / 2, true);
    for (const [name, r] of [
      ['first', first],
      ['cached', cached],
      ['nonce', nonce],
    ] as const)
      if (r.errors) console.error(`  ocsp ${name}: ${r.errors} errors`);

    const crl = await timeCrl(target.url, crlIssuer);
    const m: Measure = {
      size: target.size,
      round,
      issue: load.done / (load.elapsedMs / 1000),
      issueP99: load.latenciesMs.p99,
      serverCpu:
        ((cpuAfter.server + cpuAfter.workers - cpuBefore.server - cpuBefore.workers) * 1000) / answered,
      partitionCpu: ((cpuAfter.partition - cpuBefore.partition) * 1000) / answered,
      databaseCpu: (databaseCpu * 1000) / answered,
      ocspFirst: first.perSecond,
      ocspCached: cached.perSecond,
      ocspNonce: nonce.perSecond,
      crlMs: crl.ms,
      crlAgainMs: crl.againMs,
      crlEntries: crl.entries,
      crlBytes: crl.bytes,
      statements,
      walKbPerCert: Number(wal.bytes) / 1024 / answered,
      fpiPerCert: Number(wal.fpi) / answered,
    };
    console.log(
      `  round ${round} ${sizeName(target.size).padStart(5)}: issue ${fmt(m.issue)}/s (p99 ${fmt(m.issueP99)} ms; CPU ms/cert server ${fmt(m.serverCpu, 2)}, partition ${fmt(m.partitionCpu, 2)}, PostgreSQL ${fmt(m.databaseCpu, 2)}; WAL ${fmt(m.walKbPerCert, 1)} KiB/cert, ${fmt(m.fpiPerCert, 1)} full pages)  ocsp first ${fmt(m.ocspFirst)}/s (${first.done} serials)  cached ${fmt(m.ocspCached)}/s  nonce ${fmt(m.ocspNonce)}/s  crl ${fmt(m.crlMs)} ms, again ${fmt(m.crlAgainMs)} ms (${fmt(m.crlEntries)} entries)  load ${loadavg()}`,
    );
    return m;
  } finally {
    await server.stop();
  }
}

const mib = (bytes: number) => `${fmt(bytes / 1048576)} MiB`;

async function main(): Promise<void> {
  console.log(
    `bench/scale: sizes ${SIZES.map(sizeName).join(', ')}, ${ROUNDS} rounds, issuance ${SECONDS} s at c=${CONCURRENCY}, OCSP ${SECONDS / 2} s per kind at c=${OCSP_CONCURRENCY}, 1 in ${REVOKED_EVERY} revoked, PostgreSQL shared_buffers ${values['shared-buffers']}`,
  );
  const loadStart = loadavg();
  console.log(`machine: ${execFileSync('uptime', { encoding: 'utf8' }).trim()}; work folder ${work}`);
  const cluster = await startCluster();
  await withClient(cluster.url('postgres'), (client) =>
    client.query('create extension if not exists pg_stat_statements'),
  );
  const csr = makeCsr(work);
  const csrFile = path.join(work, 'leaf.csr.der');
  const targets = [];
  for (const size of SIZES) targets.push(await prepare(cluster, size, csr));
  const disk = new Map<number, DiskUse>();
  for (const target of targets) disk.set(target.size, await diskUse(target.url));
  console.log('');
  console.log(
    '| size | load time | rows/s | database | certificates (heap+TOAST+indexes) | of which indexes | audit_events |',
  );
  console.log('|--:|--:|--:|--:|--:|--:|--:|');
  for (const target of targets) {
    const d = disk.get(target.size)!;
    console.log(
      `| ${sizeName(target.size)} | ${target.size ? `${fmt(target.loaded.seconds)} s` : '-'} | ${target.size ? fmt(target.loaded.rowsPerSecond) : '-'} | ${mib(d.database)} | ${mib(d.certificates)} | ${mib(d.certificatesIndexes)} | ${mib(d.audit)} |`,
    );
  }
  console.log(
    `cluster folder (du, WAL included): ${execFileSync('du', ['-sh', path.join(work, 'pg')], { encoding: 'utf8' }).split('\t')[0]}`,
  );
  console.log('');

  const crlIssuer = await standInIssuer();
  const asked = new Map(SIZES.map((size) => [size, new Set<string>()]));
  const measures: Measure[] = [];
  for (let round = 1; round <= ROUNDS; round++) {
    for (const target of targets) {
      measures.push(await measure(cluster, target, round, csrFile, asked.get(target.size)!, crlIssuer));
    }
  }

  // Medians over the rounds, and per round the ratio to size 0 of the same round (its median).
  const bySize = (size: number) => measures.filter((m) => m.size === size);
  const base = SIZES[0]!;
  const ratio = (size: number, pick: (m: Measure) => number) =>
    median(
      bySize(size).map((m) => pick(m) / pick(measures.find((b) => b.size === base && b.round === m.round)!)),
    );
  console.log('');
  console.log(
    `| size | issue /s | × size ${sizeName(base)} | issue p99 ms | CPU ms/cert: server | partition | PostgreSQL | WAL KiB/cert | full-page images/cert | OCSP first /s | × | OCSP cached /s | × | OCSP nonce /s | × | CRL entries | CRL ms | again ms | µs/entry (again) |`,
  );
  console.log('|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|');
  for (const size of SIZES) {
    const ms = bySize(size);
    const med = (pick: (m: Measure) => number) => median(ms.map(pick));
    const entries = med((m) => m.crlEntries);
    const cells = [
      sizeName(size),
      fmt(med((m) => m.issue)),
      fmt(
        ratio(size, (m) => m.issue),
        2,
      ),
      fmt(med((m) => m.issueP99)),
      fmt(
        med((m) => m.serverCpu),
        2,
      ),
      fmt(
        med((m) => m.partitionCpu),
        2,
      ),
      fmt(
        med((m) => m.databaseCpu),
        2,
      ),
      fmt(
        med((m) => m.walKbPerCert),
        1,
      ),
      fmt(
        med((m) => m.fpiPerCert),
        1,
      ),
      fmt(med((m) => m.ocspFirst)),
      fmt(
        ratio(size, (m) => m.ocspFirst),
        2,
      ),
      fmt(med((m) => m.ocspCached)),
      fmt(
        ratio(size, (m) => m.ocspCached),
        2,
      ),
      fmt(med((m) => m.ocspNonce)),
      fmt(
        ratio(size, (m) => m.ocspNonce),
        2,
      ),
      fmt(entries),
      fmt(med((m) => m.crlMs)),
      fmt(med((m) => m.crlAgainMs)),
      entries
        ? `${fmt((med((m) => m.crlMs) * 1000) / entries, 1)} (${fmt((med((m) => m.crlAgainMs) * 1000) / entries, 1)})`
        : '-',
    ];
    console.log(`| ${cells.join(' | ')} |`);
  }
  console.log('');
  console.log('issuance rates per round (certificates/s):');
  for (const size of SIZES)
    console.log(
      `  ${sizeName(size).padStart(5)}: ${bySize(size)
        .map((m) => fmt(m.issue))
        .join(', ')}`,
    );
  console.log('');
  console.log('Top statements by total time during the issuance load (pg_stat_statements, last round):');
  for (const size of SIZES) {
    const last = bySize(size).at(-1)!;
    console.log(`  size ${sizeName(size)}:`);
    for (const s of last.statements)
      console.log(
        `    ${fmt(s.meanMs, 3).padStart(8)} ms mean  ${String(s.calls).padStart(6)} calls  ${fmt(s.rowsPerCall, 1).padStart(5)} rows/call  hit ${fmt(s.hitRatio * 100, 1)}%  ${s.query}`,
      );
  }
  console.log('');
  console.log(`load average: ${loadStart} at the start, ${loadavg()} at the end`);
}

try {
  await main();
} finally {
  cleanup();
}
