import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { X509Certificate } from '@peculiar/x509';
import { count, getTableName, isTable } from 'drizzle-orm';
import { drizzle } from 'drizzle-orm/node-postgres';
import type { PgTable } from 'drizzle-orm/pg-core';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { initDataDir } from '../../src/cli/init.ts';
import * as schema from '../../src/db/schema/index.ts';
import { verifyAuditLog } from '../../src/hsm/custody/index.ts';
import { AcmeClient, newAcmeKey } from '../helpers/acme-client.ts';
import { createEmptyPostgresDatabase, postgresAvailable } from '../helpers/database.ts';
import { hasTool } from '../helpers/tools.ts';
import { buildOcspRequest } from '../revocation/helpers/ocsp.ts';
import type { TestCa } from '../revocation/helpers/pki.ts';
import { freePort, opensslCsr } from './fuzz/service.ts';

/**
 * Issue #34: unauthenticated endpoints under flood. One client address (127.0.0.1) floods each
 * of OCSP (with nonces, without for a known serial, for an unknown serial), CRL fetches, ACME
 * newNonce and newAccount, and failed logins for a fixed interval against a real CA (`signet
 * serve`, two HTTP workers, on PostgreSQL so that the test can count rows while it serves), and
 * the growth of the partition's audit log (records and bytes of DATA/hsm/issuing/audit.log) and
 * of every database table is held to the bound derived from the configured limits (README
 * "What a flood can grow"). Each flood also checks that it went past its limit, so that a bound
 * met only because the flood was too small cannot pass.
 */
const haveOpenssl = hasTool('openssl', ['version']);
const havePostgres = postgresAvailable();

const SIGNET = path.resolve('bin/signet.js');
const FLOOD_MS = 6_000;
const CONCURRENCY = 16;
const WORKERS = 2;
const LIMITS = {
  ocspNoncePerMinute: 120,
  failedAuthPerMinute: 60,
  newAccountsPerMinute: 30,
  noncesPerAddress: 100,
};
/** Each HTTP worker asks the partition member for its status every 5 s (src/hsm/cluster.ts). */
const HEALTH_CHECK_MS = 5_000;
/** A partition audit record is one JSON line of well under this many bytes. */
const MAX_RECORD_BYTES = 1024;

/** A token bucket of `perMinute` that starts full: what it can grant within `ms`. */
const bucketBound = (perMinute: number, ms: number) => Math.floor(perMinute * (1 + ms / 60_000));

interface Snapshot {
  at: number;
  auditBytes: number;
  auditRecords: { op: string; result: string; purpose?: string }[];
  rows: Record<string, number>;
}

interface Growth {
  ms: number;
  auditBytes: number;
  auditRecords: number;
  /** Partition audit records by `op result [purpose]`, e.g. `sign ok ocsp`. */
  ops: Record<string, number>;
  /** Tables whose row count changed, by how much. */
  rows: Record<string, number>;
}

interface FloodResult {
  requests: number;
  statuses: Record<number, number>;
}

let dir: string;
let dataDir: string;
let url: string;
let auditFile: string;
let child: ChildProcess | undefined;
let log = '';
let pool: pg.Pool;
let dropDatabase: (() => Promise<void>) | undefined;
let issuer: X509Certificate;
let knownSerial: string;
const measured: Record<string, { growth: Growth; flood: FloodResult }> = {};

const tables = Object.values(schema).filter((value) => isTable(value)) as unknown as PgTable[];

async function snapshot(): Promise<Snapshot> {
  const db = drizzle(pool);
  const rows: Record<string, number> = {};
  for (const table of tables) {
    const [row] = await db.select({ n: count() }).from(table);
    rows[getTableName(table)] = row!.n;
  }
  const text = readFileSync(auditFile, 'utf8');
  const auditRecords = text
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line) as Snapshot['auditRecords'][number]);
  return { at: Date.now(), auditBytes: statSync(auditFile).size, auditRecords, rows };
}

function growth(before: Snapshot, after: Snapshot): Growth {
  const ops: Record<string, number> = {};
  for (const record of after.auditRecords.slice(before.auditRecords.length)) {
    const key = [record.op, record.result, record.purpose].filter(Boolean).join(' ');
    ops[key] = (ops[key] ?? 0) + 1;
  }
  const rows: Record<string, number> = {};
  for (const [table, n] of Object.entries(after.rows)) {
    const delta = n - (before.rows[table] ?? 0);
    if (delta !== 0) rows[table] = delta;
  }
  return {
    ms: after.at - before.at,
    auditBytes: after.auditBytes - before.auditBytes,
    auditRecords: after.auditRecords.length - before.auditRecords.length,
    ops,
    rows,
  };
}

/**
 * Waits until the CA's own start-up work (its first CRLs, the responder's certificate) is done:
 * no table changes and no partition record but health checks for a second.
 */
async function settle(): Promise<void> {
  const deadline = Date.now() + 30_000;
  let before = await snapshot();
  for (;;) {
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const after = await snapshot();
    const grown = growth(before, after);
    const quiet =
      Object.keys(grown.rows).length === 0 && grown.auditRecords === (grown.ops['status ok'] ?? 0);
    if (quiet) return;
    if (Date.now() > deadline) throw new Error(`the CA did not settle: ${JSON.stringify(grown)}`);
    before = after;
  }
}

/** `CONCURRENCY` loops sending `send(i)` for FLOOD_MS; answers how many requests and their statuses. */
async function flood(send: (i: number) => Promise<number>): Promise<FloodResult> {
  const statuses: Record<number, number> = {};
  let requests = 0;
  const end = Date.now() + FLOOD_MS;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (Date.now() < end) {
        const status = await send(requests++);
        statuses[status] = (statuses[status] ?? 0) + 1;
      }
    }),
  );
  return { requests, statuses };
}

/** Snapshot, flood, let the last group commit land, snapshot: the growth the flood caused. */
async function measure(name: string, send: (i: number) => Promise<number>): Promise<Growth> {
  const before = await snapshot();
  const result = await flood(send);
  await new Promise((resolve) => setTimeout(resolve, 300));
  const after = await snapshot();
  const grown = growth(before, after);
  measured[name] = { growth: grown, flood: result };
  console.log(`flood ${name}: ${JSON.stringify({ ...result, ...grown })}`);
  return grown;
}

async function status(response: Response): Promise<number> {
  await response.arrayBuffer();
  return response.status;
}

function ocsp(serial: string, nonce: boolean): Uint8Array {
  return buildOcspRequest({
    certIds: [{ issuer: { certificate: issuer } as TestCa, serial }],
    ...(nonce ? { nonce: randomBytes(16) } : {}),
  });
}

const postOcsp = async (body: Uint8Array) =>
  status(
    await fetch(`${url}/ocsp`, {
      method: 'POST',
      headers: { 'content-type': 'application/ocsp-request' },
      body,
    }),
  );

/**
 * The partition's audit log grew by at most `bound` records the flood caused, plus the health
 * checks every worker makes whatever the clients do (`status ok`, one per worker per 5 s).
 */
function expectPartitionGrowth(grown: Growth, bound: number): void {
  const health = grown.ops['status ok'] ?? 0;
  expect(health).toBeLessThanOrEqual(WORKERS * (Math.floor(grown.ms / HEALTH_CHECK_MS) + 1));
  expect(grown.auditRecords - health).toBeLessThanOrEqual(bound);
  expect(grown.auditBytes).toBeLessThanOrEqual(grown.auditRecords * MAX_RECORD_BYTES);
}

/** Tables other than `allowed` must not have grown at all. */
function expectOnlyGrowth(grown: Growth, allowed: string[]): void {
  const others = Object.entries(grown.rows).filter(([table, delta]) => delta > 0 && !allowed.includes(table));
  expect(Object.fromEntries(others)).toEqual({});
}

describe.skipIf(!haveOpenssl || !havePostgres)('unauthenticated endpoints under flood', () => {
  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'signet-flood-'));
    dataDir = path.join(dir, 'data');
    const database = await createEmptyPostgresDatabase();
    dropDatabase = database.drop;
    const port = await freePort();
    url = `http://127.0.0.1:${port}`;
    await initDataDir({ dataDir, port, publicUrl: url, databaseUrl: database.url, log: () => {} });
    const configFile = path.join(dataDir, 'signet.yaml');
    const config = parseYaml(readFileSync(configFile, 'utf8')) as Record<string, Record<string, unknown>>;
    config.server = { ...config.server, workers: WORKERS };
    config.rateLimit = { perMinute: 6000, failedAuthPerMinute: LIMITS.failedAuthPerMinute };
    config.ocsp = { ...config.ocsp, nonceRateLimit: { perMinute: LIMITS.ocspNoncePerMinute } };
    config.audit = { failedAuthInterval: 'PT1M' };
    config.acme = {
      ...config.acme,
      maxNoncesPerAddress: LIMITS.noncesPerAddress,
      rateLimit: { newAccountsPerMinute: LIMITS.newAccountsPerMinute, newOrdersPerMinute: 300 },
    };
    writeFileSync(configFile, stringifyYaml(config));
    auditFile = path.join(dataDir, 'hsm', 'issuing', 'audit.log');
    pool = new pg.Pool({ connectionString: database.url, max: 2 });

    child = spawn(process.execPath, [SIGNET, 'serve', '--data', dataDir, '--port', String(port)], {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...process.env, DATABASE_URL: database.url, SIGNET_LOG_LEVEL: 'warn' },
    });
    child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
      log = (log + chunk).slice(-100_000);
    });
    const deadline = Date.now() + 90_000;
    for (;;) {
      const ready = await fetch(`${url}/readyz`).catch(() => undefined);
      if (ready?.status === 200) break;
      if (Date.now() > deadline || child.exitCode !== null) throw new Error(`signet serve: ${log}`);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }

    const adminKey = readFileSync(path.join(dataDir, 'secrets', 'admin-api-key'), 'utf8').trim();
    const issued = await fetch(`${url}/v1/certificates?policy=web-server`, {
      method: 'POST',
      headers: { authorization: `Bearer ${adminKey}`, 'content-type': 'application/pkcs10' },
      body: opensslCsr(dir, 'flood').der,
    });
    expect(issued.status).toBe(201);
    knownSerial = ((await issued.json()) as { serialNumber: string }).serialNumber;
    const intermediate = await fetch(`${url}/v1/issuers/dev-intermediate/certificate`, {
      headers: { accept: 'application/x-pem-file' },
    });
    issuer = new X509Certificate(await intermediate.text());
    await settle();
  });

  afterAll(async () => {
    if (child && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((resolve) => child!.once('exit', resolve));
      child.kill('SIGTERM');
      await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 15_000))]);
      if (child.exitCode === null) child.kill('SIGKILL');
    }
    await pool?.end();
    await dropDatabase?.();
    if (dir) rmSync(dir, { recursive: true, force: true });
    console.log(`flood summary (${FLOOD_MS} ms each): ${JSON.stringify(measured, null, 1)}`);
  });

  it('OCSP with nonces signs at most ocsp.nonceRateLimit.perMinute (plus refill) per address', async () => {
    const grown = await measure('ocsp-nonce', () => postOcsp(ocsp(knownSerial, true)));
    const bound = bucketBound(LIMITS.ocspNoncePerMinute, grown.ms);
    const signatures = grown.ops['sign ok ocsp'] ?? 0;
    // The budget was spent (the flood went past it), and no more than it was signed.
    expect(signatures).toBeGreaterThanOrEqual(LIMITS.ocspNoncePerMinute);
    expect(measured['ocsp-nonce']!.flood.requests).toBeGreaterThan(2 * LIMITS.ocspNoncePerMinute);
    // The nonce budget, and the one pre-signed response of the certificate.
    expect(signatures).toBeLessThanOrEqual(bound + 1);
    expectPartitionGrowth(grown, bound + 1);
    // At most the one pre-signed response of the certificate (the answer beyond the budget) and
    // one bucket of the address.
    expect(grown.rows.ocsp_responses ?? 0).toBeLessThanOrEqual(1);
    expect(grown.rows.rate_limit_buckets ?? 0).toBeLessThanOrEqual(1);
    expectOnlyGrowth(grown, ['ocsp_responses', 'rate_limit_buckets']);
  });

  it('OCSP without a nonce for a known serial causes no signature once its response exists', async () => {
    const body = ocsp(knownSerial, false);
    // The pre-signed response exists after one request (the nonce flood may have made it already).
    expect(await postOcsp(body)).toBe(200);
    const grown = await measure('ocsp-presigned', () => postOcsp(body));
    expect(measured['ocsp-presigned']!.flood.statuses[200]).toBe(measured['ocsp-presigned']!.flood.requests);
    expectPartitionGrowth(grown, 0);
    expectOnlyGrowth(grown, []);
  });

  it('OCSP for serials this CA never issued causes no signature and no row', async () => {
    const grown = await measure('ocsp-unknown', () => postOcsp(ocsp(randomBytes(16).toString('hex'), false)));
    expect(measured['ocsp-unknown']!.flood.statuses[200]).toBe(measured['ocsp-unknown']!.flood.requests);
    expectPartitionGrowth(grown, 0);
    expectOnlyGrowth(grown, []);
  });

  it('CRL fetches cause no signature and no row', async () => {
    const grown = await measure('crl', async () => status(await fetch(`${url}/crl/dev-intermediate.crl`)));
    expect(measured.crl!.flood.statuses[200]).toBe(measured.crl!.flood.requests);
    expectPartitionGrowth(grown, 0);
    expectOnlyGrowth(grown, []);
  });

  it('ACME newNonce keeps at most acme.maxNoncesPerAddress nonces of the address', async () => {
    const newNonce = `${url}/acme/dev/new-nonce`;
    const grown = await measure('acme-new-nonce', async () =>
      status(await fetch(newNonce, { method: 'HEAD' })),
    );
    const { flood: result } = measured['acme-new-nonce']!;
    expect(result.statuses[200]).toBe(result.requests);
    // Far more nonces were handed out than the address may keep.
    expect(result.requests).toBeGreaterThan(3 * LIMITS.noncesPerAddress);
    expect(grown.rows.acme_nonces ?? 0).toBeLessThanOrEqual(LIMITS.noncesPerAddress);
    const [row] = await drizzle(pool).select({ n: count() }).from(schema.acmeNonces);
    expect(row!.n).toBeLessThanOrEqual(LIMITS.noncesPerAddress);
    expectPartitionGrowth(grown, 0);
    expectOnlyGrowth(grown, ['acme_nonces']);
  });

  it('ACME newAccount makes at most acme.rateLimit.newAccountsPerMinute (plus refill) accounts per address', async () => {
    const response = await fetch(`${url}/acme/dev/directory`);
    const directory = (await response.json()) as Record<string, string>;
    const grown = await measure('acme-new-account', async () => {
      const client = new AcmeClient(fetch, `${url}/acme/dev/directory`, newAcmeKey());
      client.directory = directory;
      return (await client.newAccount()).status;
    });
    const bound = bucketBound(LIMITS.newAccountsPerMinute, grown.ms);
    const { flood: result } = measured['acme-new-account']!;
    expect(result.statuses[201]).toBeGreaterThanOrEqual(LIMITS.newAccountsPerMinute);
    expect(result.statuses[429]).toBeGreaterThan(0);
    expect(grown.rows.acme_accounts ?? 0).toBeLessThanOrEqual(bound);
    // One acme.account.create row per account, nothing for a refusal.
    expect(grown.rows.audit_events ?? 0).toBe(grown.rows.acme_accounts ?? 0);
    expect(grown.rows.acme_nonces ?? 0).toBeLessThanOrEqual(LIMITS.noncesPerAddress);
    expect(grown.rows.rate_limit_buckets ?? 0).toBeLessThanOrEqual(1);
    expectPartitionGrowth(grown, 0);
    expectOnlyGrowth(grown, ['acme_accounts', 'audit_events', 'acme_nonces', 'rate_limit_buckets']);
  });

  it('failed logins write at most one audit row per worker per audit.failedAuthInterval', async () => {
    const grown = await measure('failed-login', async () =>
      status(await fetch(`${url}/v1/policies`, { headers: { authorization: 'Bearer not-a-key' } })),
    );
    const { flood: result } = measured['failed-login']!;
    const bound = bucketBound(LIMITS.failedAuthPerMinute, grown.ms);
    // The budget was spent: 401 up to it, 429 beyond.
    expect(result.statuses[401]).toBeGreaterThanOrEqual(LIMITS.failedAuthPerMinute);
    expect(result.statuses[401]).toBeLessThanOrEqual(bound);
    expect(result.statuses[429]).toBeGreaterThan(0);
    // The interval (1 minute) is longer than the flood: one row per worker at most, at least one.
    expect(grown.rows.audit_events ?? 0).toBeGreaterThanOrEqual(1);
    expect(grown.rows.audit_events ?? 0).toBeLessThanOrEqual(WORKERS);
    expect(grown.rows.rate_limit_buckets ?? 0).toBeLessThanOrEqual(1);
    expectPartitionGrowth(grown, 0);
    expectOnlyGrowth(grown, ['audit_events', 'rate_limit_buckets']);
  });

  it('leaves a partition audit log that verifies', async () => {
    const verified = await verifyAuditLog({ dir: path.join(dataDir, 'hsm', 'issuing') });
    expect(verified.ok).toBe(true);
    expect(child!.exitCode).toBeNull();
  });
});
