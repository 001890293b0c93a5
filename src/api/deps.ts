import type { Logger } from 'pino';
import type { AcmeServer } from '../acme/server.ts';
import type { Renewal } from '../ca/renew.usecase.ts';
import type { CertificateAuthority } from '../ca/types.ts';
import type { ApiKeysRepository } from '../db/api-keys.repository.ts';
import type { AuditRepository } from '../db/audit.repository.ts';
import type { CertificatesRepository } from '../db/certificates.repository.ts';
import type { CrlsRepository } from '../db/crls.repository.ts';
import type { IdempotencyRepository } from '../db/idempotency.repository.ts';
import type { IssuersRepository } from '../db/issuers.repository.ts';
import type { Clock } from '../lib/clock.ts';
import type { PolicyRegistry } from '../policy/registry.ts';
import type { CrlImport } from '../revocation/crl-import.ts';
import type { OcspResponder } from '../revocation/ocsp-responder.ts';
import type { RevokeUseCase } from '../revocation/revoke.usecase.ts';
import type { RevokeByKey } from '../revocation/revoke-by-key.ts';
import type { ClientCertificateMapping } from './auth/mtls.ts';
import type { FailedAuthAudit } from './failed-auth.ts';
import type { Metrics } from './metrics.ts';
import type { AttemptLimiter, CredentialLimiter } from './middleware/rate-limit.ts';

/**
 * What the HTTP edge needs from the rest of Signet: the real repositories (src/db), the policy
 * registry (src/policy), the CA (src/ca) and revocation (src/revocation), narrowed with Pick to
 * the methods the routes call. `createApp(deps)` takes one of these; `signet serve` builds it.
 */

export interface ReadinessProbe {
  /** Resolves when the database answers a trivial query (Database.ping). */
  database(): Promise<void>;
  /** The issuing partition's state (KeyManager.status); only 'unsealed' is ready. */
  partition(): Promise<{ state: string }>;
  /** Each partition member's state, in-flight requests and failovers (issue #22), for /metrics. */
  members?(): PartitionMemberSnapshot[];
}

export interface PartitionMemberSnapshot {
  partition: string;
  member: string;
  /** up, down, sealed or missing-keys. */
  state: string;
  inFlight: number;
  failovers: number;
}

/** Revocation (src/revocation): the use cases and what the public CRL and OCSP endpoints serve. */
export interface RevocationDeps {
  revoke: RevokeUseCase;
  revokeByKey: RevokeByKey;
  /**
   * The latest full (and delta) CRL of an issuer's shard, as the CRL scheduler saved it or as it
   * was imported; and every served CRL without its DER (readiness warnings, metrics).
   */
  crls: Pick<CrlsRepository, 'getLatest' | 'listLatestInfo'>;
  /** Publishing a CRL signed offline (POST /v1/issuers/{id}/crl). */
  crlImport: Pick<CrlImport, 'importCrl'>;
  ocsp: Pick<OcspResponder, 'answer' | 'answerGetPath'>;
}

export interface AppOptions {
  /** Largest request body, bytes (config server.bodyLimit). Default 64 KiB. */
  bodyLimit?: number;
  /** Requests per credential per minute (config rateLimit.perMinute). Default 6000. */
  rateLimitPerMinute?: number;
  /** Failed authentications per client address per minute (config rateLimit.failedAuthPerMinute). Default 60. */
  failedAuthPerMinute?: number;
  /** At most one audit row of failed authentication per client address per this many ms (config audit.failedAuthInterval). Default 60 s. */
  failedAuthIntervalMs?: number;
  /** Handler time budget in milliseconds (config server.requestTimeout). Default 30 s. */
  requestTimeoutMs?: number;
  /** /readyz warns when an imported CRL is this close to its nextUpdate (crl.importedExpiryWarning). Default 30 days. */
  importedCrlExpiryWarningMs?: number;
  /** Client certificates mapped to roles (config server.tls.clients); needs a TLS listener with clientCa. */
  tlsClients?: ClientCertificateMapping[];
  /** The base URL clients reach (config server.publicUrl): /docs shows it as the API server. */
  publicUrl?: string;
}

export interface AppDeps {
  clock: Clock;
  logger: Logger;
  ca: CertificateAuthority;
  apiKeys: Pick<ApiKeysRepository, 'create' | 'list' | 'revoke' | 'verify'>;
  idempotency: Pick<IdempotencyRepository, 'begin' | 'complete' | 'release'>;
  certificates: Pick<CertificatesRepository, 'findBySerial' | 'list'>;
  issuers: Pick<IssuersRepository, 'get' | 'list' | 'chain'>;
  policies: Pick<PolicyRegistry, 'get' | 'list' | 'reload'>;
  audit: Pick<AuditRepository, 'append' | 'list'>;
  readiness: ReadinessProbe;
  /** Prometheus metrics (createMetrics()); the wiring may observe partition and database latency in it. */
  metrics?: Metrics;
  /** Renewal by proof of the certificate's key; absent: POST /v1/certificates/{serial}/renew answers 503. */
  renewal?: Renewal;
  /** Absent: the revocation endpoints answer 503 `revocation.unavailable`. */
  revocation?: RevocationDeps;
  /** The ACME server (RFC 8555) behind /acme/*; absent: no ACME directories are served. */
  acme?: AcmeServer;
  /** Requests per credential; absent: counted in this process (options.rateLimitPerMinute). */
  limiter?: CredentialLimiter;
  /** Failed attempts per client address; absent: counted in this process (options.failedAuthPerMinute). */
  attempts?: AttemptLimiter;
  /** Aggregated audit of failed authentication; absent: one is made (options.failedAuthIntervalMs). Pass one to flush it at shutdown. */
  failedAuth?: FailedAuthAudit;
  options?: AppOptions;
}
