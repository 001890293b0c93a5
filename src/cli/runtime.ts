import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import type { Logger } from 'pino';
import { createCertificateAuthority } from '../ca/ca.ts';
import { type IssuerSet, loadIssuers, loadStoppedIssuers } from '../ca/issuers.ts';
import { createRenewal, type Renewal } from '../ca/renew.usecase.ts';
import type { CertificateAuthority } from '../ca/types.ts';
import { loadConfig, resolveIn, type SignetConfig } from '../config/config.ts';
import { type CachedApiKeys, createCachedApiKeysRepository } from '../db/api-keys.cache.ts';
import { createApiKeysRepository } from '../db/api-keys.repository.ts';
import { createAuditRepository } from '../db/audit.repository.ts';
import { createCertificatesRepository } from '../db/certificates.repository.ts';
import { createCrlsRepository } from '../db/crls.repository.ts';
import { type Database, openDatabase } from '../db/database.ts';
import { createIdempotencyRepository } from '../db/idempotency.repository.ts';
import { createIssuanceUnitOfWork } from '../db/issuance.unit-of-work.ts';
import { createIssuersRepository } from '../db/issuers.repository.ts';
import { createOcspRespondersRepository } from '../db/ocsp-responders.repository.ts';
import { createOcspResponsesRepository } from '../db/ocsp-responses.repository.ts';
import { createOwedWorkRepository } from '../db/owed-work.repository.ts';
import { createRateLimitsRepository } from '../db/rate-limits.repository.ts';
import { createReplayGuardRepository } from '../db/replay-guard.repository.ts';
import type { RemotePartition, TlsEndpoint } from '../hsm/client.ts';
import { type ClusterMemberOptions, type MemberStateEvent, PartitionCluster } from '../hsm/cluster.ts';
import { parseLinkUrl } from '../hsm/link.ts';
import { isHsmError, type KeyManager } from '../hsm/types.ts';
import { type Clock, systemClock } from '../lib/clock.ts';
import { parseDuration } from '../lib/duration.ts';
import { createPolicyRegistry, type PolicyRegistry } from '../policy/registry.ts';
import { createKeyBlocklist } from '../x509/blocklist.ts';
import { decodePemBlocks } from '../x509/pem.ts';
import { type SpawnedMember, startSpawnedMember } from './partition-members.ts';
import { applyCrlShards, type RevocationRuntime, startRevocation } from './revocation.ts';

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
    /** Held in memory, dropped on revocation on every node (db/api-keys.cache.ts). */
    apiKeys: CachedApiKeys;
    idempotency: ReturnType<typeof createIdempotencyRepository>;
    crls: ReturnType<typeof createCrlsRepository>;
    owedWork: ReturnType<typeof createOwedWorkRepository>;
    replayGuard: ReturnType<typeof createReplayGuardRepository>;
    ocspResponses: ReturnType<typeof createOcspResponsesRepository>;
    ocspResponders: ReturnType<typeof createOcspRespondersRepository>;
  };
  /** Each partition of signet.yaml as the client of its members (one or more). */
  partitions: Map<string, PartitionCluster>;
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
  /**
   * Run the periodic background work (CRL scheduler's rescans and outbox polls); default true.
   * Of a node's HTTP workers only one does, the others leave owed work to it (cli/workers.ts).
   */
  background?: boolean;
  /** Tells the node's other HTTP workers of a revoked API key (db/api-keys.cache.ts `announce`). */
  announceApiKeyRevocation?: (id: string) => Promise<void>;
  /** Latency observers (the server's Prometheus histograms). */
  observe?: RuntimeObservers;
  /**
   * Start the partition members signet.yaml marks `spawn: true` (default). An HTTP worker of
   * `serve --workers N` does not: the node's primary process started them (cli/workers.ts).
   */
  spawnPartitions?: boolean;
  /**
   * A spawned partition that is sealed, with no unsealSecretFile, is waited for until custodians
   * unseal it (signet serve); without this the runtime fails at once with hsm.sealed (commands).
   */
  waitForCustodians?: boolean;
}

export interface RuntimeObservers {
  partitionSign?(purpose: string, seconds: number): void;
  database?(operation: string, seconds: number): void;
  /** A partition member changed state (the server counts members that stop being usable). */
  memberState?(event: MemberStateEvent & { partition: string }): void;
}

// biome-ignore lint/complexity/noExcessiveLinesPerFunction: the wiring: open each part in dependency order, registering its closer
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
    // The partition members this node spawns start while the database opens (each takes about
    // half of a restart: a Node process unsealing its folder; PGlite instantiating and recovering),
    // but only once the database's lock file is held: a second `signet start` on the same folder
    // is refused before it touches the partition.
    const spawning = new Map<string, Promise<SpawnedMember>>();
    const spawnMembers = () => {
      if (options.spawnPartitions === false) return;
      for (const [name, partition] of Object.entries(config.partitions)) {
        const index = partition.members.findIndex((m) => m.spawn);
        if (index < 0) continue;
        const member = partition.members[index]!;
        const starting = startSpawnedMember({
          dataDir,
          name,
          partition,
          index,
          memberName: memberEndpoint(dataDir, member).name!,
          logger,
          ...(partition.unsealSecretFile ? { selfUnseals: true } : {}),
        });
        spawning.set(name, starting);
        closers.push(async () => (await starting.catch(() => undefined))?.stop());
      }
    };
    const url = options.databaseUrl ?? config.database.url;
    const database = await openDatabase(url ? { url } : { dataDir }, { whileOpening: spawnMembers });
    closers.push(() => database.close());
    logger.info({ database: database.description }, 'database open');

    const repositories = {
      certificates: createCertificatesRepository({
        db: database.db,
        clock,
        ...(options.observe?.database ? { observe: options.observe.database } : {}),
      }),
      issuers: createIssuersRepository({ db: database.db, clock }),
      audit: createAuditRepository({ db: database.db, clock, nodeId: nodeId() }),
      apiKeys: await createCachedApiKeysRepository({
        repository: createApiKeysRepository({ db: database.db, clock }),
        database,
        clock,
        ...(options.announceApiKeyRevocation ? { announce: options.announceApiKeyRevocation } : {}),
      }),
      idempotency: createIdempotencyRepository({ db: database.db, instances: database.instances, clock }),
      crls: createCrlsRepository({ db: database.db }),
      owedWork: createOwedWorkRepository({ db: database.db, clock }),
      replayGuard: createReplayGuardRepository({ db: database.db, clock }),
      ocspResponses: createOcspResponsesRepository({ db: database.db }),
      ocspResponders: createOcspRespondersRepository({ db: database.db, clock }),
    };

    closers.push(() => repositories.apiKeys.close());

    const partitions = new Map<string, PartitionCluster>();
    for (const [name, partition] of Object.entries(config.partitions)) {
      const pin = readFileSync(resolveIn(dataDir, partition.pinFile), 'utf8').replace(/\r?\n$/, '');
      const secret = partition.unsealSecretFile
        ? readFileSync(resolveIn(dataDir, partition.unsealSecretFile))
        : undefined;
      const onSigned = options.observe?.partitionSign;
      // Each member's client reports how long its signatures take (an explicit hook, src/hsm/client.ts).
      const members = partition.members.map((member) => ({
        ...memberEndpoint(dataDir, member),
        ...(onSigned ? { onSigned } : {}),
      }));
      // Sessions do not survive a reconnect: unseal if the member restarted sealed, then log in.
      const onConnect = async (p: RemotePartition) => {
        const status = await p.status();
        if (status.state === 'sealed' && secret) {
          try {
            await p.unseal({ secret: new Uint8Array(secret) });
          } catch (error) {
            // Another client of the member (an HTTP worker of this node) unsealed it first.
            const raced = isHsmError(error) && error.rv === 'CKR_OPERATION_NOT_PERMITTED';
            if (!raced || (await p.status()).state !== 'unsealed') throw error;
          }
        }
        await p.login({ user: partition.user, pin });
      };
      let cluster: PartitionCluster | undefined;
      const spawned = partition.members.findIndex((m) => m.spawn);
      const spawnedSocket =
        spawned >= 0 ? resolveIn(dataDir, partition.members[spawned]!.socket!) : undefined;
      const starting = spawning.get(name);
      if (starting) {
        const supervisor = await starting;
        supervisor.events = {
          onDied: (memberName, how) => cluster?.memberDown(memberName, `process died (${how})`),
          onRestarted: () => void cluster?.checkAll(),
        };
      }
      const clusterOptions = {
        name,
        members,
        onConnect,
        onMemberState: ({ member, state, previous, reason }: MemberStateEvent) => {
          const fields = { partition: name, member, state, previous, ...(reason ? { reason } : {}) };
          options.observe?.memberState?.({ partition: name, member, state, previous });
          if (state === 'up') logger.info(fields, 'partition member usable');
          else logger.warn(fields, `partition member ${state}`);
        },
      };
      for (let waited = false; ; ) {
        try {
          cluster = await PartitionCluster.connect(clusterOptions);
          break;
        } catch (error) {
          // A partition this node starts and cannot unseal itself waits for its custodians: it
          // lives only as long as this process, so exiting would never let them unseal it.
          if (
            !options.waitForCustodians ||
            spawned < 0 ||
            secret ||
            !isHsmError(error) ||
            error.rv !== 'CKR_TOKEN_SEALED'
          )
            throw error;
          if (!waited) {
            logger.warn(
              { partition: name, socket: spawnedSocket },
              `partition ${name} is sealed: waiting for custodians (signet hsm unseal --socket ${spawnedSocket})`,
            );
            waited = true;
          }
          await new Promise((resolve) => setTimeout(resolve, 1000));
        }
      }
      closers.push(() => cluster!.close());
      partitions.set(name, cluster);
    }

    const policies = await createPolicyRegistry({ dir: resolveIn(dataDir, config.policies.dir) });
    const trustedRoots = config.trustedRoots.flatMap((file) =>
      decodePemBlocks(readFileSync(resolveIn(dataDir, file), 'utf8'))
        .filter((block) => block.label === 'CERTIFICATE')
        .map((block) => block.der),
    );
    await applyCrlShards(repositories.issuers, config.crl.shards);
    const issuers = await loadIssuers({
      issuers: repositories.issuers,
      partitions: partitions as ReadonlyMap<string, KeyManager>,
      trustedRoots,
      clock,
      ...(config.crl.deltaInterval ? { deltaCrls: true } : {}),
    });
    logger.info({ issuers: issuers.list().map((i) => i.id) }, 'issuers loaded');
    // A member is used only while it holds every key this node signs with (a clone may predate one).
    for (const cluster of partitions.values()) {
      const keys = issuers
        .list()
        .filter((issuer) => issuer.keyManager === cluster)
        .map((issuer) => issuer.keys.certificate.keyRef);
      cluster.requireKeys(keys);
    }

    const blocklist = config.issuance.keyBlocklist
      ? createKeyBlocklist(resolveIn(dataDir, config.issuance.keyBlocklist))
      : undefined;
    const ca = createCertificateAuthority({
      clock,
      policies,
      issuers,
      certificates: repositories.certificates,
      audit: repositories.audit,
      store: createIssuanceUnitOfWork({
        db: database.db,
        clock,
        audit: repositories.audit,
        idempotency: repositories.idempotency,
        ...(options.observe?.database ? { observe: options.observe.database } : {}),
      }),
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
      const stoppedIssuers = await loadStoppedIssuers(
        {
          issuers: repositories.issuers,
          partitions: partitions as ReadonlyMap<string, KeyManager>,
          trustedRoots,
          clock,
        },
        (id, error) =>
          logger.warn({ issuer: id, err: error }, 'issuer that stopped issuing: no CRLs signed here'),
      );
      revocation = await startRevocation({
        config,
        clock,
        logger,
        database,
        issuers,
        stoppedIssuers,
        issuerRecords: repositories.issuers,
        certificates: repositories.certificates,
        crls: repositories.crls,
        owedWork: repositories.owedWork,
        replayGuard: repositories.replayGuard,
        ocspResponseStore: repositories.ocspResponses,
        ocspResponders: repositories.ocspResponders,
        ...(database.dialect === 'postgres' ? { takeToken: sharedOcspToken(database) } : {}),
        nodeId: nodeId(),
        background: options.background !== false,
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

/** How the CA reaches one member: over mutual TLS when it has a url, else its Unix socket. */
function memberEndpoint(
  dataDir: string,
  member: SignetConfig['partitions'][string]['members'][number],
): ClusterMemberOptions {
  if (member.url !== undefined) {
    const tls: TlsEndpoint = {
      ...parseLinkUrl(member.url),
      cert: readFileSync(resolveIn(dataDir, member.cert!)),
      key: readFileSync(resolveIn(dataDir, member.key!)),
      ca: readFileSync(resolveIn(dataDir, member.ca!)),
    };
    return { name: member.url, tls };
  }
  const socketPath = resolveIn(dataDir, member.socket!);
  return { name: socketPath, socketPath };
}

/** ocsp.nonceRateLimit's bucket per client address in PostgreSQL, shared by workers and nodes. */
function sharedOcspToken(database: Database) {
  const buckets = createRateLimitsRepository({ db: database.db });
  return (client: string, perMinute: number) =>
    buckets.take({ scope: 'ocsp-nonce', key: client, want: 1, perMinute });
}
