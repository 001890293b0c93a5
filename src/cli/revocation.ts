import type { Logger } from 'pino';
import type { IssuerSet, LoadedIssuer } from '../ca/issuers.ts';
import type { SignetConfig } from '../config/config.ts';
import type { CertificatesRepository } from '../db/certificates.repository.ts';
import type { CrlsRepository } from '../db/crls.repository.ts';
import type { Database } from '../db/database.ts';
import type { IssuersRepository } from '../db/issuers.repository.ts';
import type { OcspRespondersRepository } from '../db/ocsp-responders.repository.ts';
import { OCSP_INVALIDATION_CHANNEL, type OcspResponsesRepository } from '../db/ocsp-responses.repository.ts';
import { crlWorkKey, type OwedWorkRepository, parseCrlWorkKey } from '../db/owed-work.repository.ts';
import type { ReplayGuardRepository } from '../db/replay-guard.repository.ts';
import type { Clock } from '../lib/clock.ts';
import { parseDuration } from '../lib/duration.ts';
import { type CrlImport, createCrlImport, crlsSignedOnline } from '../revocation/crl-import.ts';
import { crlShardsFor, lastExpiryOf } from '../revocation/crl-publisher.ts';
import {
  type CrlIssuer,
  type CrlScheduler,
  type CrlStore,
  createCrlScheduler,
  type OwedCrls,
} from '../revocation/crl-scheduler.ts';
import { readIssuerFacts } from '../revocation/issuer.ts';
import {
  createOcspMaintenance,
  type OcspMaintenance,
  type OwedOcsp,
} from '../revocation/ocsp-maintenance.ts';
import type { PresignedStore } from '../revocation/ocsp-presigned.ts';
import {
  createSharedSigningBudget,
  createSigningBudget,
  type TakeToken,
} from '../revocation/ocsp-rate-limit.ts';
import { certIdFor } from '../revocation/ocsp-request.ts';
import { createOcspResponder, type OcspResponder } from '../revocation/ocsp-responder.ts';
import { partitionSigner } from '../revocation/partition-signer.ts';
import { createRevokeUseCase, type RevokeResult, type RevokeUseCase } from '../revocation/revoke.usecase.ts';
import { createRevokeByKey, type RevokeByKey } from '../revocation/revoke-by-key.ts';
import { isSelfIssued } from '../x509/crl.ts';
import { createResponderDirectory, type ResponderDirectory } from './ocsp-responders.ts';

/**
 * Revocation as `signet serve` runs it: the revoke use case (which tells the CRL scheduler), the
 * CRL scheduler (CRLs signed through the partition with purpose `crl`, stored so every node
 * serves the same bytes, one writer per issuer through a PostgreSQL advisory lock, driven by the
 * CRLs that revocations owe in the owed_work outbox), revocation
 * by proof of key possession (jti replay guard in the database) and the OCSP responder (purpose
 * `ocsp`).
 */
export interface RevocationRuntime {
  revoke: RevokeUseCase;
  revokeByKey: RevokeByKey;
  crls: CrlStore & Pick<CrlsRepository, 'getLatest' | 'listLatestInfo'>;
  /** Publishing CRLs signed offline (POST /v1/issuers/{id}/crl, `signet crl import`). */
  crlImport: CrlImport;
  ocsp: OcspResponder;
  /** Re-signs what revocations owe and, with ocsp.preSign all, signs ahead (issue #27). */
  ocspMaintenance: OcspMaintenance;
  /** Each issuer's delegated responder (or the issuer itself), renewed before it expires. */
  ocspResponders: ResponderDirectory;
  scheduler: CrlScheduler;
  stop(): Promise<void>;
}

export interface RevocationRuntimeOptions {
  config: SignetConfig;
  clock: Clock;
  logger: Logger;
  database: Pick<Database, 'withAdvisoryLock' | 'listen'>;
  issuers: IssuerSet;
  /** Issuers that no longer issue (disabled, retired): their CRLs go on until their certificates expire. */
  stoppedIssuers?: LoadedIssuer[];
  /** Every issuer record, including those served read-only (offline roots). */
  issuerRecords: Pick<IssuersRepository, 'get'>;
  certificates: CertificatesRepository;
  crls: CrlsRepository;
  owedWork: OwedWorkRepository;
  replayGuard: ReplayGuardRepository;
  /** Pre-signed OCSP responses. */
  ocspResponseStore: OcspResponsesRepository;
  /** Delegated OCSP responders. */
  ocspResponders: OcspRespondersRepository;
  /**
   * On PostgreSQL: a token from the rate-limit buckets every worker and node share, so that
   * ocsp.nonceRateLimit holds per client address across them (issue #29); absent, in memory.
   */
  takeToken?: TakeToken;
  nodeId: string;
  /**
   * Start the CRL scheduler (default true). An HTTP worker that leaves background work to another
   * worker of its node does not: its revocations owe their CRLs durably (owed_work, same
   * transaction), which that worker's scheduler picks up at its next poll.
   */
  background?: boolean;
}

/** The owed_work outbox, kind `crl`, as the CRL scheduler reads it. */
export function owedCrls(owedWork: OwedWorkRepository): OwedCrls {
  return {
    async list() {
      return (await owedWork.list('crl')).flatMap((row) => {
        const scope = parseCrlWorkKey(row.key);
        return scope ? [{ ...scope, owedSince: row.createdAt }] : [];
      });
    },
    async claim(issuerId, shard) {
      const claim = await owedWork.claim('crl', crlWorkKey(issuerId, shard));
      return (
        claim && { owedSince: claim.createdAt, settle: (claimedAt) => owedWork.settle(claim, { claimedAt }) }
      );
    },
    async recordFailure(issuerId, shard, error) {
      const message = error instanceof Error ? error.message : String(error);
      await owedWork.recordFailure('crl', crlWorkKey(issuerId, shard), message);
    },
  };
}

/** The owed_work outbox, kind `ocsp` (key: the serial), as the OCSP maintenance reads it. */
export function owedOcsp(owedWork: OwedWorkRepository): OwedOcsp {
  return {
    list: async () => (await owedWork.list('ocsp')).map((row) => row.key),
    async claim(serial) {
      const claim = await owedWork.claim('ocsp', serial);
      return claim && { settle: (claimedAt: Date) => owedWork.settle(claim, { claimedAt }) };
    },
    async recordFailure(serial, error) {
      await owedWork.recordFailure('ocsp', serial, error instanceof Error ? error.message : String(error));
    },
  };
}

/** The ocsp_responses table as the pre-signed responses' store. */
export function presignedStore(responses: OcspResponsesRepository): PresignedStore {
  return {
    find: (certIdSha256) => responses.find(certIdSha256),
    listForSerial: (serial) => responses.listForSerial(serial),
    store: (response, basis) =>
      // Sources without statusChangedAt (none in the service) compare the status alone.
      responses.store(response, { status: basis.status, statusChangedAt: basis.statusChangedAt ?? null }),
  };
}

function durationMs(text: string): number {
  const result = parseDuration(text, { fractionalSeconds: true });
  if (!result.ok) throw new Error(`invalid duration ${text}: ${result.reason}`);
  return Math.round(result.seconds * 1000);
}

/**
 * Records signet.yaml's `crl.shards` on the issuers (default 1 for those it leaves out), so that
 * new certificates are spread over that many shards; certificates issued before keep their shard,
 * whose CRL is published for as long as they need it. An id that names no issuer fails the start.
 */
export async function applyCrlShards(
  issuers: Pick<IssuersRepository, 'list' | 'setCrlShards'>,
  shards: Readonly<Record<string, number>>,
): Promise<void> {
  const records = await issuers.list();
  const known = new Set(records.map((record) => record.id));
  const unknown = Object.keys(shards).filter((id) => !known.has(id));
  if (unknown.length > 0) {
    throw new Error(`signet.yaml crl.shards names issuers that do not exist: ${unknown.join(', ')}`);
  }
  for (const record of records) {
    if (isSelfIssued(record.certificateDer)) continue;
    const wanted = shards[record.id] ?? 1;
    if (record.crlShards !== wanted) await issuers.setCrlShards(record.id, wanted);
  }
}

/**
 * An issuer as the CRL scheduler sees it: its shards, each with how long it must be published
 * (the latest notAfter of the certificates it covers, not the issuer's own: issue #28), also once
 * the issuer stopped issuing.
 */
async function crlIssuer(
  issuer: LoadedIssuer,
  issuing: boolean,
  certificates: Pick<CertificatesRepository, 'listCrlShards'>,
): Promise<CrlIssuer> {
  const known = await certificates.listCrlShards(issuer.id);
  const shards = crlShardsFor(issuer.context.crlShards ?? 1, known, issuing);
  return {
    id: issuer.id,
    certificate: issuer.certificateDer,
    signer: partitionSigner(issuer.crypto, issuer.keys.crl, 'crl'),
    issuing,
    lastCertificateExpiry: lastExpiryOf(shards),
    shards,
    ...(issuer.context.crlUrl ? { crlUrl: issuer.context.crlUrl } : {}),
  };
}

export async function startRevocation(options: RevocationRuntimeOptions): Promise<RevocationRuntime> {
  const { config, clock, logger, issuers, certificates, crls } = options;
  const store: RevocationRuntime['crls'] = {
    allocateNumber: (issuerId, shard, opts) => crls.allocateNumber(issuerId, shard, opts),
    save: (crl) => crls.save(crl),
    getLatestInfo: (issuerId, shard, kind) => crls.getLatestInfo(issuerId, shard, kind),
    getLatest: latestCrlReader(crls),
    listLatestInfo: () => crls.listLatestInfo(),
  };
  const crlImport = createImportFor({ config, clock, issuers: options.issuerRecords, crls });
  // A root's CRLs come from the offline ceremony and are imported (issue #18): never signed here.
  const notRoots = <T extends { certificateDer: Uint8Array }>(list: T[]) =>
    list.filter((issuer) => !isSelfIssued(issuer.certificateDer));

  const stopped = options.stoppedIssuers ?? [];
  const scheduler = createCrlScheduler({
    issuers: {
      listCrlIssuers: async () => [
        ...(await Promise.all(
          notRoots(issuers.list()).map((issuer) => crlIssuer(issuer, true, certificates)),
        )),
        ...(await Promise.all(stopped.map((issuer) => crlIssuer(issuer, false, certificates)))),
      ],
    },
    entries: certificates,
    store,
    clock,
    lock: (name, fn) => options.database.withAdvisoryLock(name, fn),
    owed: owedCrls(options.owedWork),
    // The partition answers and is unsealed: after an outage, owed CRLs follow at once (issue #17).
    signerReady: async (issuerId) =>
      (await (issuers.get(issuerId) ?? stopped.find((i) => i.id === issuerId))?.keyManager.status())
        ?.state === 'unsealed',
    nodeId: options.nodeId,
    validityMs: durationMs(config.crl.validity),
    debounceMs: durationMs(config.crl.debounce),
    ...(config.crl.deltaInterval ? { deltaIntervalMs: durationMs(config.crl.deltaInterval) } : {}),
    onPublished: (crl) =>
      logger.info(
        { issuer: crl.issuerId, crlNumber: crl.crlNumber.toString(), entries: undefined },
        'CRL published',
      ),
    onError: (error, issuerId) =>
      logger.error({ err: error, issuer: issuerId }, 'CRL generation failed; will retry'),
  });

  const { ocsp, ocspMaintenance, ocspResponders, stopOcsp } = await startOcsp(options);
  const revoke = createRevokeUseCase({
    certificates,
    clock,
    listeners: [
      ...(options.background === false
        ? []
        : [
            (result: RevokeResult) =>
              scheduler.notifyRevocation(result.revocation.issuerId, result.revocation.crlShard ?? 0),
          ]),
      // This node at once; the others through the NOTIFY sent at commit (src/db).
      (result) => {
        ocsp.invalidate(result.revocation.serial);
        ocspMaintenance.kick();
      },
    ],
    onListenerError: (error) => logger.error({ err: error }, 'revocation listener failed'),
  });
  const revokeByKey = createRevokeByKey({
    certificates,
    consumeJti: (entry) => options.replayGuard.claim(entry),
    revocations: revoke,
    clock,
  });
  // A worker without background jobs leaves CRLs to the node's first worker (owed work, issue #24).
  if (options.background !== false) await scheduler.start();
  return {
    revoke,
    revokeByKey,
    crls: store,
    crlImport,
    ocsp,
    ocspMaintenance,
    ocspResponders,
    scheduler,
    stop: async () => {
      await stopOcsp();
      await scheduler.stop();
    },
  };
}

/**
 * The OCSP responder with its pre-signed responses in the database, told of revocations on other
 * nodes by LISTEN (a lost connection may have missed some: everything in memory is dropped), and
 * its maintenance (owed re-signing, preSign all) started: what a crash left owed is done now.
 */
async function startOcsp(options: RevocationRuntimeOptions) {
  const { config, clock, logger, issuers, certificates } = options;
  const validityMs = durationMs(config.ocsp.validity);
  // Each issuer answers through its delegated responder when it has one (renewed here, no operator).
  const directory = createResponderDirectory({
    issuers,
    responders: options.ocspResponders,
    certificates,
    clock,
    validitySeconds: durationMs(config.ocsp.responderValidity) / 1000,
    lock: (name, fn) => options.database.withAdvisoryLock(name, fn),
    logger,
  });
  await directory.start();
  const ocsp = createOcspResponder({
    issuers: directory,
    status: certificates,
    clock,
    validityMs,
    store: presignedStore(options.ocspResponseStore),
    cacheEntries: config.ocsp.cacheEntries,
    signingBudget: options.takeToken
      ? createSharedSigningBudget({
          perMinute: config.ocsp.nonceRateLimit.perMinute,
          clock,
          takeToken: options.takeToken,
          onError: (error) =>
            logger.warn({ err: error }, 'OCSP signing budget unavailable: nothing signed on the spot'),
        })
      : createSigningBudget({ perMinute: config.ocsp.nonceRateLimit.perMinute, clock }),
    onError: (error, context) => logger.warn({ err: error, ...context }, 'OCSP request failed'),
  });
  const unlisten = await options.database.listen(OCSP_INVALIDATION_CHANNEL, (serial) => {
    if (serial === null) ocsp.clearCache();
    else ocsp.invalidate(serial);
  });
  const facts = new Map(issuers.list().map((issuer) => [issuer.id, readIssuerFacts(issuer.certificateDer)]));
  const certIdOf = (row: { issuerId: string; serial: string }) => {
    const issuer = facts.get(row.issuerId);
    return issuer ? [certIdFor(issuer, row.serial)] : [];
  };
  const ocspMaintenance = createOcspMaintenance({
    responder: ocsp,
    owed: owedOcsp(options.owedWork),
    clock,
    lock: (name, fn) => options.database.withAdvisoryLock(name, fn),
    validityMs,
    ...(config.ocsp.preSign === 'all'
      ? {
          preSignAll: {
            unsigned: async (now, limit) =>
              (await options.ocspResponseStore.listUnsigned(now, limit)).flatMap(certIdOf),
            due: async (before, now, limit) =>
              (await options.ocspResponseStore.listDue(before, now, limit)).map((row) => row.certIdDer),
          },
        }
      : {}),
    onError: (error, serial) => logger.warn({ err: error, serial }, 'OCSP pre-signing failed; will retry'),
  });
  await ocspMaintenance.start();
  return {
    ocsp,
    ocspMaintenance,
    ocspResponders: directory,
    stopOcsp: async () => {
      directory.stop();
      await ocspMaintenance.stop();
      await unlisten();
    },
  };
}

/**
 * What the CRL route reads: the latest CRL, its DER fetched from the database once per new CRL and
 * then served from memory (a CRL of a million entries is about 50 MiB; asking whether it changed
 * reads its number and hash only).
 */
export function latestCrlReader(
  crls: Pick<CrlsRepository, 'getLatest' | 'getLatestInfo'>,
): CrlsRepository['getLatest'] {
  const cache = new Map<string, NonNullable<Awaited<ReturnType<CrlsRepository['getLatest']>>>>();
  return async (issuerId, shard, kind) => {
    const info = await crls.getLatestInfo(issuerId, shard, kind);
    const key = `${issuerId}/${shard}/${kind}`;
    const hit = cache.get(key);
    if (!info) return null;
    if (hit && hit.crlNumber === info.crlNumber && Buffer.from(hit.sha256).equals(info.sha256)) return hit;
    const latest = await crls.getLatest(issuerId, shard, kind);
    if (latest) cache.set(key, latest);
    return latest;
  };
}

/** The CRL import use case over the repositories, for the server and for `signet crl import --data`. */
export function createImportFor({
  config,
  clock,
  issuers,
  crls,
}: {
  config: Pick<SignetConfig, 'partitions'>;
  clock: Clock;
  issuers: Pick<IssuersRepository, 'get'>;
  crls: Pick<CrlsRepository, 'getLatestInfo' | 'saveImported'>;
}): CrlImport {
  const partitions = new Set(Object.keys(config.partitions));
  return createCrlImport({
    issuers: {
      async get(id) {
        const record = await issuers.get(id);
        return record
          ? {
              id: record.id,
              certificateDer: record.certificateDer,
              signsCrlsOnline: crlsSignedOnline(record, partitions),
            }
          : null;
      },
    },
    store: crls,
    clock,
  });
}
