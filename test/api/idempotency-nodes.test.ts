import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp } from '../../src/api/app.ts';
import { createApiKey } from '../../src/api/auth/api-keys.ts';
import type { AppDeps } from '../../src/api/deps.ts';
import { initDataDir } from '../../src/cli/init.ts';
import { openRuntime, type Runtime } from '../../src/cli/runtime.ts';
import { createTestDatabase, postgresAvailable, type TestDatabase } from '../helpers/database.ts';
import { hasTool } from '../helpers/tools.ts';
import { caller } from './helpers/harness.ts';

/**
 * Issue #17 with several nodes on one PostgreSQL: two CA runtimes (each with its own copy of the
 * partitions, like a cluster member restored from backup) share one database. A node dies with
 * idempotent issuances in flight; a retry on the other node is answered at once, with the
 * certificate the dead node stored, or by issuing when it stored none, and never twice.
 */
const available = hasTool('openssl', ['version']) && postgresAvailable();
const logger = pino({ level: 'silent' });

let dir: string;
let database: TestDatabase;
let nodeA: Runtime;
let nodeB: Runtime;
let issuerKey: string;

function depsOf(runtime: Runtime, overrides: Partial<AppDeps> = {}): AppDeps {
  return {
    clock: runtime.clock,
    logger,
    ca: runtime.ca,
    apiKeys: runtime.repositories.apiKeys,
    idempotency: runtime.repositories.idempotency,
    certificates: runtime.repositories.certificates,
    issuers: runtime.repositories.issuers,
    policies: runtime.policies,
    audit: runtime.repositories.audit,
    readiness: { database: async () => {}, partition: async () => ({ state: 'unsealed' }) },
    ...overrides,
  };
}

function csrPem(name: string): string {
  return execFileSync(
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
      path.join(dir, `${name}.key`),
      '-subj',
      `/CN=${name}.example.com`,
      '-addext',
      `subjectAltName=DNS:${name}.example.com`,
    ],
    { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] },
  );
}

describe.skipIf(!available)('idempotent issuance across two nodes on one PostgreSQL', () => {
  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'signet-idem-nodes-'));
    database = await createTestDatabase('postgres');
    const url = (database.target as { url: string }).url;
    const a = path.join(dir, 'a');
    await initDataDir({ dataDir: a, port: 0, publicUrl: 'http://127.0.0.1:8080', databaseUrl: url });
    const b = path.join(dir, 'b');
    cpSync(a, b, { recursive: true });
    nodeA = await openRuntime({ dataDir: a, logger, databaseUrl: url });
    nodeB = await openRuntime({ dataDir: b, logger, databaseUrl: url });
    issuerKey = (
      await createApiKey(nodeA.repositories.apiKeys, { roles: ['issuer'], policies: ['web-server'] })
    ).key;
  }, 180_000);

  afterAll(async () => {
    await nodeA?.close();
    await nodeB?.close();
    await database?.destroy();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('answers a retry on the other node at once once the first node is gone, and never issues twice', async () => {
    // Node A dies after storing the first request's certificate but before answering it, and
    // while the second request has not reached the partition yet.
    let reachedIssue!: () => void;
    const secondReachedCa = new Promise<void>((resolve) => {
      reachedIssue = resolve;
    });
    const callA = caller(
      createApp(
        depsOf(nodeA, {
          idempotency: {
            ...nodeA.repositories.idempotency,
            begin: (input) => nodeA.repositories.idempotency.begin(input),
            release: (input) => nodeA.repositories.idempotency.release(input),
            complete: async () => {
              throw new Error('node A was killed before it answered');
            },
          },
          ca: {
            ...nodeA.ca,
            stored: (serial) => nodeA.ca.stored(serial),
            evaluate: (input) => nodeA.ca.evaluate(input),
            issue: (input) => {
              if (input.idempotency?.key !== 'second') return nodeA.ca.issue(input);
              reachedIssue();
              return new Promise(() => {}); // never: the node dies first
            },
          },
        }),
      ),
    );
    const callB = caller(createApp(depsOf(nodeB)));
    const request = (key: string, csr: string) => ({
      key: issuerKey,
      body: { csr, policy: 'web-server' },
      headers: { 'idempotency-key': key },
    });
    const first = request('first', csrPem('first'));
    const second = request('second', csrPem('second'));

    expect((await callA('POST', '/v1/certificates', first)).response.status).toBe(500);
    void callA('POST', '/v1/certificates', second);
    await secondReachedCa;

    // Node A still runs: its requests are in flight.
    for (const retry of [first, second]) {
      const { response, body } = await callB('POST', '/v1/certificates', retry);
      expect(response.status).toBe(409);
      expect(body.code).toBe('idempotency.in_flight');
    }

    await nodeA.close();

    const replayed = await callB('POST', '/v1/certificates', first);
    expect(replayed.response.status).toBe(201);
    expect(replayed.response.headers.get('idempotent-replayed')).toBe('true');
    const reissued = await callB('POST', '/v1/certificates', second);
    expect(reissued.response.status).toBe(201);
    expect(reissued.response.headers.get('idempotent-replayed')).toBeNull();
    // And from then on, both keys replay what node B answered.
    for (const [retry, answer] of [
      [first, replayed],
      [second, reissued],
    ] as const) {
      const again = await callB('POST', '/v1/certificates', retry);
      expect(again.response.headers.get('idempotent-replayed')).toBe('true');
      expect(again.body).toEqual(answer.body);
    }

    const stored = (await nodeB.repositories.certificates.list({ status: ['good', 'revoked'] })).items;
    for (const name of ['first', 'second']) {
      const mine = stored.filter((row) => row.subject.includes(`CN=${name}.example.com`));
      expect(mine, name).toHaveLength(1);
    }
    const firstSerial = stored.find((row) => row.subject.includes('CN=first.example.com'))!.serial;
    expect(replayed.body.serialNumber).toBe(firstSerial);
    expect(new X509Certificate(replayed.body.certificate).serialNumber.toLowerCase()).toBe(firstSerial);
  }, 120_000);
});
