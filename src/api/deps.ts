import type { Logger } from 'pino';
import type { CertificateAuthority } from '../ca/types.ts';
import type { Clock } from '../lib/clock.ts';
import type { San } from '../x509/types.ts';
import type { Role } from './env.ts';

/**
 * What the HTTP edge needs from the rest of Signet, as narrow interfaces that the real pieces
 * (src/db repositories, src/policy registry, src/revocation, src/ca) satisfy. `createApp(deps)`
 * takes one of these; the service wiring (`signet serve`) builds it.
 */

// --- API keys (db: api_keys) -------------------------------------------------------------------

export interface ApiKeyRecord {
  id: string;
  /** SHA-256 of the secret part, hex: the secret itself is never stored. */
  secretHash: string;
  roles: Role[];
  policies: string[];
  description: string | null;
  createdAt: Date;
  expiresAt: Date | null;
  revokedAt: Date | null;
}

export interface ApiKeyStore {
  insert(record: Omit<ApiKeyRecord, 'revokedAt'>): Promise<void>;
  findById(id: string): Promise<ApiKeyRecord | undefined>;
  list(): Promise<ApiKeyRecord[]>;
  /** Marks the key revoked; false when no such key (or already revoked). */
  revoke(id: string, at: Date): Promise<boolean>;
}

// --- Idempotency (db: idempotency) -------------------------------------------------------------

export interface StoredResponse {
  status: number;
  /** The headers a replay must repeat (content-type, location). */
  headers: Record<string, string>;
  body: Uint8Array;
}

export type IdempotencyClaim =
  | { state: 'claimed' }
  | { state: 'in_flight'; fingerprint: string }
  | { state: 'completed'; fingerprint: string; response: StoredResponse };

export interface IdempotencyStore {
  /**
   * Atomically records (principal, key) as in flight with the request fingerprint, unless a live
   * record exists: then answers it. Records expire at `expiresAt`; an in-flight record older than
   * `staleBefore` counts as abandoned (its request crashed) and is claimed anew.
   */
  claim(input: {
    principal: string;
    key: string;
    fingerprint: string;
    now: Date;
    expiresAt: Date;
    staleBefore: Date;
  }): Promise<IdempotencyClaim>;
  complete(input: { principal: string; key: string; response: StoredResponse }): Promise<void>;
  /** Forgets an in-flight claim whose request failed, so a retry can run. */
  release(input: { principal: string; key: string }): Promise<void>;
}

// --- Certificates (db: certificates) -----------------------------------------------------------

export type CertificateStatus = 'valid' | 'revoked' | 'expired';

export interface CertificateView {
  serialNumber: string;
  issuer: string;
  policy: string;
  /** RFC 4514 string of the subject, '' when empty. */
  subject: string;
  sans: San[];
  notBefore: Date;
  notAfter: Date;
  status: CertificateStatus;
  /** The id of the principal that asked for it (Requester.id). */
  requester: string;
  certificateDer: Uint8Array;
  revokedAt: Date | null;
  revocationReason: string | null;
}

export interface CertificateQuery {
  status?: CertificateStatus;
  policy?: string;
  issuer?: string;
  expiresBefore?: Date;
  /** Only certificates this principal asked for (the issuer role reads its own). */
  requester?: string;
  cursor?: string;
  limit: number;
  now: Date;
}

export interface CertificateReader {
  /** `serial` is already normalised (lowercase hex, no colons, no leading 00). */
  get(serial: string, now: Date): Promise<CertificateView | undefined>;
  /** `cursor` is opaque; a malformed one is an AppError `request.invalid_cursor`. */
  list(query: CertificateQuery): Promise<{ items: CertificateView[]; nextCursor: string | null }>;
}

// --- Issuers (db: issuers) ---------------------------------------------------------------------

export interface IssuerView {
  id: string;
  subject: string;
  /** The issuer's parent id; null for a root. */
  parent: string | null;
  keyAlgorithm: string;
  status: string;
  notBefore: Date;
  notAfter: Date;
  certificateDer: Uint8Array;
}

export interface IssuerReader {
  list(): Promise<IssuerView[]>;
  get(id: string): Promise<IssuerView | undefined>;
  /** From the issuer up to and including its root, DER each (DESIGN.md "Issuer certificates"). */
  chain(id: string): Promise<Uint8Array[] | undefined>;
}

// --- Policies (src/policy registry) ------------------------------------------------------------

export interface PolicySummary {
  name: string;
  description: string;
  issuer: string;
  /** The policy as loaded, for GET /v1/policies/{name}. */
  document: Record<string, unknown>;
}

export interface PolicyCatalog {
  list(): PolicySummary[];
  get(name: string): PolicySummary | undefined;
  /** Re-reads policies/*.yaml; a broken file keeps the old set and throws an AppError naming it. */
  reload(): Promise<{ loaded: string[] }>;
}

// --- Audit (db: audit events) ------------------------------------------------------------------

export interface AuditEventInput {
  at: Date;
  /** Principal id, or 'anonymous'. */
  actor: string;
  action: string;
  outcome: 'success' | 'refused' | 'failed';
  /** What it was about: a serial, a policy, an API key id. */
  resource?: string;
  /** Stable code of a refusal (auth.role_forbidden, policy.san_not_allowed...). */
  code?: string;
  requestId?: string;
  details?: Record<string, unknown>;
}

export interface AuditEventView extends AuditEventInput {
  id: string;
}

export interface AuditQuery {
  actor?: string;
  action?: string;
  outcome?: AuditEventInput['outcome'];
  resource?: string;
  since?: Date;
  until?: Date;
  cursor?: string;
  limit: number;
}

export interface AuditLog {
  record(event: AuditEventInput): Promise<void>;
  list(query: AuditQuery): Promise<{ items: AuditEventView[]; nextCursor: string | null }>;
}

// --- Readiness ---------------------------------------------------------------------------------

export interface ReadinessProbe {
  /** Resolves when the database answers a trivial query. */
  database(): Promise<void>;
  /** The issuing partition's state; only 'unsealed' is ready. */
  partition(): Promise<{ state: string }>;
}

// --- The whole -------------------------------------------------------------------------------------

export interface AppOptions {
  /** Largest request body, bytes (config server.bodyLimit). */
  bodyLimit?: number;
  /** Requests per credential per minute (config rateLimit.perMinute). */
  rateLimitPerMinute?: number;
  /** Handler time budget in milliseconds (config server.requestTimeout). */
  requestTimeoutMs?: number;
  /** How long an Idempotency-Key is remembered. */
  idempotencyTtlMs?: number;
}

export interface AppDeps {
  clock: Clock;
  logger: Logger;
  ca: CertificateAuthority;
  apiKeys: ApiKeyStore;
  idempotency: IdempotencyStore;
  certificates: CertificateReader;
  issuers: IssuerReader;
  policies: PolicyCatalog;
  audit: AuditLog;
  readiness: ReadinessProbe;
  options?: AppOptions;
}
