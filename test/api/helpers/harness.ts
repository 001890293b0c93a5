import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import type { Hono } from 'hono';
import { createApp } from '../../../src/api/app.ts';
import { createApiKey } from '../../../src/api/auth/api-keys.ts';
import type { AppDeps, AppOptions } from '../../../src/api/deps.ts';
import type { ApiEnv, Role } from '../../../src/api/env.ts';
import { createLogger } from '../../../src/api/logger.ts';
import { createImportFor } from '../../../src/cli/revocation.ts';
import { createApiKeysRepository } from '../../../src/db/api-keys.repository.ts';
import { createAuditRepository } from '../../../src/db/audit.repository.ts';
import { createCertificatesRepository } from '../../../src/db/certificates.repository.ts';
import { createCrlsRepository } from '../../../src/db/crls.repository.ts';
import { createIdempotencyRepository } from '../../../src/db/idempotency.repository.ts';
import { createIssuersRepository } from '../../../src/db/issuers.repository.ts';
import { createReplayGuardRepository } from '../../../src/db/replay-guard.repository.ts';
import { fixedClock } from '../../../src/lib/clock.ts';
import { createPolicyRegistry } from '../../../src/policy/registry.ts';
import { createRevokeUseCase } from '../../../src/revocation/revoke.usecase.ts';
import { createRevokeByKey } from '../../../src/revocation/revoke-by-key.ts';
import type { TestDatabase } from '../../helpers/database.ts';
import { Contract } from './contract.ts';
import { malformedOcsp, readyProbe } from './fakes.ts';

/** Captures the JSON log lines an app writes, to check request ids and the absence of secrets. */
export function logSink() {
  const lines: Record<string, unknown>[] = [];
  const raw: string[] = [];
  const stream = new Writable({
    write(chunk, _encoding, callback) {
      for (const line of String(chunk).split('\n').filter(Boolean)) {
        raw.push(line);
        lines.push(JSON.parse(line));
      }
      callback();
    },
  });
  return { lines, raw, logger: createLogger({ level: 'debug', destination: stream }) };
}

export const contract = new Contract();
export const SHIPPED_POLICIES = fileURLToPath(new URL('../../../policies', import.meta.url));

export interface CallOptions {
  key?: string;
  body?: unknown;
  raw?: string | Uint8Array;
  headers?: Record<string, string>;
  /** The client's address, as the node server would hand it to the app (`c.env.incoming.socket`). */
  address?: string;
}

export type TestClock = ReturnType<typeof fixedClock>;

export interface Harness {
  app: Hono<ApiEnv>;
  deps: AppDeps;
  clock: TestClock;
  keys: Record<Role, string>;
  logs: ReturnType<typeof logSink>;
  /** app.request, then the contract check; answers the response and its parsed body. */
  // biome-ignore lint/suspicious/noExplicitAny: bodies were validated against openapi.yaml before a test reads them
  call(method: string, path: string, options?: CallOptions): Promise<{ response: Response; body: any }>;
  makeKey(roles: Role[], policies?: string[], expiresAt?: Date | null): Promise<string>;
}

export interface HarnessOptions {
  database: TestDatabase;
  /** The CA; a real one from the service runtime, or a stand-in for edge-only tests. */
  ca: AppDeps['ca'];
  clock?: TestClock;
  options?: AppOptions;
  /** Policies the `issuer` key is bound to. */
  issuerPolicies?: string[];
  policiesDir?: string;
  /** Real revocation (the revoke use case and revocation by key over the database; OCSP answers malformedRequest). */
  revocation?: boolean;
  overrides?: Partial<AppDeps>;
}

/** The app over real repositories on a real (migrated, emptied) database and the shipped policies. */
export async function buildHarness({
  database,
  ca,
  clock = fixedClock('2026-03-01T12:00:00Z'),
  options = {},
  issuerPolicies = ['web-server'],
  policiesDir = SHIPPED_POLICIES,
  revocation = false,
  overrides = {},
}: HarnessOptions): Promise<Harness> {
  const logs = logSink();
  const { db } = database;
  const certificates = createCertificatesRepository({ db, clock });
  const deps: AppDeps = {
    clock,
    logger: logs.logger,
    ca,
    apiKeys: createApiKeysRepository({ db, clock }),
    idempotency: createIdempotencyRepository({ db, instances: database.database.instances, clock }),
    certificates,
    issuers: createIssuersRepository({ db, clock }),
    policies: await createPolicyRegistry({ dir: policiesDir }),
    audit: createAuditRepository({ db, clock, nodeId: 'test-node' }),
    readiness: readyProbe,
    ...(revocation ? { revocation: realRevocation(database, certificates, clock) } : {}),
    options,
    ...overrides,
  };
  const app = createApp(deps);
  const makeKey = async (roles: Role[], policies: string[] = [], expiresAt: Date | null = null) =>
    (await createApiKey(deps.apiKeys, { roles, policies, expiresAt, createdBy: 'test' })).key;
  const keys = {
    issuer: await makeKey(['issuer'], issuerPolicies),
    revoker: await makeKey(['revoker']),
    auditor: await makeKey(['auditor']),
    admin: await makeKey(['admin']),
  };
  return { app, deps, clock, keys, logs, call: caller(app), makeKey };
}

function realRevocation(
  database: TestDatabase,
  certificates: ReturnType<typeof createCertificatesRepository>,
  clock: TestClock,
): NonNullable<AppDeps['revocation']> {
  const replayGuard = createReplayGuardRepository({ db: database.db, clock });
  const revoke = createRevokeUseCase({ certificates, clock });
  const crls = createCrlsRepository({ db: database.db });
  const issuers = createIssuersRepository({ db: database.db, clock });
  return {
    revoke,
    revokeByKey: createRevokeByKey({
      certificates,
      consumeJti: (entry) => replayGuard.claim(entry),
      revocations: revoke,
      clock,
    }),
    crls,
    crlImport: createImportFor({ config: { partitions: {} }, clock, issuers, crls }),
    ocsp: malformedOcsp,
  };
}

/** `app.request`, then the contract check of the response against openapi.yaml. */
export function caller(app: Hono<ApiEnv>): Harness['call'] {
  return async function call(method: string, path: string, options: CallOptions = {}) {
    const headers: Record<string, string> = { ...options.headers };
    if (options.key) headers.authorization = `Bearer ${options.key}`;
    let body: string | Uint8Array | undefined = options.raw;
    if (options.body !== undefined) {
      body = JSON.stringify(options.body);
      headers['content-type'] ??= 'application/json';
    }
    const env = options.address ? { incoming: { socket: { remoteAddress: options.address } } } : undefined;
    const response = await app.request(
      path,
      { method, headers, ...(body !== undefined ? { body } : {}) },
      env,
    );
    const parsed = await contract.check(method, path, response);
    return { response, body: parsed };
  };
}
