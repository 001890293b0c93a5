/**
 * bench/soak (issue #34): a long run of mixed traffic at a fixed, modest load, against one node and
 * then two nodes on one PostgreSQL, watching what grows.
 *
 *   node --import tsx bench/soak.ts [--minutes 10] [--nodes 1,2] [--workers 2] [--sample-seconds 10] [--scale 1]
 *
 * Per run: a fresh database in one private PostgreSQL 15 cluster (fsync on; $DATABASE_URL's server
 * when set), `signet init --partition-listen tls://...` for node 0 and, for more nodes, what
 * test/slow/helpers/nodes.ts does: a copy of node 0's config and secrets and a partition member
 * restored from node 0's backup, every node listing every member. Each node is `signet serve`
 * (compiled dist/, `--workers` HTTP workers from signet.yaml, log level info to a file) with its
 * rate limits lifted for the run. Requests go round robin over the nodes, as behind a load
 * balancer; ACME clients follow the directory's URLs rewritten to the node of each request.
 *
 * The mix is paced: each operation has a target rate and a fixed number of loops in flight, and a
 * loop that falls behind goes on at once but never bursts to catch up, so the offered load stays
 * put and a slower server shows as a lower achieved rate and a higher latency (see MIX). Any answer
 * other than the expected status (or an OCSP response with the wrong certificate status or nonce)
 * is an error. Every --sample-seconds: resident memory (VmRSS) and open file descriptors of each
 * node by role (primary, HTTP workers, partition member), and PostgreSQL's process count. The report
 * gives per operation the rate, p50/p99 overall and in the first and last minute, the errors, RSS
 * and descriptors at start and end, and the slope of RSS over time (a least-squares line through
 * the samples after the first minute) in MB per minute. Then the nodes are stopped with SIGTERM and
 * their logs searched for warnings and errors.
 *
 * Needs openssl, pebble-challtestsrv (Debian `pebble`; mock DNS for ACME validation) and the
 * PostgreSQL 15 binaries (or $DATABASE_URL). Run `npm run build` after changing src/.
 */
import 'reflect-metadata';
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { cpSync, mkdirSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { loadavg } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { BasicOCSPResponse, id_pkix_ocsp_nonce, OCSPResponse } from '@peculiar/asn1-ocsp';
import { AsnConvert, OctetString } from '@peculiar/asn1-schema';
import { X509Certificate } from '@peculiar/x509';
import pg from 'pg';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { AcmeClient } from '../test/helpers/acme-client.ts';
import { type Http01Responder, startHttp01Responder } from '../test/helpers/acme-responders.ts';
import { generateTestKey, handCsr, sanExtension } from '../test/x509/fixtures.ts';
import { type ByRole, cpuByRole, cpuSeconds, fdsByRole, processCount, rolesOf, rssByRole } from './proc.ts';
import {
  freePort,
  type OcspIssuerHashes,
  ocspIssuerHashes,
  ocspRequestDer,
  scratch,
  throwawayPostgres,
} from './support.ts';

const { values } = parseArgs({
  options: {
    minutes: { type: 'string', default: '10' },
    nodes: { type: 'string', default: '1,2' },
    /** HTTP workers per node (signet.yaml server.workers); 2 is `serve`'s default on 2 cores. */
    workers: { type: 'string', default: '2' },
    'sample-seconds': { type: 'string', default: '10' },
    /** Multiplies every target rate of the mix (not the loops in flight). */
    scale: { type: 'string', default: '1' },
    /** signet.yaml ocsp.cacheEntries of every node (default: the server's, 100,000 per worker). */
    'ocsp-cache-entries': { type: 'string' },
    /**
     * Runs the nodes with node's --trace-gc and reports each process's JS heap after every full
     * (mark-compact) collection: the live heap, which RSS only hints at.
     */
    'trace-gc': { type: 'boolean', default: false },
  },
});

const MINUTES = Number(values.minutes);
const NODE_COUNTS = values.nodes.split(',').map(Number);
const WORKERS = Number(values.workers);
const SAMPLE_SECONDS = Number(values['sample-seconds']);
const SCALE = Number(values.scale);
const TRACE_GC = values['trace-gc'];
const OCSP_CACHE_ENTRIES =
  values['ocsp-cache-entries'] === undefined ? undefined : Number(values['ocsp-cache-entries']);
const REPO = fileURLToPath(new URL('..', import.meta.url));
const SIGNET = path.join(REPO, 'bin/signet.js');
/** A revoked certificate must be answered `revoked` by every node this long after its revocation. */
const STALE_MS = 2000;
const ACME_POLL_MS = 25;
/** Slopes under this (MB per minute, either sign) count as flat. */
const FLAT_MB_PER_MINUTE = 0.5;

type Op = 'issue' | 'ocsp' | 'ocsp-nonce' | 'revoke' | 'crl' | 'acme';

interface Lane {
  op: Op;
  /** Target rate per second (times --scale). */
  perSecond: number;
  /** Loops in flight: the most requests of this kind at once. */
  inFlight: number;
  what: string;
}

/** Mostly OCSP and issuance, a few revocations and CRL fetches, ACME orders at a lower rate. */
const MIX: Lane[] = [
  {
    op: 'issue',
    perSecond: 10,
    inFlight: 4,
    what: 'POST /v1/certificates?policy=web-server, a P-256 CSR (DER, one of 16 made by openssl)',
  },
  {
    op: 'ocsp',
    perSecond: 40,
    inFlight: 2,
    what: 'POST /ocsp without nonce: in turn an openssl-made request for one certificate, and one built here for a random certificate of the run',
  },
  {
    op: 'ocsp-nonce',
    perSecond: 10,
    inFlight: 2,
    what: 'POST /ocsp with a nonce (signed per request): in turn openssl-made (its nonce fixed) and built (a fresh nonce, a random certificate of the run)',
  },
  {
    op: 'revoke',
    perSecond: 1,
    inFlight: 1,
    what: 'POST /v1/certificates/{serial}/revoke of a random unrevoked certificate of the run',
  },
  { op: 'crl', perSecond: 0.5, inFlight: 1, what: 'GET /crl/dev-intermediate.crl' },
  {
    op: 'acme',
    perSecond: 0.5,
    inFlight: 2,
    what: 'one ACME order (2 accounts): new-order -> authorization -> http-01 -> poll every 25 ms -> finalize -> certificate',
  },
];

// ---- processes and folders this run owns -------------------------------------------------------

const { stops, tempDir } = scratch;
const cleanup = scratch.cleanup;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const fmt = (n: number, digits = 0) => (Number.isFinite(n) ? n.toFixed(digits) : '-');
const uptime = () => execFileSync('uptime', { encoding: 'utf8' }).trim();

function signetCli(args: string[], env: NodeJS.ProcessEnv): void {
  execFileSync(process.execPath, [SIGNET, ...args], {
    cwd: REPO,
    env,
    stdio: ['ignore', 'ignore', 'inherit'],
  });
}

function openssl(args: string[]): void {
  execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

// ---- nodes ------------------------------------------------------------------------------------

interface SoakNode {
  name: string;
  base: URL;
  agent: Agent;
  log: string;
  pid(): number;
  /** Date.now() when it was spawned: V8's --trace-gc times count from about then. */
  spawnedAt: number;
  /** Its processes by role, read while it runs (for --trace-gc lines, which name a pid). */
  roles?: Map<number, keyof ByRole>;
  /** SIGTERM; the exit code and how long the shutdown took. */
  stop(): Promise<{ code: number | null; ms: number }>;
}

interface Cluster {
  nodes: SoakNode[];
  apiKey: string;
  /** The public URL every node's config carries (node 0's): ACME URLs start with it. */
  publicUrl: string;
}

type Config = Record<string, Record<string, unknown>>;

/** node 0 by `signet init`; the others as test/slow/helpers/nodes.ts makes them (issue #29). */
function makeDataDirs(work: string, count: number, ports: number[], env: NodeJS.ProcessEnv): string[] {
  const first = path.join(work, 'node0');
  signetCli(
    [
      'init',
      '--data',
      first,
      '--port',
      String(ports[0]),
      '--public-url',
      `http://127.0.0.1:${ports[0]}`,
      '--partition-listen',
      `tls://127.0.0.1:${ports[1]}`,
    ],
    env,
  );
  if (count === 1) return [first];
  const backup = path.join(work, 'issuing.backup');
  signetCli(['hsm', 'backup', '--dir', path.join(first, 'hsm', 'issuing'), '--out', backup], env);
  const dirs = [first];
  for (let index = 1; index < count; index++) {
    const dataDir = path.join(work, `node${index}`);
    // Only the config, policies, certificates and secrets: no database folder, no partition.
    cpSync(first, dataDir, {
      recursive: true,
      filter: (source) =>
        !/[/\\](hsm|db)([/\\]|$)/.test(path.relative(work, source)) && !source.endsWith('db.lock'),
    });
    mkdirSync(path.join(dataDir, 'hsm'), { mode: 0o700 });
    signetCli(
      [
        'hsm',
        'restore',
        '--in',
        backup,
        '--dir',
        path.join(dataDir, 'hsm', 'issuing'),
        '--secret-file',
        path.join(dataDir, 'secrets', 'unseal-issuing'),
      ],
      env,
    );
    dirs.push(dataDir);
  }
  return dirs;
}

/** Rate limits lifted for the run (they would cap it, not protect it); every member listed. */
function configure(
  dataDir: string,
  index: number,
  ports: number[],
  acmePorts: { http: number; dns: number },
) {
  const memberUrls = ports.filter((_, i) => i % 2 === 1).map((port) => `tls://127.0.0.1:${port}`);
  const file = path.join(dataDir, 'signet.yaml');
  const config = parseYaml(readFileSync(file, 'utf8')) as Config;
  config.server = { ...config.server, port: ports[index * 2], workers: WORKERS };
  config.rateLimit = { ...config.rateLimit, perMinute: 100_000_000 };
  config.ocsp = {
    ...config.ocsp,
    nonceRateLimit: { perMinute: 100_000_000 },
    ...(OCSP_CACHE_ENTRIES === undefined ? {} : { cacheEntries: OCSP_CACHE_ENTRIES }),
  };
  config.acme = {
    ...config.acme,
    validation: { httpPort: acmePorts.http, dnsResolver: `127.0.0.1:${acmePorts.dns}` },
    rateLimit: { newAccountsPerMinute: 10_000, newOrdersPerMinute: 100_000 },
  };
  const issuing = (config.partitions as Record<string, { members: Record<string, unknown>[] }>).issuing!;
  const own: Record<string, unknown> = { ...issuing.members[0]!, url: memberUrls[index] };
  const link = { cert: own.cert, key: own.key, ca: own.ca };
  issuing.members = [
    own,
    ...memberUrls.filter((_, other) => other !== index).map((url) => ({ url, ...link })),
  ];
  writeFileSync(file, stringifyYaml(config));
}

async function startNode(
  name: string,
  dataDir: string,
  port: number,
  env: NodeJS.ProcessEnv,
): Promise<SoakNode> {
  const log = path.join(dataDir, '..', `${name}.log`);
  const fd = openSync(log, 'w');
  const spawnedAt = Date.now();
  // node refuses --trace-gc in NODE_OPTIONS; given on the command line, the HTTP workers inherit it
  // (node:cluster forks them with the primary's execArgv).
  const child = spawn(
    process.execPath,
    [...(TRACE_GC ? ['--trace-gc'] : []), SIGNET, 'serve', '--data', dataDir],
    {
      cwd: REPO,
      env,
      stdio: ['ignore', fd, fd],
    },
  );
  scratch.track(child);
  const base = new URL(`http://127.0.0.1:${port}`);
  const deadline = Date.now() + 120_000;
  for (;;) {
    const ready = await fetch(new URL('/readyz', base)).catch(() => undefined);
    if (ready?.status === 200) break;
    if (Date.now() > deadline || child.exitCode !== null)
      throw new Error(`${name} did not become ready: ${readFileSync(log, 'utf8').slice(-3000)}`);
    await sleep(200);
  }
  return {
    name,
    base,
    // An idle connection is closed by this side after 4 s, before the server's keep-alive timeout
    // (5 s, announced as Keep-Alive: timeout=5): reusing one the server is closing that moment is
    // a connection reset. node's Agent heeds the server's hint only when given a timeout of its own.
    agent: new Agent({ keepAlive: true, maxSockets: 32, timeout: 4_000 }),
    log,
    pid: () => child.pid ?? 0,
    spawnedAt,
    async stop() {
      const started = performance.now();
      if (child.exitCode !== null || child.signalCode !== null) return { code: child.exitCode, ms: 0 };
      const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
      const code = await exited;
      clearTimeout(timer);
      return { code, ms: performance.now() - started };
    },
  };
}

async function startCluster(
  count: number,
  databaseUrl: string,
  acmePorts: { http: number; dns: number },
): Promise<Cluster> {
  const work = tempDir('signet-bench-soak-');
  const env: NodeJS.ProcessEnv = { ...process.env, DATABASE_URL: databaseUrl, SIGNET_LOG_LEVEL: 'info' };
  const ports = await Promise.all(Array.from({ length: count * 2 }, () => freePort()));
  const dirs = makeDataDirs(work, count, ports, env);
  for (const [index, dir] of dirs.entries()) configure(dir, index, ports, acmePorts);
  const nodes: SoakNode[] = [];
  // One after the other, as the slow tests start them: the first also starts the cluster's work.
  for (const [index, dir] of dirs.entries())
    nodes.push(await startNode(`node${index}`, dir, ports[index * 2]!, env));
  return {
    nodes,
    apiKey: readFileSync(path.join(dirs[0]!, 'secrets', 'admin-api-key'), 'utf8').trim(),
    publicUrl: `http://127.0.0.1:${ports[0]}`,
  };
}

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

// ---- HTTP and OCSP ------------------------------------------------------------------------------

interface Answer {
  status: number;
  body: Buffer;
}

function call(
  node: SoakNode,
  method: string,
  target: string,
  headers: Record<string, string> = {},
  body?: Buffer,
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        agent: node.agent,
        host: node.base.hostname,
        port: node.base.port,
        path: target,
        method,
        headers: body ? { ...headers, 'content-length': String(body.length) } : headers,
        timeout: 60_000,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }));
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`${method} ${target}: no answer within 60 s`)));
    req.on('error', reject);
    req.end(body);
  });
}

function expectStatus(answer: Answer, status: number, what: string): void {
  if (answer.status !== status)
    throw new Error(`${what}: HTTP ${answer.status} ${answer.body.toString('utf8').slice(0, 200)}`);
}

/** What a CertID needs of the issuer (RFC 6960 §4.1.1), SHA-1 as openssl sends by default. */

const issuerHashes = (pem: string): OcspIssuerHashes =>
  ocspIssuerHashes(new Uint8Array(new X509Certificate(pem).rawData));

/** The certificate status of a successful OCSP response, and its nonce extension's value if any. */
function readOcspResponse(der: Buffer): { status: 'good' | 'revoked' | 'unknown'; nonceValue?: Buffer } {
  const response = AsnConvert.parse(der, OCSPResponse);
  if (response.responseStatus !== 0 || !response.responseBytes)
    throw new Error(`OCSP responseStatus ${response.responseStatus}`);
  const basic = AsnConvert.parse(response.responseBytes.response.buffer, BasicOCSPResponse);
  const single = basic.tbsResponseData.responses[0];
  if (!single) throw new Error('OCSP response without a SingleResponse');
  const { certStatus } = single;
  const status = certStatus.revoked ? 'revoked' : certStatus.unknown !== undefined ? 'unknown' : 'good';
  const nonce = basic.tbsResponseData.responseExtensions?.find((e) => e.extnID === id_pkix_ocsp_nonce);
  return { status, ...(nonce ? { nonceValue: Buffer.from(nonce.extnValue.buffer) } : {}) };
}

// ---- what the traffic needs --------------------------------------------------------------------

interface Material {
  csrs: Buffer[];
  /** openssl ocsp -reqout for one certificate issued before the run: without and with a nonce. */
  opensslPlain: Buffer;
  opensslNonce: Buffer;
  fixedSerial: string;
  issuer: OcspIssuerHashes;
}

function makeCsrs(work: string, count: number): Buffer[] {
  return Array.from({ length: count }, (_, index) => {
    const name = `soak-${index}.example.com`;
    const pem = path.join(work, `leaf-${index}.csr.pem`);
    const der = path.join(work, `leaf-${index}.csr.der`);
    openssl([
      'req',
      '-new',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-keyout',
      path.join(work, `leaf-${index}.key`),
      '-subj',
      `/CN=${name}`,
      '-addext',
      `subjectAltName=DNS:${name}`,
      '-out',
      pem,
    ]);
    openssl(['req', '-in', pem, '-outform', 'DER', '-out', der]);
    return readFileSync(der);
  });
}

/** One certificate issued before the run, and openssl's OCSP requests for it. */
async function makeMaterial(cluster: Cluster, csrs: Buffer[]): Promise<Material> {
  const work = tempDir('signet-bench-soak-ocsp-');
  const answer = await call(
    cluster.nodes[0]!,
    'POST',
    '/v1/certificates?policy=web-server',
    { authorization: `Bearer ${cluster.apiKey}`, 'content-type': 'application/pkcs10' },
    csrs[0]!,
  );
  expectStatus(answer, 201, 'issue the OCSP certificate');
  const issued = JSON.parse(answer.body.toString('utf8')) as {
    serialNumber: string;
    certificate: string;
    chain: string[];
  };
  const at = (name: string) => path.join(work, name);
  writeFileSync(at('leaf.pem'), issued.certificate);
  writeFileSync(at('issuer.pem'), issued.chain[0]!);
  const base = ['ocsp', '-issuer', at('issuer.pem'), '-cert', at('leaf.pem')];
  openssl([...base, '-no_nonce', '-reqout', at('plain.der')]);
  openssl([...base, '-reqout', at('nonce.der')]);
  return {
    csrs,
    opensslPlain: readFileSync(at('plain.der')),
    opensslNonce: readFileSync(at('nonce.der')),
    fixedSerial: issued.serialNumber,
    issuer: issuerHashes(issued.chain[0]!),
  };
}

// ---- the traffic -------------------------------------------------------------------------------

interface OpStats {
  /** Seconds since the start of the run at which each answer came, and its latency (ms). */
  at: number[];
  latencies: number[];
  errors: number;
  errorSamples: string[];
  /** Turns with nothing to do (no certificate left to revoke). */
  skipped: number;
}

interface Cert {
  serial: string;
  /** performance.now() when the revocation was acknowledged. */
  revokedAt?: number;
  /** Asked to be revoked; until acknowledged either status is right. */
  revoking?: boolean;
}

class Traffic {
  readonly stats = new Map<Op, OpStats>(
    MIX.map((lane) => [lane.op, { at: [], latencies: [], errors: 0, errorSamples: [], skipped: 0 }]),
  );
  readonly certs: Cert[] = [];
  private readonly unrevoked: Cert[] = [];
  private turn = 0;
  private csrTurn = 0;
  private ocspTurn = 0;
  private nonceTurn = 0;
  private orderSequence = 0;
  crlBytes = 0;
  t0 = 0;

  constructor(
    private readonly cluster: Cluster,
    private readonly material: Material,
    private readonly responder: Http01Responder,
  ) {}

  private next(): SoakNode {
    const nodes = this.cluster.nodes;
    return nodes[this.turn++ % nodes.length]!;
  }

  private get auth() {
    return `Bearer ${this.cluster.apiKey}`;
  }

  async issue(): Promise<void> {
    const csr = this.material.csrs[this.csrTurn++ % this.material.csrs.length]!;
    const answer = await call(
      this.next(),
      'POST',
      '/v1/certificates?policy=web-server',
      { authorization: this.auth, 'content-type': 'application/pkcs10' },
      csr,
    );
    expectStatus(answer, 201, 'issue');
    const cert: Cert = {
      serial: (JSON.parse(answer.body.toString('utf8')) as { serialNumber: string }).serialNumber,
    };
    this.certs.push(cert);
    this.unrevoked.push(cert);
  }

  async revoke(): Promise<boolean> {
    if (this.unrevoked.length === 0) return false;
    const index = Math.floor(Math.random() * this.unrevoked.length);
    const cert = this.unrevoked[index]!;
    this.unrevoked[index] = this.unrevoked.at(-1)!;
    this.unrevoked.pop();
    cert.revoking = true;
    const reason = this.certs.length % 2 ? 'superseded' : 'keyCompromise';
    const answer = await call(
      this.next(),
      'POST',
      `/v1/certificates/${cert.serial}/revoke`,
      { authorization: this.auth, 'content-type': 'application/json' },
      Buffer.from(JSON.stringify({ reason })),
    );
    expectStatus(answer, 200, 'revoke');
    cert.revokedAt = performance.now();
    return true;
  }

  /** The status every node must answer for a certificate now, or undefined when either is right. */
  private expected(cert: Cert): 'good' | 'revoked' | undefined {
    if (cert.revokedAt !== undefined)
      return performance.now() - cert.revokedAt > STALE_MS ? 'revoked' : undefined;
    return cert.revoking ? undefined : 'good';
  }

  private async ocspPost(
    body: Buffer,
    expect: 'good' | 'revoked' | undefined,
    nonce?: Buffer,
  ): Promise<void> {
    const answer = await call(
      this.next(),
      'POST',
      '/ocsp',
      { 'content-type': 'application/ocsp-request' },
      body,
    );
    expectStatus(answer, 200, 'ocsp');
    const read = readOcspResponse(answer.body);
    if (expect && read.status !== expect)
      throw new Error(`ocsp: answered ${read.status}, expected ${expect}`);
    // The nonce extension carries the nonce as the DER of an OCTET STRING (RFC 8954).
    if (nonce && !read.nonceValue?.equals(Buffer.from(AsnConvert.serialize(new OctetString(nonce)))))
      throw new Error('ocsp: the nonce was not echoed');
  }

  private randomCert(): Cert | undefined {
    return this.certs[Math.floor(Math.random() * this.certs.length)];
  }

  async ocsp(): Promise<void> {
    const cert = this.ocspTurn++ % 2 ? this.randomCert() : undefined;
    if (!cert) return this.ocspPost(this.material.opensslPlain, 'good');
    return this.ocspPost(ocspRequestDer(this.material.issuer, cert.serial), this.expected(cert));
  }

  async ocspNonce(): Promise<void> {
    const cert = this.nonceTurn++ % 2 ? this.randomCert() : undefined;
    if (!cert) return this.ocspPost(this.material.opensslNonce, 'good');
    const nonce = randomBytes(32);
    return this.ocspPost(
      ocspRequestDer(this.material.issuer, cert.serial, nonce),
      this.expected(cert),
      nonce,
    );
  }

  async crl(): Promise<void> {
    const answer = await call(this.next(), 'GET', '/crl/dev-intermediate.crl');
    expectStatus(answer, 200, 'crl');
    this.crlBytes = answer.body.length;
  }

  /** An ACME client whose requests go round robin over the nodes, as behind a load balancer. */
  async acmeClient(): Promise<AcmeClient> {
    const origin = this.cluster.publicUrl;
    const client = await new AcmeClient(
      (url, init) =>
        fetch(url.startsWith(origin) ? this.next().base.origin + url.slice(origin.length) : url, init),
      `${origin}/acme/dev/directory`,
    ).init();
    const account = await client.newAccount();
    if (account.status !== 201) throw new Error(`newAccount: ${account.status}`);
    return client;
  }

  /** One complete order, as bench/acme.ts makes it. */
  async order(client: AcmeClient): Promise<void> {
    const name = `soak-${++this.orderSequence}-${process.pid}-${this.t0.toFixed(0)}.example.com`;
    const order = await client.newOrder([{ type: 'dns', value: name }]);
    if (order.status !== 201) throw new Error(`acme newOrder: ${order.status} ${JSON.stringify(order.body)}`);
    const authzUrl: string = order.body.authorizations[0];
    const authz = await client.post(authzUrl, '');
    const challenge = authz.body.challenges.find((c: { type: string }) => c.type === 'http-01');
    this.responder.answers.set(challenge.token, client.keyAuthorization(challenge.token));
    try {
      await client.post(challenge.url, {});
      const done = await client.poll(authzUrl, (body) => body.status !== 'pending', 400, ACME_POLL_MS);
      if (done.body.status !== 'valid') throw new Error(`acme authorization ${done.body.status}`);
    } finally {
      this.responder.answers.delete(challenge.token);
    }
    const key = await generateTestKey('ecdsa-p256');
    const csr = handCsr({
      key,
      extensions: [sanExtension([{ type: 'dns', value: name }])],
      subject: new Uint8Array([0x30, 0]),
    });
    const finalized = await client.post(order.body.finalize, { csr: Buffer.from(csr).toString('base64url') });
    if (finalized.body.status !== 'valid')
      throw new Error(`acme finalize: ${finalized.status} ${JSON.stringify(finalized.body).slice(0, 200)}`);
    const chain = await client.post(finalized.body.certificate, '');
    if (chain.status !== 200) throw new Error(`acme certificate: ${chain.status}`);
  }

  /** Runs one lane until `until` (performance.now()); `body` answers false for a turn with nothing to do. */
  async lane(lane: Lane, until: number, body: () => Promise<boolean | undefined>): Promise<void> {
    const stats = this.stats.get(lane.op)!;
    const period = (lane.inFlight / (lane.perSecond * SCALE)) * 1000;
    await Promise.all(
      Array.from({ length: lane.inFlight }, async (_, loop) => {
        let next = this.t0 + (loop * period) / lane.inFlight;
        while (next < until) {
          const wait = next - performance.now();
          if (wait > 0) await sleep(wait);
          const started = performance.now();
          try {
            if ((await body()) === false) stats.skipped += 1;
            else {
              stats.at.push((performance.now() - this.t0) / 1000);
              stats.latencies.push(performance.now() - started);
            }
          } catch (error) {
            stats.errors += 1;
            const text = `${((started - this.t0) / 1000).toFixed(0)} s: ${error instanceof Error ? error.message : String(error)}`;
            if (stats.errorSamples.length < 3) stats.errorSamples.push(text.slice(0, 300));
          }
          // Behind schedule: go on at once, but never burst to catch up.
          next = Math.max(next + period, performance.now());
        }
      }),
    );
  }

  async run(seconds: number): Promise<number> {
    const clients = await Promise.all(
      Array.from({ length: MIX.find((l) => l.op === 'acme')!.inFlight }, () => this.acmeClient()),
    );
    let clientTurn = 0;
    const bodies: Record<Op, () => Promise<boolean | undefined>> = {
      issue: () => this.issue().then(() => true),
      ocsp: () => this.ocsp().then(() => true),
      'ocsp-nonce': () => this.ocspNonce().then(() => true),
      revoke: () => this.revoke(),
      crl: () => this.crl().then(() => true),
      acme: () => this.order(clients[clientTurn++ % clients.length]!).then(() => true),
    };
    this.t0 = performance.now();
    const until = this.t0 + seconds * 1000;
    await Promise.all(MIX.map((lane) => this.lane(lane, until, bodies[lane.op])));
    return (performance.now() - this.t0) / 1000;
  }
}

// ---- samples and figures -----------------------------------------------------------------------

interface Sample {
  /** Seconds since the traffic started (negative: before). */
  t: number;
  rss: ByRole[];
  fds: ByRole[];
  /** CPU seconds so far, by role, and of the PostgreSQL cluster (postmaster and backends). */
  cpu: ByRole[];
  postgresCpu: number;
  postgresProcesses: number;
}

const total = (r: ByRole) => r.server + r.workers + r.partition;
const sum = (rs: ByRole[]): ByRole => ({
  server: rs.reduce((s, r) => s + r.server, 0),
  workers: rs.reduce((s, r) => s + r.workers, 0),
  partition: rs.reduce((s, r) => s + r.partition, 0),
});

function sample(cluster: Cluster, t: number, postgresPid: number | undefined): Sample {
  return {
    t,
    rss: cluster.nodes.map((node) => rssByRole(node.pid())),
    fds: cluster.nodes.map((node) => fdsByRole(node.pid())),
    cpu: cluster.nodes.map((node) => cpuByRole(node.pid())),
    postgresCpu: postgresPid ? cpuSeconds(postgresPid) : Number.NaN,
    postgresProcesses: postgresPid ? processCount(postgresPid) : Number.NaN,
  };
}

/** Least squares y = a + b x, with the standard error of b. */
function fitLine(xs: number[], ys: number[]): { slope: number; se: number } {
  const n = xs.length;
  if (n < 3) return { slope: Number.NaN, se: Number.NaN };
  const mx = xs.reduce((s, x) => s + x, 0) / n;
  const my = ys.reduce((s, y) => s + y, 0) / n;
  const sxx = xs.reduce((s, x) => s + (x - mx) ** 2, 0);
  const slope = xs.reduce((s, x, i) => s + (x - mx) * (ys[i]! - my), 0) / sxx;
  const residuals = xs.reduce((s, x, i) => s + (ys[i]! - my - slope * (x - mx)) ** 2, 0);
  return { slope, se: Math.sqrt(residuals / (n - 2) / sxx) };
}

interface Slope {
  slope: number;
  se: number;
  verdict: string;
}

/** MB per minute of `pick` over the samples from `fromSeconds` on. */
function slopeOf(samples: Sample[], fromSeconds: number, pick: (s: Sample) => number): Slope {
  const used = samples.filter((s) => s.t >= fromSeconds);
  const { slope, se } = fitLine(
    used.map((s) => s.t / 60),
    used.map(pick),
  );
  return { slope, se, verdict: verdictOf(slope, se) };
}

/** Flat within FLAT_MB_PER_MINUTE, else growing or shrinking when beyond 2 standard errors. */
function verdictOf(slope: number, se: number): string {
  if (!Number.isFinite(slope)) return 'too few samples';
  if (Math.abs(slope) <= FLAT_MB_PER_MINUTE) return 'flat';
  if (Math.abs(slope) <= 2 * se) return 'not distinguishable from noise';
  return slope > 0 ? 'GROWING' : 'shrinking';
}

function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? Number.NaN;
}

function window(stats: OpStats, from: number, to: number): { p50: number; p99: number; count: number } {
  const latencies = stats.latencies
    .filter((_, i) => stats.at[i]! >= from && stats.at[i]! < to)
    .sort((a, b) => a - b);
  return { p50: quantile(latencies, 0.5), p99: quantile(latencies, 0.99), count: latencies.length };
}

interface RunResult {
  nodes: number;
  elapsed: number;
  rows: { op: Op; done: number; rate: number; p50: number; p99: number; errors: number }[];
  rssStart: number;
  rssEnd: number;
  fdsStart: number;
  fdsEnd: number;
  slope: Slope;
  loadStart: number;
  loadEnd: number;
}

const byRoleText = (r: ByRole, digits = 0) =>
  `${fmt(r.server, digits)} / ${fmt(r.workers, digits)} / ${fmt(r.partition, digits)} / ${fmt(total(r), digits)}`;

function printOps(traffic: Traffic, elapsed: number): RunResult['rows'] {
  const edge = Math.min(60, elapsed / 4);
  console.log(
    `\n| operation | target /s | done | achieved /s | p50 ms | p99 ms | first ${fmt(edge)} s p50 / p99 | last ${fmt(edge)} s p50 / p99 | errors |`,
  );
  console.log('|---|--:|--:|--:|--:|--:|--:|--:|--:|');
  const rows: RunResult['rows'] = [];
  for (const lane of MIX) {
    const stats = traffic.stats.get(lane.op)!;
    const sorted = [...stats.latencies].sort((a, b) => a - b);
    const first = window(stats, 0, edge);
    const last = window(stats, elapsed - edge, Number.POSITIVE_INFINITY);
    const row = {
      op: lane.op,
      done: sorted.length,
      rate: sorted.length / elapsed,
      p50: quantile(sorted, 0.5),
      p99: quantile(sorted, 0.99),
      errors: stats.errors,
    };
    rows.push(row);
    console.log(
      `| ${lane.op} | ${fmt(lane.perSecond * SCALE, 1)} | ${row.done} | ${fmt(row.rate, 1)} | ${fmt(row.p50, 1)} | ${fmt(row.p99, 1)} | ${fmt(first.p50, 1)} / ${fmt(first.p99, 1)} | ${fmt(last.p50, 1)} / ${fmt(last.p99, 1)} | ${row.errors}${stats.skipped ? ` (${stats.skipped} turns skipped)` : ''} |`,
    );
  }
  for (const lane of MIX)
    for (const text of traffic.stats.get(lane.op)!.errorSamples) console.log(`  ${lane.op} error at ${text}`);
  return rows;
}

function printMemory(
  cluster: Cluster,
  samples: Sample[],
): Pick<RunResult, 'rssStart' | 'rssEnd' | 'fdsStart' | 'fdsEnd' | 'slope'> {
  const start = samples[0]!;
  const end = samples.at(-1)!;
  const warm = samples.find((s) => s.t >= 60) ?? end;
  console.log(
    '\nRSS MB (server / workers / partition / total) and open fds (server / workers / partition / total), per node:',
  );
  console.log(
    `| node | RSS before traffic | RSS at ${fmt(warm.t)} s | RSS at end (${fmt(end.t)} s) | fds before | fds at end |`,
  );
  console.log('|---|--:|--:|--:|--:|--:|');
  cluster.nodes.forEach((node, i) => {
    console.log(
      `| ${node.name} | ${byRoleText(start.rss[i]!)} | ${byRoleText(warm.rss[i]!)} | ${byRoleText(end.rss[i]!)} | ${byRoleText(start.fds[i]!)} | ${byRoleText(end.fds[i]!)} |`,
    );
  });
  console.log(
    `PostgreSQL processes (postmaster, backends, auxiliaries): ${start.postgresProcesses} before, ${end.postgresProcesses} at end`,
  );
  // CPU used during the traffic, as a share of one core: how much of the 2 cores the run took.
  const seconds = end.t - start.t;
  const cpu = (pick: (r: ByRole) => number) =>
    `${fmt((100 * (pick(sum(end.cpu)) - pick(sum(start.cpu)))) / seconds)}%`;
  console.log(
    `CPU during the traffic, % of one core (all nodes): server ${cpu((r) => r.server)}, workers ${cpu((r) => r.workers)}, partition ${cpu((r) => r.partition)}, PostgreSQL ${fmt((100 * (end.postgresCpu - start.postgresCpu)) / seconds)}%`,
  );
  const rssTotal = (s: Sample) => total(sum(s.rss));
  const slopes = {
    total: slopeOf(samples, 60, rssTotal),
    lastHalf: slopeOf(samples, end.t / 2, rssTotal),
    server: slopeOf(samples, 60, (s) => sum(s.rss).server),
    workers: slopeOf(samples, 60, (s) => sum(s.rss).workers),
    partition: slopeOf(samples, 60, (s) => sum(s.rss).partition),
    fds: slopeOf(samples, 60, (s) => total(sum(s.fds))),
  };
  const text = (s: Slope, unit = 'MB/min') =>
    `${s.slope >= 0 ? '+' : ''}${fmt(s.slope, 2)} ± ${fmt(2 * s.se, 2)} ${unit} (${s.verdict})`;
  console.log(
    `RSS slope, all nodes, samples every ${SAMPLE_SECONDS} s from 60 s on (± 2 standard errors; flat: |slope| <= ${FLAT_MB_PER_MINUTE} MB/min):`,
  );
  console.log(`  total ${text(slopes.total)}; last half of the run ${text(slopes.lastHalf)}`);
  console.log(
    `  by role: server ${text(slopes.server)}, workers ${text(slopes.workers)}, partition ${text(slopes.partition)}`,
  );
  console.log(`  open fds ${text(slopes.fds, 'fds/min')}`);
  console.log(
    `RSS samples (total MB, every ${SAMPLE_SECONDS} s): ${samples.map((s) => fmt(rssTotal(s))).join(' ')}`,
  );
  return {
    rssStart: rssTotal(start),
    rssEnd: rssTotal(end),
    fdsStart: total(sum(start.fds)),
    fdsEnd: total(sum(end.fds)),
    slope: slopes.total,
  };
}

async function printDatabase(url: string, traffic: Traffic): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const counts = await client.query<{ policy: string; status: string; n: number }>(
      'select policy, status, count(*)::int as n from certificates group by policy, status order by 1, 2',
    );
    const size = await client.query<{ mb: number }>(
      'select pg_database_size(current_database()) / 1048576.0 as mb',
    );
    const revoked = traffic.certs.filter((c) => c.revokedAt !== undefined).length;
    console.log(
      `stored: ${counts.rows.map((r) => `${r.policy}/${r.status} ${r.n}`).join(', ')}; this run's answers: ${traffic.certs.length + 1} issued by REST (one before the traffic), ${revoked} revoked, ${traffic.stats.get('acme')!.latencies.length} ACME orders (their accounts made before the traffic); database ${fmt(Number(size.rows[0]!.mb), 1)} MB; last CRL ${traffic.crlBytes} bytes`,
    );
  } finally {
    await client.end();
  }
}

/**
 * `--trace-gc`: V8 prints a line per collection to the process's stdout (the node's log), such as
 * `[4242:0x55d0c8a0]   61234 ms: Mark-Compact 41.2 (45.0) -> 35.9 (44.7) MB, ...`. The size after
 * a mark-compact is the live JS heap; its slope from 60 s of traffic on, per process, says whether
 * what the program keeps grows, apart from what the allocator and V8's spare pages do to RSS.
 */
function printHeapAfterGc(cluster: Cluster, trafficWallStart: number): void {
  const line =
    /^\[(\d+):0x[0-9a-f]+\]\s+(\d+) ms: Mark-Compact(?: \(reduce\))? [\d.]+ \([\d.]+\) -> ([\d.]+) \(([\d.]+)\)/;
  console.log(
    'JS heap after each full collection (V8 --trace-gc, mark-compact), MB, from 60 s of traffic on:',
  );
  console.log(
    '| node | process | role | collections | first | last | min / max | slope MB/min | heap V8 holds (committed): first -> last, slope | most given cause |',
  );
  console.log('|---|--:|---|--:|--:|--:|--:|---|---|---|');
  for (const node of cluster.nodes) {
    const byPid = new Map<number, { t: number; mb: number; committed: number }[]>();
    const reasons = new Map<number, Map<string, number>>();
    for (const text of readFileSync(node.log, 'utf8').split('\n')) {
      const match = line.exec(text);
      if (!match) continue;
      const t = (node.spawnedAt + Number(match[2]) - trafficWallStart) / 1000;
      if (t < 60) continue;
      const pid = Number(match[1]);
      byPid.set(pid, [...(byPid.get(pid) ?? []), { t, mb: Number(match[3]), committed: Number(match[4]) }]);
      // What V8 gave as the cause: the text after the last parenthesis ("allocation failure", ...).
      const reason = text.slice(text.lastIndexOf(')') + 1).trim() || '?';
      const counts = reasons.get(pid) ?? new Map<string, number>();
      counts.set(reason, (counts.get(reason) ?? 0) + 1);
      reasons.set(pid, counts);
    }
    for (const [pid, points] of byPid) {
      const { slope, se } = fitLine(
        points.map((p) => p.t / 60),
        points.map((p) => p.mb),
      );
      const sizes = points.map((p) => p.mb);
      const verdict = verdictOf(slope, se);
      const held = fitLine(
        points.map((p) => p.t / 60),
        points.map((p) => p.committed),
      );
      const heldText = `${fmt(points[0]!.committed, 1)} -> ${fmt(points.at(-1)!.committed, 1)}, ${fmt(held.slope, 2)} ± ${fmt(2 * held.se, 2)}`;
      console.log(
        `| ${node.name} | ${pid} | ${node.roles?.get(pid) ?? '?'} | ${points.length} | ${fmt(sizes[0]!, 1)} | ${fmt(sizes.at(-1)!, 1)} | ${fmt(Math.min(...sizes), 1)} / ${fmt(Math.max(...sizes), 1)} | ${fmt(slope, 2)} ± ${fmt(2 * se, 2)} (${verdict}) | ${heldText} | ${[...(reasons.get(pid) ?? [])].sort((a, b) => b[1] - a[1])[0]?.join(' x') ?? ''} |`,
      );
    }
  }
}

/** Warnings and errors in a node's log (pino JSON lines: level 40 and 50+). */
function logFindings(log: string): string {
  const lines = readFileSync(log, 'utf8').split('\n').filter(Boolean);
  const messages = new Map<string, number>();
  let warnings = 0;
  let errors = 0;
  for (const line of lines) {
    const level = Number(/"level":(\d+)/.exec(line)?.[1] ?? 0);
    if (level < 40) continue;
    if (level >= 50) errors += 1;
    else warnings += 1;
    const key = `${level >= 50 ? 'error' : 'warn'}: ${/"msg":"([^"]*)"/.exec(line)?.[1] ?? line.slice(0, 120)}`;
    messages.set(key, (messages.get(key) ?? 0) + 1);
  }
  const top = [...messages].sort((a, b) => b[1] - a[1]).slice(0, 5);
  return `${lines.length} lines, ${warnings} warnings, ${errors} errors${top.length ? `: ${top.map(([m, n]) => `${m} (x${n})`).join('; ')}` : ''}`;
}

// ---- one run -----------------------------------------------------------------------------------

async function soak(
  count: number,
  postgres: NonNullable<Awaited<ReturnType<typeof throwawayPostgres>>>,
  responder: Http01Responder,
  dnsPort: number,
  csrs: Buffer[],
): Promise<RunResult> {
  const databaseUrl = await createDatabase(postgres.url, `soak_${count}_${Date.now()}`);
  const cluster = await startCluster(count, databaseUrl, { http: responder.port, dns: dnsPort });
  const loadStart = loadavg()[0]!;
  console.log(
    `\n## ${count} node${count > 1 ? 's' : ''}, ${WORKERS} HTTP workers each${OCSP_CACHE_ENTRIES === undefined ? '' : `, ocsp.cacheEntries ${OCSP_CACHE_ENTRIES}`}; ${uptime()}`,
  );
  try {
    const material = await makeMaterial(cluster, csrs);
    const traffic = new Traffic(cluster, material, responder);
    // Settled after start-up and the first issuance, before any traffic.
    await sleep(3000);
    const postgresPid = postgres.pid?.();
    const samples: Sample[] = [sample(cluster, 0, postgresPid)];
    // Timed from the traffic's start (t0 is set once the ACME accounts exist).
    const timer = setInterval(() => {
      if (traffic.t0) samples.push(sample(cluster, (performance.now() - traffic.t0) / 1000, postgresPid));
    }, SAMPLE_SECONDS * 1000);
    const trafficWallStart = Date.now();
    const elapsed = await traffic.run(MINUTES * 60);
    clearInterval(timer);
    for (const node of cluster.nodes) node.roles = rolesOf(node.pid());
    samples.push(sample(cluster, elapsed, postgresPid));
    const loadEnd = loadavg()[0]!;
    console.log(`traffic ran ${fmt(elapsed, 1)} s; ${uptime()}`);
    const rows = printOps(traffic, elapsed);
    const memory = printMemory(cluster, samples);
    await printDatabase(databaseUrl, traffic);
    if (TRACE_GC) printHeapAfterGc(cluster, trafficWallStart);
    for (const node of cluster.nodes) {
      const { code, ms } = await node.stop();
      node.agent.destroy();
      console.log(`${node.name}: SIGTERM -> exit ${code} in ${fmt(ms)} ms; log: ${logFindings(node.log)}`);
    }
    return { nodes: count, elapsed, rows, ...memory, loadStart, loadEnd };
  } finally {
    for (const node of cluster.nodes) await node.stop();
  }
}

async function main(): Promise<void> {
  const postgres = await throwawayPostgres();
  if (!postgres) {
    console.error('bench/soak needs $DATABASE_URL or the PostgreSQL 15 binaries (Debian postgresql)');
    process.exitCode = 1;
    return;
  }
  stops.add(() => postgres.stop());
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
    ].concat(['-http01', '', '-https01', '', '-tlsalpn01', '']),
    { stdio: 'ignore' },
  );
  scratch.track(dns);
  const csrs = makeCsrs(tempDir('signet-bench-soak-csr-'), 16);
  console.log(
    `bench/soak: ${MINUTES} min per run, nodes ${NODE_COUNTS.join(' then ')}, ${WORKERS} HTTP workers per node, PostgreSQL ${postgres.dataDir ? '15 (a private cluster, fsync on)' : 'at $DATABASE_URL'}; P-256 dev-intermediate; memory sampled every ${SAMPLE_SECONDS} s`,
  );
  console.log('mix (offered; loops in flight; requests round robin over the nodes):');
  for (const lane of MIX)
    console.log(
      `  ${lane.op.padEnd(10)} ${fmt(lane.perSecond * SCALE, 1).padStart(5)}/s  ${lane.inFlight} in flight  ${lane.what}`,
    );
  const results: RunResult[] = [];
  try {
    for (const count of NODE_COUNTS) results.push(await soak(count, postgres, responder, dnsPort, csrs));
  } finally {
    await responder.close();
    dns.kill();
  }
  console.log('\n## comparison');
  console.log(
    `| nodes | load avg start -> end | ${MIX.map((l) => `${l.op} /s (p99 ms)`).join(' | ')} | errors | RSS MB start -> end | fds start -> end | RSS slope MB/min |`,
  );
  console.log(`|--:|---|${MIX.map(() => '--:|').join('')}--:|---|---|---|`);
  for (const r of results) {
    console.log(
      `| ${r.nodes} | ${fmt(r.loadStart, 1)} -> ${fmt(r.loadEnd, 1)} | ${r.rows.map((row) => `${fmt(row.rate, 1)} (${fmt(row.p99)})`).join(' | ')} | ${r.rows.reduce((s, row) => s + row.errors, 0)} | ${fmt(r.rssStart)} -> ${fmt(r.rssEnd)} | ${fmt(r.fdsStart)} -> ${fmt(r.fdsEnd)} | ${r.slope.slope >= 0 ? '+' : ''}${fmt(r.slope.slope, 2)} ± ${fmt(2 * r.slope.se, 2)} (${r.slope.verdict}) |`,
    );
  }
}

await main();
cleanup();
process.exit(0);
