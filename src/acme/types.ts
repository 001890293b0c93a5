import type { CertificateAuthority } from '../ca/types.ts';
import type { AcmeRepository } from '../db/acme.repository.ts';
import type { AuditEventInput } from '../db/audit.repository.ts';
import type { Clock } from '../lib/clock.ts';
import type { RevocationReason } from '../lib/revocation-reasons.ts';
import type { Policy } from '../policy/types.ts';
import type { AlternateChain } from './chains.ts';
import type { ChallengeType, ChallengeValidator } from './validation/validator.ts';

/**
 * What the ACME server (RFC 8555) needs from the rest of Signet, each narrowed to the calls it
 * makes: the issuing core's public contract (an ACME order ends in the same `issue` as a REST
 * request), the policy registry (to screen identifiers at newOrder), certificates and the revoke
 * use case (revokeCert), the audit log and its own repository.
 */

/** Seals and opens EAB HMAC keys under a partition-held key (src/acme/eab.ts). */
export interface EabSealer {
  seal(kid: string, key: Uint8Array): Promise<Uint8Array>;
  /** Throws when the sealed bytes were altered or belong to another key id. */
  open(kid: string, sealed: Uint8Array): Promise<Uint8Array>;
}

/** One directory of signet.yaml's acme.directories. */
export interface AcmeDirectoryConfig {
  name: string;
  /** Every certificate of this directory is issued under this policy. */
  policy: string;
  challenges: ChallengeType[];
  /** `required`: newAccount must carry an external account binding (RFC 8555 §7.3.4). */
  eab?: 'required' | 'optional';
  /**
   * Policies a newOrder may ask for by `profile` (draft-ietf-acme-profiles), beside `policy`,
   * which stays the default.
   */
  profiles?: string[];
}

/**
 * A per-key counter with a budget per minute: the API's AttemptLimiter (issue #19), whose
 * `fail(key)` counts one event of `key`.
 */
export interface EventLimiter {
  check(key: string): Promise<LimitVerdict>;
  /** Counts one event; refused (when the limiter says) if the budget was spent already, e.g. on another node. */
  fail(key: string): Promise<LimitVerdict | undefined>;
}

export type LimitVerdict = { allowed: true } | { allowed: false; retryAfterSeconds: number };

export interface AcmeLimits {
  /** New accounts per client address (acme.rateLimit.newAccountsPerMinute). */
  newAccounts: EventLimiter;
  /** New orders per account (acme.rateLimit.newOrdersPerMinute). */
  newOrders: EventLimiter;
  /**
   * Failed authentication per client address, shared with the REST API
   * (rateLimit.failedAuthPerMinute): signatures that do not verify and unknown accounts.
   */
  failedAuth: EventLimiter;
}

/** The certificates repository's lookup (src/db/certificates.repository.ts findBySerial). */
export interface CertificateLookup {
  findBySerial(serial: string): Promise<{ der: Uint8Array | null; status: string } | null>;
}

/** The revoke use case (src/revocation/revoke.usecase.ts). */
export interface AcmeRevoker {
  revoke(input: { serial: string; reason: RevocationReason }): Promise<{
    outcome: 'revoked' | 'unchanged' | 'reason_updated';
    revocation: { serial: string; reason: RevocationReason };
  }>;
}

export interface AcmeLogger {
  info(object: object, message: string): void;
  warn(object: object, message: string): void;
  error(object: object, message: string): void;
}

export interface AcmeServerOptions {
  clock: Clock;
  logger?: AcmeLogger;
  /** server.publicUrl: every URL the server hands out starts with it. */
  publicUrl: string;
  directories: AcmeDirectoryConfig[];
  repository: AcmeRepository;
  ca: Pick<CertificateAuthority, 'issue'>;
  policies: { get(name: string): Policy | undefined };
  certificates: CertificateLookup;
  /** Absent: revokeCert answers serverInternal (revocation is not running). */
  revoker?: AcmeRevoker;
  audit: { append(events: AuditEventInput | AuditEventInput[]): Promise<unknown> };
  validator: ChallengeValidator;
  /** Seals EAB keys under the partition (eab.ts); absent: EAB keys can be neither made nor used. */
  eabSealer?: EabSealer;
  limits: AcmeLimits;
  nonceLifetimeMs: number;
  /** Unused nonces kept per client address (acme.maxNoncesPerAddress; default 1000). */
  maxNoncesPerClient?: number;
  orderLifetimeMs: number;
  authorizationLifetimeMs: number;
  validationConcurrency: number;
  /** acme.validation.timeout: also how long a node holds a challenge it validates. */
  validationTimeoutMs: number;
  /** Cross-signed chains offered beside the default one (acme.alternateChains, chains.ts). */
  alternateChains?: AlternateChain[];
  /** Orders per page of an account's orders list (default 100). */
  ordersPageSize?: number;
  /** How often expiry and abandoned validations are swept (default one minute). */
  sweepIntervalMs?: number;
}

/** A request as the HTTP edge hands it over: nothing of hono. */
export interface AcmeRequest {
  method: string;
  /** The directory name from the path: /acme/{directory}/... */
  directory: string;
  /** The path after /acme/{directory}/, split: ['order', id, 'finalize']. */
  resource: string[];
  contentType: string | undefined;
  accept: string | undefined;
  body: string;
  /** The client's address key (src/api/client-address.ts addressKey). */
  client: string;
}

export interface AcmeResponse {
  status: number;
  headers: Record<string, string>;
  /** Link header values (several rels may apply). */
  links: string[];
  /** JSON for resources and problems, text for a certificate chain. */
  body?: unknown;
}
