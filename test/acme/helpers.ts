/**
 * The ACME server on the real service for the protocol tests: a data folder from `signet init`,
 * the partition process, PGlite, the shipped policies, the real CA and revocation, and the app
 * answering through `app.request`. Validation is real (http-01 over TCP to a responder of the
 * test on 127.0.0.1, tls-alpn-01 likewise) except name resolution: every name resolves to
 * 127.0.0.1 and TXT records come from a map the test fills (the configurable resolver itself is
 * tested against pebble-challtestsrv in validation.test.ts).
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Hono } from 'hono';
import type { AlternateChain } from '../../src/acme/chains.ts';
import { createPartitionEabSealer } from '../../src/acme/eab.ts';
import { type AcmeServer, createAcmeServer } from '../../src/acme/server.ts';
import type { AcmeDirectoryConfig, AcmeServerOptions } from '../../src/acme/types.ts';
import type { CaaRecord } from '../../src/acme/validation/caa.ts';
import { createValidationNetwork, type ValidationNetwork } from '../../src/acme/validation/network.ts';
import { createChallengeValidator } from '../../src/acme/validation/validator.ts';
import { createApp } from '../../src/api/app.ts';
import type { AppDeps } from '../../src/api/deps.ts';
import type { ApiEnv } from '../../src/api/env.ts';
import { createLogger } from '../../src/api/logger.ts';
import { createMemoryAttemptLimiter } from '../../src/api/middleware/rate-limit.ts';
import { initDataDir } from '../../src/cli/init.ts';
import { openRuntime, type Runtime } from '../../src/cli/runtime.ts';
import { DEFAULT_ACME_DENY_NETWORKS } from '../../src/config/config.ts';
import { createAcmeRepository } from '../../src/db/acme.repository.ts';
import type { Clock } from '../../src/lib/clock.ts';
import type { Fetch } from '../helpers/acme-client.ts';
import {
  startHttp01Responder,
  startTlsAlpnResponder,
  type TlsAlpnResponder,
} from '../helpers/acme-responders.ts';

export const PUBLIC_URL = 'http://127.0.0.1:8080';
const REPO = path.resolve(import.meta.dirname, '../..');
export const DIRECTORY_URL = `${PUBLIC_URL}/acme/dev/directory`;

/** Every name resolves to 127.0.0.1 unless listed; TXT records from `txt`. */
export function testNetwork(
  overrides: {
    addresses?: Map<string, string[]>;
    txt?: Map<string, string[]>;
    caa?: Map<string, CaaRecord[]>;
  } = {},
) {
  const real = createValidationNetwork({ denyNetworks: DEFAULT_ACME_DENY_NETWORKS });
  const addresses = overrides.addresses ?? new Map<string, string[]>();
  const txt = overrides.txt ?? new Map<string, string[]>();
  const caa = overrides.caa ?? new Map<string, CaaRecord[]>();
  const network: ValidationNetwork = {
    addresses: async (name) => addresses.get(name) ?? ['127.0.0.1'],
    txt: async (name) => txt.get(name) ?? [],
    caa: async (name) => caa.get(name) ?? [],
    denied: (address) => real.denied(address),
  };
  return { network, addresses, txt, caa };
}

export interface AcmeService {
  dir: string;
  runtime: Runtime;
  app: Hono<ApiEnv>;
  acme: AcmeServer;
  rootPem: string;
  /** The admin API key `signet init` wrote. */
  adminKey: string;
  http01: Awaited<ReturnType<typeof startHttp01Responder>>;
  tlsAlpn: TlsAlpnResponder;
  txt: Map<string, string[]>;
  /** CAA records by exact name. */
  caa: Map<string, CaaRecord[]>;
  addresses: Map<string, string[]>;
  /** fetch through app.request, from the given client address. */
  fetchFrom(address: string): Fetch;
  /** Another ACME server (another node) over the same database. */
  otherNode(overrides?: Partial<AcmeServerOptions>): { acme: AcmeServer; app: Hono<ApiEnv> };
  close(): Promise<void>;
}

export interface AcmeServiceOptions {
  clock?: Clock;
  /** Where the http-01 and tls-alpn-01 responders listen (default 127.0.0.1; '::' for every address). */
  respondOn?: string;
  /** Policy files (name -> YAML) written to the data folder before the service starts. */
  policies?: Record<string, string>;
  /** The directories served, instead of signet.yaml's (`dev` on web-server). */
  directories?: AcmeDirectoryConfig[];
  ordersPageSize?: number;
  /** Alternate chains, read at each request: a test may fill the array once the service runs. */
  alternateChains?: AlternateChain[];
  /** acme.caaIdentities (default none: CAA unchecked). */
  caaIdentities?: string[];
}

/** web-server with a 7-day validity and its own description: a second policy to offer as a profile. */
export function shortLivedPolicy(): string {
  return readFileSync(path.join(REPO, 'policies', 'web-server.yaml'), 'utf8')
    .replace(/^description: .*$/m, 'description: Seven-day TLS server certificates.')
    .replace(/default: P90D/, 'default: P7D')
    .replace(/max: P397D/, 'max: P7D');
}

export async function startAcmeService(options: AcmeServiceOptions = {}): Promise<AcmeService> {
  const dir = mkdtempSync(path.join(tmpdir(), 'signet-acme-'));
  const dataDir = path.join(dir, 'data');
  const init = await initDataDir({ dataDir, port: 0, publicUrl: PUBLIC_URL, log: () => {} });
  for (const [name, yaml] of Object.entries(options.policies ?? {})) {
    writeFileSync(path.join(dataDir, 'policies', `${name}.yaml`), yaml);
  }
  const logger = createLogger({ level: 'silent' });
  const runtime = await openRuntime({ dataDir, logger, revocation: true });
  const http01 = await startHttp01Responder(options.respondOn);
  const tlsAlpn = await startTlsAlpnResponder(options.respondOn);
  const { network, txt, addresses, caa } = testNetwork();

  const build = (overrides: Partial<AcmeServerOptions> = {}) => {
    const clock = overrides.clock ?? options.clock ?? runtime.clock;
    const attempts = createMemoryAttemptLimiter({ perMinute: 60, clock });
    const acme = createAcmeServer({
      clock,
      logger,
      publicUrl: PUBLIC_URL,
      directories: options.directories ?? runtime.config.acme.directories,
      repository: createAcmeRepository({ db: runtime.database.db, clock }),
      ca: runtime.ca,
      policies: runtime.policies,
      certificates: runtime.repositories.certificates,
      revoker: runtime.revocation!.revoke,
      audit: runtime.repositories.audit,
      eabSealer: createPartitionEabSealer({
        partition: runtime.partitions.get('issuing')!,
        keyUri: runtime.config.acme.eabKey,
      }),
      validator: createChallengeValidator({
        network,
        httpPort: http01.port,
        tlsPort: tlsAlpn.port,
        timeoutMs: 5000,
        caaIdentities: options.caaIdentities ?? [],
      }),
      limits: {
        newAccounts: createMemoryAttemptLimiter({ perMinute: 5, clock }),
        newOrders: createMemoryAttemptLimiter({ perMinute: 1000, clock }),
        failedAuth: attempts,
      },
      nonceLifetimeMs: 10 * 60_000,
      orderLifetimeMs: 7 * 86_400_000,
      authorizationLifetimeMs: 30 * 86_400_000,
      validationConcurrency: 4,
      validationTimeoutMs: 5000,
      ...(options.ordersPageSize ? { ordersPageSize: options.ordersPageSize } : {}),
      ...(options.alternateChains ? { alternateChains: options.alternateChains } : {}),
      ...overrides,
    });
    const deps: AppDeps = {
      clock,
      logger,
      ca: runtime.ca,
      apiKeys: runtime.repositories.apiKeys,
      idempotency: runtime.repositories.idempotency,
      certificates: runtime.repositories.certificates,
      issuers: runtime.repositories.issuers,
      policies: runtime.policies,
      audit: runtime.repositories.audit,
      readiness: { database: async () => {}, partition: async () => ({ state: 'unsealed' }) },
      revocation: runtime.revocation!,
      attempts,
      acme,
      options: { bodyLimit: 16 * 1024 },
    };
    return { acme, app: createApp(deps) };
  };
  const main = build();
  const extra: AcmeServer[] = [];
  return {
    dir,
    runtime,
    app: main.app,
    acme: main.acme,
    rootPem: readFileSync(init.rootCertificateFile, 'utf8'),
    adminKey: readFileSync(path.join(dataDir, 'secrets', 'admin-api-key'), 'utf8').trim(),
    http01,
    tlsAlpn,
    txt,
    caa,
    addresses,
    fetchFrom: (address) => async (url, init) =>
      main.app.request(url, init, { incoming: { socket: { remoteAddress: address } } }),
    otherNode(overrides) {
      const node = build(overrides);
      extra.push(node.acme);
      return node;
    },
    async close() {
      for (const acme of [main.acme, ...extra]) await acme.close();
      await http01.close();
      await tlsAlpn.close();
      await runtime.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * A cross-signed certificate of `issuerDer` (same subject and key) under a new self-signed root
 * of another CA: answers that root and the cross certificate, PEM.
 */
export async function crossSign(issuerDer: Uint8Array): Promise<{ rootPem: string; crossPem: string }> {
  const x509 = await import('@peculiar/x509');
  const { webcrypto } = await import('node:crypto');
  x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);
  const issuer = new x509.X509Certificate(issuerDer);
  const algorithm = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
  const keys = (await webcrypto.subtle.generateKey(algorithm, false, [
    'sign',
    'verify',
  ])) as import('node:crypto').webcrypto.CryptoKeyPair;
  const now = Date.now();
  const root = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: '0a01',
    name: 'CN=Other Root CA, O=Example Org',
    notBefore: new Date(now - 3_600_000),
    notAfter: new Date(now + 365 * 86_400_000),
    keys,
    signingAlgorithm: algorithm,
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  const cross = await x509.X509CertificateGenerator.create({
    serialNumber: '0a02',
    subject: issuer.subjectName,
    issuer: root.subjectName,
    notBefore: new Date(now - 3_600_000),
    notAfter: new Date(now + 300 * 86_400_000),
    publicKey: issuer.publicKey,
    signingKey: keys.privateKey,
    signingAlgorithm: algorithm,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      // The issuer's own key identifier, which its leaves name in their AKI (RFC 5280 §4.2.1.1).
      issuer.getExtension('2.5.29.14')!,
      await x509.AuthorityKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  const pem = (c: { toString(format: 'pem'): string }) => `${c.toString('pem')}\n`;
  return { rootPem: pem(root), crossPem: pem(cross) };
}
