import { execFile, execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createApp } from '../../../src/api/app.ts';
import { createApiKey } from '../../../src/api/auth/api-keys.ts';
import type { AppDeps } from '../../../src/api/deps.ts';
import type { Role } from '../../../src/api/env.ts';
import { initDataDir } from '../../../src/cli/init.ts';
import { type Serving, serveDataDir } from '../../../src/cli/serve.ts';
import { decodePem } from '../../../src/x509/pem.ts';
import { newKeyAndCsr } from '../../helpers/openssl-csr.ts';
import { hasTool } from '../../helpers/tools.ts';
import { caller, contract, logSink } from './harness.ts';

/**
 * The API on the real service, shared by the test/api/stack-*.test.ts files (one per route
 * family): a data folder made by `signet init`, the partition process, PGlite with the real
 * migrations, the shipped policies and the real CA. Requests go through app.request (every
 * response held to openapi.yaml) and through the listening server with curl, with openssl making
 * the keys and CSRs and verifying what comes back.
 *
 * `useStack()` starts one service for the calling file (beforeAll) and stops it (afterAll); the
 * bindings below are live ES module bindings, set once it has started. Each test file has its
 * own module instance, so its own service, logs and secrets.
 */
export const haveTools = hasTool('openssl', ['version']) && hasTool('curl', ['--version']);
export const ROLES: Role[] = ['issuer', 'revoker', 'auditor', 'admin'];

export let dir: string;
export let dataDir: string;
export let serving: Serving;
export let deps: AppDeps;
export let call: ReturnType<typeof caller>;
export let logs: ReturnType<typeof logSink>;
export let adminKeyFile: string;
export let rootPem: string;
export const keys = {} as Record<Role, string>;
/** Key material, CSR bodies, API keys and JWSs used in this file: none may reach a log line. */
export const secrets: string[] = [];

/** Starts the service for the calling file's tests; call it inside the file's top describe. */
export function useStack(): void {
  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'signet-api-stack-'));
    dataDir = path.join(dir, 'data');
    const init = await initDataDir({ dataDir, port: 0, publicUrl: 'http://127.0.0.1:8080', log: () => {} });
    adminKeyFile = init.adminKeyFile;
    rootPem = readFileSync(init.rootCertificateFile, 'utf8');
    process.env.SIGNET_LOG_LEVEL = 'silent';
    serving = await serveDataDir({ dataDir, port: 0 });
    const { runtime } = serving;
    logs = logSink();
    deps = {
      clock: runtime.clock,
      logger: logs.logger,
      ca: runtime.ca,
      renewal: runtime.renewal,
      apiKeys: runtime.repositories.apiKeys,
      idempotency: runtime.repositories.idempotency,
      certificates: runtime.repositories.certificates,
      issuers: runtime.repositories.issuers,
      policies: runtime.policies,
      audit: runtime.repositories.audit,
      readiness: {
        database: () => runtime.database.ping(),
        partition: () => [...runtime.partitions.values()][0]!.status(),
      },
      ...(runtime.revocation ? { revocation: runtime.revocation } : {}),
      // The ACME server of signet.yaml's `dev` directory: its admin route is in openapi.yaml.
      ...(serving.acme ? { acme: serving.acme } : {}),
    };
    call = caller(createApp(deps));
    keys.admin = readFileSync(adminKeyFile, 'utf8').trim();
    for (const role of ['issuer', 'revoker', 'auditor'] as const) {
      keys[role] = (
        await createApiKey(deps.apiKeys, { roles: [role], policies: role === 'issuer' ? ['web-server'] : [] })
      ).key;
    }
  }, 180_000);

  afterAll(async () => {
    await serving?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });
}

export function openssl(args: string[]): string {
  return execFileSync('openssl', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/** A new P-256 key and CSR for `names` (DNS SANs), PEM and DER. */
export function makeCsr(
  name: string,
  names: string[],
  subject = `/CN=${names[0]}`,
): { pem: string; der: Buffer; keyFile: string } {
  const keyFile = path.join(dir, `${name}.key`);
  const pem = newKeyAndCsr({
    keyFile,
    subject,
    sans: names.map((n) => `DNS:${n}`),
    format: 'PEM',
  }).toString();
  const der = Buffer.from(decodePem(pem, 'CERTIFICATE REQUEST').der);
  secrets.push(readFileSync(keyFile, 'utf8').split('\n')[1]!, pem.split('\n')[1]!);
  return { pem, der, keyFile };
}

/** openssl verify of a leaf against the root, with the given intermediates. */
export function verifyChain(name: string, leafPem: string, intermediatesPem: string): string {
  const leafFile = path.join(dir, `${name}.pem`);
  const chainFile = path.join(dir, `${name}-chain.pem`);
  const rootFile = path.join(dir, 'root.pem');
  writeFileSync(leafFile, leafPem);
  writeFileSync(chainFile, intermediatesPem);
  writeFileSync(rootFile, rootPem);
  const result = spawnSync(
    'openssl',
    [
      'verify',
      '-x509_strict',
      '-purpose',
      'sslserver',
      '-CAfile',
      rootFile,
      '-untrusted',
      chainFile,
      leafFile,
    ],
    {
      encoding: 'utf8',
    },
  );
  return `${result.stdout}${result.stderr}`.replace(leafFile, 'leaf');
}

// The server runs in this process: clients must run asynchronously, or they would wait on a
// server whose event loop they block.
export const execFileAsync = promisify(execFile);

export async function curl(args: string[]): Promise<{ status: number; headers: string; body: Buffer }> {
  const headersFile = path.join(dir, `curl-headers-${Math.random().toString(36).slice(2)}.txt`);
  const { stdout: body } = await execFileAsync(
    'curl',
    ['-sS', '--max-time', '60', '-D', headersFile, ...args],
    {
      maxBuffer: 1 << 20,
      encoding: 'buffer',
    },
  );
  const headers = readFileSync(headersFile, 'utf8');
  const status = Number(/^HTTP\/[\d.]+ (\d{3})/m.exec(headers)?.[1]);
  return { status, headers, body };
}

export const bearer = (role: Role) => ['-H', `authorization: Bearer ${keys[role]}`];

/**
 * The operations of openapi.yaml each stack file exercises through app.request (its responses
 * held to the contract). Each file checks it exercised its list (`itExercised`); stack-coverage
 * checks that the lists together name every operation of openapi.yaml.
 */
export const STACK_OPERATIONS: Record<string, string[]> = {
  certificates: [
    'GET /v1/audit',
    'GET /v1/certificates',
    'GET /v1/certificates/{serial}',
    'POST /v1/certificates',
    'POST /v1/policies/{name}/evaluate',
  ],
  service: [
    'GET /docs',
    'GET /docs/rapidoc.js',
    'GET /healthz',
    'GET /metrics',
    'GET /readyz',
    'GET /v1/issuers',
    'GET /v1/issuers/{id}',
    'GET /v1/policies',
    'GET /v1/policies/{name}',
    'POST /v1/policies/reload',
  ],
  revocation: [
    'GET /crl/{issuerId}.crl',
    'GET /crl/{issuerId}/{shard}.crl',
    'GET /crl/{issuerId}/delta.crl',
    'GET /crl/{issuerId}/{shard}/delta.crl',
    'GET /ocsp/{request}',
    'GET /openapi.yaml',
    'GET /v1/certificates/{serial}',
    'GET /v1/issuers/{id}/certificate',
    'GET /v1/issuers/{id}/chain',
    'POST /ocsp',
    'POST /v1/certificates',
    'POST /v1/certificates/{serial}/renew',
    'POST /v1/certificates/{serial}/revoke',
    'POST /v1/issuers/{id}/crl',
    'POST /v1/revocations/by-key',
  ],
  roles: [
    'DELETE /v1/apikeys/{id}',
    'GET /v1/apikeys',
    'GET /v1/audit',
    'GET /v1/certificates',
    'GET /v1/certificates/{serial}',
    'GET /v1/issuers',
    'GET /v1/issuers/{id}',
    'GET /v1/policies',
    'GET /v1/policies/{name}',
    'POST /v1/acme/eab-keys',
    'POST /v1/apikeys',
    'POST /v1/certificates',
    'POST /v1/certificates/{serial}/revoke',
    'POST /v1/policies/reload',
    'POST /v1/policies/{name}/evaluate',
  ],
  apikeys: ['GET /v1/audit'],
};

/** The closing checks of a stack file: its operations exercised, and no secret in its logs. */
export function itClosesCleanly(file: keyof typeof STACK_OPERATIONS, minLogLines: number): void {
  it('exercised the operations of openapi.yaml it stands for, each response matching it', () => {
    const exercised = new Set([...contract.exercised].map((entry) => entry.split(' ').slice(0, 2).join(' ')));
    expect(STACK_OPERATIONS[file]!.length).toBeGreaterThan(0);
    expect(STACK_OPERATIONS[file]!.filter((operation) => !exercised.has(operation))).toEqual([]);
  });

  it('wrote no secret to any log line: no API key, private key, CSR or JWS', () => {
    for (const key of Object.values(keys)) secrets.push(key, key.slice(key.indexOf('_', 4) + 1));
    expect(logs.raw.length).toBeGreaterThan(minLogLines);
    const leaks = logs.raw.filter((line) =>
      secrets.some((secret) => secret.length >= 16 && line.includes(secret)),
    );
    expect(leaks).toEqual([]);
    // Every line carries the request id of the request it belongs to.
    expect(logs.lines.filter((line) => line.msg === 'request' && typeof line.reqId !== 'string')).toEqual([]);
  });
}
