/**
 * What the CRL scheduler (crl-scheduler.ts) needs from the rest of Signet: the CRL store, the
 * writer lock, the revoked entries, the issuers, the owed CRLs of the owed_work outbox, and timers.
 * src/cli/revocation.ts wires them to src/db; tests give in-memory ones.
 */

import type { Clock } from '../lib/clock.ts';
import type { CrlEntry, IssuingDistributionPointOptions } from './crl-builder.ts';
import type { RevocationSigner } from './signing.ts';

/** What scheduling needs to know of the latest CRL (the crls table without its DER). */
export interface CrlInfo {
  crlNumber: bigint;
  thisUpdate: Date;
  nextUpdate: Date;
  /** Signed elsewhere and imported (crl-import.ts): served as it is, never re-signed here. */
  imported?: boolean;
  /** A delta CRL's BaseCRLNumber (RFC 5280 §5.2.4); null or absent for a full CRL. */
  baseCrlNumber?: bigint | null;
}

export type CrlKind = 'full' | 'delta';

/** A full or delta CRL as saved and served: every node serves these same bytes. */
export interface PublishedCrl extends CrlInfo {
  issuerId: string;
  shard: number;
  kind: CrlKind;
  der: Uint8Array;
  /** SHA-256 of `der`: the ETag. */
  sha256: Uint8Array;
  generatedAt: Date;
  /** The node that made it. */
  generatedBy: string | null;
}

/**
 * Where CRLs and CRL numbers live: the crls repository of src/db (tables crls and crl_numbers).
 * Every method is atomic on its own; several nodes may call them at once.
 */
export interface CrlStore {
  /**
   * Hands out the next CRL number: max(last + 1, atLeast), stored before it is returned (one
   * upsert). The scheduler passes the time-derived number as `atLeast` (crl-number.ts says why).
   */
  allocateNumber(issuerId: string, shard: number, options?: { atLeast?: bigint }): Promise<bigint>;
  /**
   * Makes `crl` the latest, unless one with a greater or equal number is stored (a node that
   * allocated later published first): then 'stale', and nothing changes.
   */
  save(crl: PublishedCrl): Promise<'saved' | 'stale'>;
  getLatestInfo(issuerId: string, shard: number, kind: CrlKind): Promise<CrlInfo | null>;
}

/**
 * Runs `fn` under a named lock shared by every node (Database.withAdvisoryLock of src/db), so two
 * nodes do not sign the same issuer's CRL at once. Answers { acquired: false } when held.
 */
export type CrlWriterLock = <T>(
  name: string,
  fn: () => Promise<T>,
) => Promise<{ acquired: true; value: T } | { acquired: false }>;

/** The certificates repository's CRL cursor (src/db/certificates.repository.ts). */
export interface RevokedEntrySource {
  /**
   * Every revoked certificate of the issuer and shard, page by page, leaving out those whose
   * notAfter is before `expiredBefore`.
   */
  streamRevokedForCrl(
    issuerId: string,
    options?: { shard?: number; expiredBefore?: Date; pageSize?: number },
  ): AsyncIterable<CrlEntry>;
  /** Revocations made or changed after `since`: a delta CRL's entries (RFC 5280 §5.2.4). */
  streamRevocationChangesSince?(
    issuerId: string,
    since: Date,
    options?: { shard?: number; expiredBefore?: Date; pageSize?: number },
  ): AsyncIterable<CrlEntry>;
}

/** One CRL shard of an issuer (src/x509/crl-urls.ts): its certificates name its URL. */
export interface CrlShard {
  shard: number;
  /** New certificates may still land in it (the issuer issues and the shard count covers it). */
  issuing: boolean;
  /** The latest notAfter of its certificates; null when it has none. */
  lastCertificateExpiry: Date | null;
}

/** An issuer as the scheduler needs it. */
export interface CrlIssuer {
  id: string;
  /** The issuer certificate, DER. */
  certificate: Uint8Array;
  /** The issuer's key handle with purpose 'crl'. */
  signer: RevocationSigner;
  /** False once the issuer issues no more certificates (disabled, retired). */
  issuing: boolean;
  /** The latest notAfter of the certificates it issued; null when it issued none. */
  lastCertificateExpiry: Date | null;
  issuingDistributionPoint?: IssuingDistributionPointOptions;
  /** The issuer's CRL URL (`.../crl/{id}.crl`): shard CRLs name theirs in their IDP. */
  crlUrl?: string;
  /**
   * Its shards; absent: one, shard 0, with `issuing` and `lastCertificateExpiry` above. Several
   * (or one other than 0): each is a partitioned CRL with a critical IDP (RFC 5280 §5.2.5).
   */
  shards?: CrlShard[];
}

export interface CrlIssuerSource {
  /** Every issuer that may need a CRL: active ones and those that stopped issuing. */
  listCrlIssuers(): Promise<CrlIssuer[]>;
}

/** A CRL owed for an issuer shard, as read before the CRL's entries are (owed_work, kind `crl`). */
export interface OwedCrlClaim {
  /** When the oldest owing that no saved CRL covers yet was recorded. */
  owedSince: Date;
  /**
   * Called once a CRL whose entries were read after the claim is saved: 'settled' if nothing was
   * owed since, else 'remaining' (owed again during the run: another CRL is due).
   */
  settle(claimedAt: Date): Promise<'settled' | 'remaining'>;
}

/** The outbox of owed CRLs (src/db/owed-work.repository.ts, adapted in src/cli/revocation.ts). */
export interface OwedCrls {
  list(): Promise<{ issuerId: string; shard: number; owedSince: Date }[]>;
  /** Null when no CRL is owed for the issuer shard. */
  claim(issuerId: string, shard: number): Promise<OwedCrlClaim | null>;
  /** Counts a failed attempt on the owed row (for operators); a no-op when nothing is owed. */
  recordFailure(issuerId: string, shard: number, error: unknown): Promise<void>;
}

export interface Timers {
  setTimeout(callback: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const realTimers: Timers = {
  setTimeout(callback, ms) {
    const handle = setTimeout(callback, ms);
    // The scheduler never keeps a process alive on its own: `serve` has its HTTP server for that.
    handle.unref();
    return handle;
  },
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
};

export interface CrlSchedulerOptions {
  issuers: CrlIssuerSource;
  entries: RevokedEntrySource;
  store: CrlStore;
  clock: Clock;
  /** Without it, nodes may both sign a CRL now and then; the store keeps the newer. */
  lock?: CrlWriterLock;
  /** CRLs owed by committed revocations; without it, only notifyRevocation says one is owed. */
  owed?: OwedCrls;
  /**
   * How often owed CRLs are looked for (owed on other nodes, or by a process that died).
   * Default: the debounce, kept between 100 ms and 60 s.
   */
  owedPollMs?: number;
  /**
   * Whether the issuer's key can sign now (its partition answers, unsealed). After a failed run it
   * is asked every `probeMs`, and the CRL is made as soon as it answers true, instead of waiting
   * out the retry delay.
   */
  signerReady?: (issuerId: string) => Promise<boolean>;
  /** Default 1 s. */
  probeMs?: number;
  /** Recorded as generatedBy. */
  nodeId?: string;
  timers?: Timers;
  /** nextUpdate - thisUpdate. Default 24 h (signet.yaml crl.validity). */
  validityMs?: number;
  /** Longest wait between a revocation and the CRL that lists it. Default 100 ms (crl.debounce). */
  debounceMs?: number;
  /**
   * With it, delta CRLs (signet.yaml crl.deltaInterval): one at least this often (valid for twice
   * as long) and one for each revocation, which no longer remakes the complete CRL.
   */
  deltaIntervalMs?: number;
  /** How often the issuer list is read again (new issuers, issuers that stopped). Default 60 s. */
  rescanMs?: number;
  /** First retry delay after a failure, doubled up to `maxRetryMs`. Defaults 5 s and 5 min. */
  retryMs?: number;
  maxRetryMs?: number;
  /** How long entries stay past the point RFC 5280 §3.3 allows removing them. Default 1 h. */
  removalMarginMs?: number;
  pageSize?: number;
  onPublished?: (crl: PublishedCrl) => void;
  /** Failures are retried; this hook logs them (never with key material: there is none here). */
  onError?: (error: unknown, issuerId: string) => void;
}
