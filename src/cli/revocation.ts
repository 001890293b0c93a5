import type { Logger } from 'pino';
import type { IssuerSet } from '../ca/issuers.ts';
import type { SignetConfig } from '../config/config.ts';
import type { CertificatesRepository } from '../db/certificates.repository.ts';
import type { CrlsRepository } from '../db/crls.repository.ts';
import type { Database } from '../db/database.ts';
import type { IssuersRepository } from '../db/issuers.repository.ts';
import { crlWorkKey, type OwedWorkRepository, parseCrlWorkKey } from '../db/owed-work.repository.ts';
import type { ReplayGuardRepository } from '../db/replay-guard.repository.ts';
import type { Clock } from '../lib/clock.ts';
import { parseDuration } from '../lib/duration.ts';
import { type CrlImport, createCrlImport, crlsSignedOnline } from '../revocation/crl-import.ts';
import {
  type CrlScheduler,
  type CrlStore,
  createCrlScheduler,
  type OwedCrls,
} from '../revocation/crl-scheduler.ts';
import { createOcspResponder, type OcspResponder } from '../revocation/ocsp-responder.ts';
import { partitionSigner } from '../revocation/partition-signer.ts';
import { createRevokeUseCase, type RevokeUseCase } from '../revocation/revoke.usecase.ts';
import { createRevokeByKey, type RevokeByKey } from '../revocation/revoke-by-key.ts';
import { isSelfIssued } from '../x509/crl.ts';

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
  scheduler: CrlScheduler;
  stop(): Promise<void>;
}

export interface RevocationRuntimeOptions {
  config: SignetConfig;
  clock: Clock;
  logger: Logger;
  database: Pick<Database, 'withAdvisoryLock'>;
  issuers: IssuerSet;
  /** Every issuer record, including those served read-only (offline roots). */
  issuerRecords: Pick<IssuersRepository, 'get'>;
  certificates: CertificatesRepository;
  crls: CrlsRepository;
  owedWork: OwedWorkRepository;
  replayGuard: ReplayGuardRepository;
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

function durationMs(text: string): number {
  const result = parseDuration(text);
  if (!result.ok) throw new Error(`invalid duration ${text}: ${result.reason}`);
  return result.seconds * 1000;
}

export async function startRevocation(options: RevocationRuntimeOptions): Promise<RevocationRuntime> {
  const { config, clock, logger, issuers, certificates, crls } = options;
  const store: RevocationRuntime['crls'] = {
    allocateNumber: (issuerId, shard, opts) => crls.allocateNumber(issuerId, shard, opts),
    save: (crl) => crls.save(crl),
    getLatestInfo: (issuerId, shard, kind) => crls.getLatestInfo(issuerId, shard, kind),
    getLatest: (issuerId, shard, kind) => crls.getLatest(issuerId, shard, kind),
    listLatestInfo: () => crls.listLatestInfo(),
  };
  const crlImport = createImportFor({ config, clock, issuers: options.issuerRecords, crls });
  // A root's CRLs come from the offline ceremony and are imported (issue #18): never signed here.
  const notRoots = <T extends { certificateDer: Uint8Array }>(list: T[]) =>
    list.filter((issuer) => !isSelfIssued(issuer.certificateDer));

  const scheduler = createCrlScheduler({
    issuers: {
      listCrlIssuers: async () =>
        notRoots(issuers.list()).map((issuer) => ({
          id: issuer.id,
          certificate: issuer.certificateDer,
          signer: partitionSigner(issuer.crypto, issuer.keys.crl, 'crl'),
          issuing: true,
          // No certificate outlives its issuer: the issuer's notAfter bounds how long CRLs are owed.
          lastCertificateExpiry: issuer.context.notAfter,
        })),
    },
    entries: certificates,
    store,
    clock,
    lock: (name, fn) => options.database.withAdvisoryLock(name, fn),
    owed: owedCrls(options.owedWork),
    // The partition answers and is unsealed: after an outage, owed CRLs follow at once (issue #17).
    signerReady: async (issuerId) => (await issuers.get(issuerId)?.keyManager.status())?.state === 'unsealed',
    nodeId: options.nodeId,
    validityMs: durationMs(config.crl.validity),
    debounceMs: durationMs(config.crl.debounce),
    onPublished: (crl) =>
      logger.info(
        { issuer: crl.issuerId, crlNumber: crl.crlNumber.toString(), entries: undefined },
        'CRL published',
      ),
    onError: (error, issuerId) =>
      logger.error({ err: error, issuer: issuerId }, 'CRL generation failed; will retry'),
  });

  const revoke = createRevokeUseCase({
    certificates,
    clock,
    listeners:
      options.background === false
        ? []
        : [(result) => scheduler.notifyRevocation(result.revocation.issuerId)],
    onListenerError: (error) => logger.error({ err: error }, 'revocation listener failed'),
  });
  const revokeByKey = createRevokeByKey({
    certificates,
    consumeJti: (entry) => options.replayGuard.claim(entry),
    revocations: revoke,
    clock,
  });
  const ocsp = createOcspResponder({
    issuers: issuers.list().map((issuer) => ({
      id: issuer.id,
      certificate: issuer.certificateDer,
      signer: partitionSigner(issuer.crypto, issuer.keys.ocsp, 'ocsp'),
    })),
    status: certificates,
    clock,
    validityMs: durationMs(config.ocsp.validity),
    onError: (error, context) => logger.warn({ err: error, ...context }, 'OCSP request failed'),
  });

  if (options.background !== false) await scheduler.start();
  return {
    revoke,
    revokeByKey,
    crls: store,
    crlImport,
    ocsp,
    scheduler,
    stop: () => scheduler.stop(),
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
