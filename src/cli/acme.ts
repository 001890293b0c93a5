import { readFileSync } from 'node:fs';
import type { Logger } from 'pino';
import { parseAlternateChain } from '../acme/chains.ts';
import { createPartitionEabSealer } from '../acme/eab.ts';
import { type AcmeServer, createAcmeServer } from '../acme/server.ts';
import type { EventLimiter } from '../acme/types.ts';
import { createValidationNetwork } from '../acme/validation/network.ts';
import { createChallengeValidator } from '../acme/validation/validator.ts';
import { resolveIn } from '../config/config.ts';
import { createAcmeRepository } from '../db/acme.repository.ts';
import { parseKeyUri } from '../hsm/key-uri.ts';
import { parseDuration } from '../lib/duration.ts';
import type { NodeRateLimits } from './rate-limits.ts';
import type { Runtime } from './runtime.ts';

/**
 * The ACME server of `signet serve`, from signet.yaml's `acme` section (README "ACME"), or
 * undefined when no directory is configured. `failedAuth` is the API's per-address budget of
 * failed authentication, shared so that a client cannot double it by switching protocols.
 */
export function createAcmeFromConfig({
  runtime,
  logger,
  failedAuth,
  limits,
}: {
  runtime: Runtime;
  logger: Logger;
  failedAuth: EventLimiter;
  /** Where the ACME budgets are kept (in PostgreSQL across nodes, issue #29). */
  limits: Pick<NodeRateLimits, 'attempts'>;
}): AcmeServer | undefined {
  const { config, clock } = runtime;
  const acme = config.acme;
  if (acme.directories.length === 0) return undefined;
  const resolver = acme.validation.dnsResolver;
  const network = createValidationNetwork({
    ...(resolver ? { dnsServers: Array.isArray(resolver) ? resolver : [resolver] } : {}),
    denyNetworks: acme.validation.denyNetworks,
  });
  const validationTimeoutMs = ms(acme.validation.timeout);
  const eabPartition = runtime.partitions.get(parseKeyUri(acme.eabKey).partition ?? '');
  return createAcmeServer({
    clock,
    logger: logger.child({ component: 'acme' }),
    publicUrl: config.server.publicUrl,
    directories: acme.directories,
    repository: createAcmeRepository({ db: runtime.database.db, clock }),
    ca: runtime.ca,
    policies: runtime.policies,
    certificates: runtime.repositories.certificates,
    ...(runtime.revocation ? { revoker: runtime.revocation.revoke } : {}),
    audit: runtime.repositories.audit,
    ...(eabPartition
      ? { eabSealer: createPartitionEabSealer({ partition: eabPartition, keyUri: acme.eabKey }) }
      : {}),
    validator: createChallengeValidator({
      network,
      httpPort: acme.validation.httpPort,
      tlsPort: acme.validation.tlsPort,
      timeoutMs: validationTimeoutMs,
      caaIdentities: acme.caaIdentities,
    }),
    limits: {
      newAccounts: limits.attempts('acme.new-account', acme.rateLimit.newAccountsPerMinute),
      newOrders: limits.attempts('acme.new-order', acme.rateLimit.newOrdersPerMinute),
      failedAuth,
    },
    alternateChains: acme.alternateChains.map((file) =>
      parseAlternateChain(
        readFileSync(resolveIn(runtime.dataDir, file), 'utf8'),
        `acme.alternateChains ${file}`,
      ),
    ),
    nonceLifetimeMs: ms(acme.nonceLifetime),
    maxNoncesPerClient: acme.maxNoncesPerAddress,
    orderLifetimeMs: ms(acme.orderLifetime),
    authorizationLifetimeMs: ms(acme.authorizationLifetime),
    validationConcurrency: acme.validation.concurrency,
    validationTimeoutMs,
  });
}

function ms(text: string): number {
  const parsed = parseDuration(text);
  if (!parsed.ok) throw new Error(`invalid duration ${text}: ${parsed.reason}`);
  return parsed.seconds * 1000;
}
