import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import type { Logger } from 'pino';
import { createCertificateAuthority } from '../ca/ca.ts';
import { type IssuerSet, loadIssuers } from '../ca/issuers.ts';
import { createRenewal, type Renewal } from '../ca/renew.usecase.ts';
import type { CertificateAuthority } from '../ca/types.ts';
import { loadConfig, resolveIn, type SignetConfig } from '../config/config.ts';
import { createApiKeysRepository } from '../db/api-keys.repository.ts';
import { createAuditRepository } from '../db/audit.repository.ts';
import { createCertificatesRepository } from '../db/certificates.repository.ts';
import { createCrlsRepository } from '../db/crls.repository.ts';
import { type Database, openDatabase } from '../db/database.ts';
import { createIdempotencyRepository } from '../db/idempotency.repository.ts';
import { createIssuersRepository } from '../db/issuers.repository.ts';
import { createOwedWorkRepository } from '../db/owed-work.repository.ts';
import { createReplayGuardRepository } from '../db/replay-guard.repository.ts';
import { RemotePartition } from '../hsm/client.ts';
import { type PartitionProcess, startPartitionProcess } from '../hsm/process.ts';
import type { KeyManager } from '../hsm/types.ts';
import { type Clock, systemClock } from '../lib/clock.ts';
import { parseDuration } from '../lib/duration.ts';
import { createPolicyRegistry, type PolicyRegistry } from '../policy/registry.ts';
import { createKeyBlocklist } from '../x509/blocklist.ts';
import { decodePemBlocks } from '../x509/pem.ts';
import { type RevocationRuntime, startRevocation } from './revocation.ts';

/**
 * The composition root: everything `signet serve` (and the local CLI commands) run on, opened in
 * order and closed in reverse. Fails at start, with a message naming what is wrong, rather than
 * serving half a CA.
 */
export interface Runtime {
  dataDir: string;
  config: SignetConfig;
  clock: Clock;
  database: Database;
  repositories: {
    certificates: ReturnType<typeof createCertificatesRepository>;
    issuers: ReturnType<typeof createIssuersRepository>;
    audit: ReturnType<typeof createAuditRepository>;
    apiKeys: ReturnType<typeof createApiKeysRepository>;
    idempotency: ReturnType<typeof createIdempotencyRepository>;
    crls: ReturnType<typeof createCrlsRepository>;
    owedWork: ReturnType<typeof createOwedWorkRepository>;
    replayGuard: ReturnType<typeof createReplayGuardRepository>;
  };
  partitions: Map<string, RemotePartition>;
  policies: PolicyRegistry;
  issuers: IssuerSet;
  ca: CertificateAuthority;
  /** Renewal by proof of the certificate's key (issue #32). */
  renewal: Renewal;
  trustedRoots: Uint8Array[];
  /** Present when opened with `revocation: true` (signet serve). */
  revocation?: RevocationRuntime;
  close(): Promise<void>;
}

export interface OpenRuntimeOptions {
  dataDir: string;
  logger: Logger;
  clock?: Clock;
  /** DATABASE_URL, when set, selects PostgreSQL over the embedded PGlite. */
  databaseUrl?: string;
  /** Start the CRL scheduler and OCSP responder (the server); local CLI commands do not. */
  revocation?: boolean;
  /** Latency observers (the server's Prometheus histograms). */
  observe?: RuntimeObservers;
}

export interface RuntimeObservers {
  partitionSign?(purpose: string, seconds: number): void;
  database?(operation: string, seconds: number): void;
}

/** Times every call of `object[method]` (a promise-returning method) into `record`. */
function timeMethod<T extends object>(
  object: T,
  method: keyof T & string,
  record: (seconds: number, args: unknown[]) => void,
): void {
  const original = object[method] as unknown as (...args: unknown[]) => Promise<unknown>;
  (object as Record<string, unknown>)[method] = async (...args: unknown[]) => {
    const started = performance.now();
    try {
      return await original.apply(object, args);
    } finally {
      record((performance.now() - started) / 1000, args);
    }
  };
}

export async function openRuntime(options: OpenRuntimeOptions): Promise<Runtime> {
  const { dataDir, logger } = options;
  const clock = options.clock ?? systemClock;
  const config = loadConfig(dataDir);
  const closers: (() => Promise<void>)[] = [];
  const close = async () => {
    for (const closer of closers.reverse()) {
      try {
        await closer();
      } catch (error) {
        logger.warn({ err: error }, 'error while shutting down');
      }
    }
  };

  try {
    const url = options.databaseUrl ?? config.database.url;
    const database = await openDatabase(url ? { url } : { dataDir });
    closers.push(() => database.close());
    logger.info({ database: database.description }, 'database open');

    const repositories = {
      certificates: createCertificatesRepository({ db: database.db, clock }),
      issuers: createIssuersRepository({ db: database.db, clock }),
      audit: createAuditRepository({ db: database.db, clock, nodeId: nodeId() }),
      apiKeys: createApiKeysRepository({ db: database.db, clock }),
      idempotency: createIdempotencyRepository({ db: database.db, instances: database.instances, clock }),
      crls: createCrlsRepository({ db: database.db }),
      owedWork: createOwedWorkRepository({ db: database.db, clock }),
      replayGuard: createReplayGuardRepository({ db: database.db, clock }),
    };

    const observe = options.observe;
    if (observe?.database) {
      const db = observe.database;
      for (const method of [
        'reservePendingMany',
        'markIssuedManyWith',
        'findBySerial',
        'findStatus',
        'revoke',
      ] as const) {
        if (typeof repositories.certificates[method] === 'function') {
          timeMethod(repositories.certificates, method, (seconds) => db(`certificates.${method}`, seconds));
        }
      }
    }

    const partitions = new Map<string, RemotePartition>();
    for (const [name, partition] of Object.entries(config.partitions)) {
      const socketPath = resolveIn(dataDir, partition.socket);
      if (partition.spawn) {
        const child: PartitionProcess = await startPartitionProcess({
          dir: resolveIn(dataDir, partition.dir),
          socketPath,
          name,
          args: [
            ...p11Arguments(dataDir, partition),
            ...(partition.tokenPinFile !== undefined
              ? ['--token-pin-file', resolveIn(dataDir, partition.tokenPinFile)]
              : []),
          ],
          onLog: (line) => logger.info({ partition: name }, line),
        });
        closers.push(() => child.stop());
        logger.info({ partition: name, socket: socketPath }, 'partition process started');
      }
      const pin = readFileSync(resolveIn(dataDir, partition.pinFile), 'utf8').replace(/\r?\n$/, '');
      const secret = partition.unsealSecretFile
        ? readFileSync(resolveIn(dataDir, partition.unsealSecretFile))
        : undefined;
      const client = await RemotePartition.connect({
        socketPath,
        // Sessions do not survive a reconnect: unseal if the partition restarted sealed, then log in.
        onConnect: async (p) => {
          const status = await p.status();
          if (status.state === 'sealed' && secret) await p.unseal({ secret: new Uint8Array(secret) });
          await p.login({ user: partition.user, pin });
        },
      });
      closers.push(() => client.close());
      if (observe?.partitionSign) {
        const record = observe.partitionSign;
        const purposeOf = (args: unknown[]) =>
          String((args[0] as { purpose?: string } | undefined)?.purpose ?? 'other');
        timeMethod(client, 'sign', (seconds, args) => record(purposeOf(args), seconds));
        timeMethod(client, 'signStream', (seconds, args) => record(purposeOf(args), seconds));
      }
      partitions.set(name, client);
    }

    const policies = await createPolicyRegistry({ dir: resolveIn(dataDir, config.policies.dir) });
    const trustedRoots = config.trustedRoots.flatMap((file) =>
      decodePemBlocks(readFileSync(resolveIn(dataDir, file), 'utf8'))
        .filter((block) => block.label === 'CERTIFICATE')
        .map((block) => block.der),
    );
    const issuers = await loadIssuers({
      issuers: repositories.issuers,
      partitions: partitions as ReadonlyMap<string, KeyManager>,
      trustedRoots,
      clock,
    });
    logger.info({ issuers: issuers.list().map((i) => i.id) }, 'issuers loaded');

    const blocklist = config.issuance.keyBlocklist
      ? createKeyBlocklist(resolveIn(dataDir, config.issuance.keyBlocklist))
      : undefined;
    const ca = createCertificateAuthority({
      clock,
      policies,
      issuers,
      certificates: repositories.certificates,
      audit: repositories.audit,
      idempotency: repositories.idempotency,
      maxCsrBytes: config.issuance.maxCsrBytes,
      ...(blocklist ? { blocklist } : {}),
      onInternalError: (message, error) => logger.error({ err: error }, message),
    });

    const grace = parseDuration(config.certificates.renewGrace);
    const renewal = createRenewal({
      ca,
      certificates: repositories.certificates,
      issuers,
      consumeJti: (entry) => repositories.replayGuard.claim(entry),
      clock,
      graceMs: grace.ok ? grace.seconds * 1000 : 0,
    });

    let revocation: RevocationRuntime | undefined;
    if (options.revocation) {
      revocation = await startRevocation({
        config,
        clock,
        logger,
        database,
        issuers,
        issuerRecords: repositories.issuers,
        certificates: repositories.certificates,
        crls: repositories.crls,
        owedWork: repositories.owedWork,
        replayGuard: repositories.replayGuard,
        nodeId: nodeId(),
      });
      closers.push(() => revocation!.stop());
    }

    return {
      ...(revocation ? { revocation } : {}),
      dataDir,
      config,
      clock,
      database,
      repositories,
      partitions,
      policies,
      issuers,
      ca,
      renewal,
      trustedRoots,
      close,
    };
  } catch (error) {
    await close();
    throw error;
  }
}

/** Each CA node writes its own audit hash chain (DESIGN.md "Storage"). */
export function nodeId(): string {
  return process.env.SIGNET_NODE_ID ?? hostname();
}

/** `signet hsm serve` arguments for a partition's PKCS#11 socket (partitions.<name>.p11Socket). */
function p11Arguments(dataDir: string, partition: SignetConfig['partitions'][string]): string[] {
  if (partition.p11Socket === undefined) return [];
  return [
    '--p11-socket',
    resolveIn(dataDir, partition.p11Socket),
    ...(partition.p11SocketGroup !== undefined ? ['--p11-socket-group', partition.p11SocketGroup] : []),
    ...(partition.p11User !== undefined ? ['--p11-user', partition.p11User] : []),
  ];
}
