import { createHash } from 'node:crypto';
import type { Clock } from '../lib/clock.ts';
import type { OcspAnswer } from './ocsp-responder.ts';

/**
 * Pre-signed OCSP responses (issue #27; RFC 5019 §2.2: a responder may answer from responses
 * signed ahead of time). A response to a request without a nonce is signed the first time its
 * CertID is asked for (concurrent requests share the one signature), stored (the database, so
 * every node and the next start serve it), and kept in a bounded in-memory LRU for the hot ones;
 * it is signed again once it is older than `refreshFraction` of its validity while it is still
 * asked for. A revocation calls `invalidate(serial)` on every node: the copy in memory goes, a
 * load or signature in flight is not kept, and the stored rows are already stale (same
 * transaction as the revocation), so the next request gets a response signed after it.
 */

export interface StoredOcspResponse {
  certIdDer: Uint8Array;
  serial: string;
  issuerId: string;
  responseDer: Uint8Array;
  certStatus: 'good' | 'revoked';
  producedAt: Date;
  nextUpdate: Date;
  /** Set by a revocation: never served, signed again. */
  stale: boolean;
}

/** The certificate's state a response was signed from: it is stored only if that is still it. */
export interface StatusBasis {
  status: string;
  statusChangedAt: Date | undefined;
}

/** Where pre-signed responses are kept across nodes and restarts (src/db/ocsp-responses.repository.ts). */
export interface PresignedStore {
  find(certIdSha256: Uint8Array): Promise<StoredOcspResponse | null>;
  /** False when the certificate's state changed since `basis` (the response is then not kept). */
  store(
    response: Omit<StoredOcspResponse, 'stale'> & { certIdSha256: Uint8Array },
    basis: StatusBasis,
  ): Promise<boolean>;
  listForSerial(serial: string): Promise<StoredOcspResponse[]>;
}

/** What the responder signs for one CertID: an answer, and the state it was made from when successful. */
export interface SignedOne {
  answer: OcspAnswer;
  basis?: StatusBasis;
}

export interface PresignedResponsesOptions {
  clock: Clock;
  /** Signs a response for a CertID (DER) now, or answers why not (unauthorized, tryLater...). */
  sign(certIdDer: Uint8Array): Promise<SignedOne>;
  /** Absent: kept in memory only. */
  store?: PresignedStore;
  /** Entries of the in-memory LRU (signet.yaml ocsp.cacheEntries). Default 100,000. */
  maxEntries?: number;
  /** A response is signed again once this fraction of its validity has passed. Default 0.4. */
  refreshFraction?: number;
  onError?: (error: unknown) => void;
}

export interface PresignedResponses {
  /**
   * The pre-signed response for a CertID (DER, with its canonical serial). `requestKey` (the
   * request's bytes, hex) makes the same request bytes a memory hit next time, unparsed.
   */
  get(certIdDer: Uint8Array, serial: string, requestKey?: string): Promise<OcspAnswer>;
  /** The answer for these request bytes if it is in memory and fresh; undefined otherwise. */
  peek(requestKey: string): OcspAnswer | undefined;
  /** Signs a CertID's response and stores it, unless a fresh one is stored (preSign: all). */
  prepare(certIdDer: Uint8Array, serial: string): Promise<void>;
  /** Signs again every stored response of a serial (a revocation's owed work). */
  resign(serial: string): Promise<void>;
  invalidate(serial: string): void;
  clear(): void;
  /** Entries in memory (for tests and metrics). */
  size(): number;
}

interface Entry {
  answer: OcspAnswer;
  certIdDer: Uint8Array;
  serial: string;
  refreshAt: number;
  expiresAt: number;
}

interface Flight {
  serial: string;
  promise: Promise<OcspAnswer>;
  cancelled: boolean;
}

type LoadMode = 'serve' | 'refresh' | 'resign';

const sha256 = (bytes: Uint8Array) => new Uint8Array(createHash('sha256').update(bytes).digest());
const hex = (bytes: Uint8Array) =>
  Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');

/** A strong validator of the response bytes (RFC 9110 §8.8.3), for If-None-Match. */
export const entityTag = (der: Uint8Array): string =>
  `"${createHash('sha256').update(der).digest('base64url').slice(0, 27)}"`;

export function answerFromStored(
  row: Omit<StoredOcspResponse, 'stale' | 'certIdDer' | 'serial'>,
): OcspAnswer {
  return {
    der: row.responseDer,
    status: 'successful',
    issuerId: row.issuerId,
    producedAt: row.producedAt,
    thisUpdate: row.producedAt,
    nextUpdate: row.nextUpdate,
    nonce: false,
    certStatuses: [row.certStatus],
    etag: entityTag(row.responseDer),
  };
}

// biome-ignore lint/complexity/noExcessiveLinesPerFunction: a factory whose closures share the LRU, its index and the flights; each is short
export function createPresignedResponses(options: PresignedResponsesOptions): PresignedResponses {
  const { clock, store, onError } = options;
  const maxEntries = options.maxEntries ?? 100_000;
  const refreshFraction = options.refreshFraction ?? 0.4;
  if (!Number.isInteger(maxEntries) || maxEntries < 1)
    throw new RangeError('maxEntries must be a positive integer');
  if (!(refreshFraction > 0 && refreshFraction < 1))
    throw new RangeError('refreshFraction must be in (0, 1)');

  /** Request bytes (hex) -> entry; Map order is the LRU order. */
  const lru = new Map<string, Entry>();
  /** Serial -> the LRU keys holding its responses, so a revocation drops them without a scan. */
  const bySerial = new Map<string, Set<string>>();
  /** CertID (hex) -> the load or signature in flight (single-flight). */
  const flights = new Map<string, Flight>();

  const refreshAt = (producedAt: Date, nextUpdate: Date) =>
    producedAt.getTime() + (nextUpdate.getTime() - producedAt.getTime()) * refreshFraction;

  function forget(key: string): void {
    const entry = lru.get(key);
    if (!entry) return;
    lru.delete(key);
    const keys = bySerial.get(entry.serial);
    keys?.delete(key);
    if (keys?.size === 0) bySerial.delete(entry.serial);
  }

  function remember(key: string, answer: OcspAnswer, certIdDer: Uint8Array, serial: string): void {
    forget(key);
    lru.set(key, {
      answer,
      certIdDer,
      serial,
      refreshAt: refreshAt(answer.producedAt!, answer.nextUpdate!),
      expiresAt: answer.nextUpdate!.getTime(),
    });
    const keys = bySerial.get(serial) ?? new Set<string>();
    keys.add(key);
    bySerial.set(serial, keys);
    while (lru.size > maxEntries) forget(lru.keys().next().value!);
  }

  /** A fresh stored response is served as is; `refresh` wants one younger than the refresh point. */
  function usable(row: StoredOcspResponse | null, mode: LoadMode, now: number): row is StoredOcspResponse {
    if (!row || row.stale || now >= row.nextUpdate.getTime()) return false;
    return mode === 'serve' || now < refreshAt(row.producedAt, row.nextUpdate);
  }

  async function loadOrSign(certIdDer: Uint8Array, serial: string, mode: LoadMode, flight: Flight) {
    const certIdSha256 = sha256(certIdDer);
    if (store && mode !== 'resign') {
      const row = await store.find(certIdSha256);
      if (usable(row, mode, clock.now().getTime())) return answerFromStored(row);
    }
    const { answer, basis } = await options.sign(certIdDer);
    const state = answer.certStatuses?.[0];
    if (answer.status !== 'successful' || !basis || (state !== 'good' && state !== 'revoked')) {
      flight.cancelled = true; // not a response to keep: the next request asks again
      return answer;
    }
    const kept = { ...answer, etag: entityTag(answer.der) };
    if (store) {
      try {
        const stored = await store.store(
          {
            certIdSha256,
            certIdDer,
            serial,
            issuerId: answer.issuerId!,
            responseDer: answer.der,
            certStatus: state,
            producedAt: answer.producedAt!,
            nextUpdate: answer.nextUpdate!,
          },
          basis,
        );
        // The certificate changed meanwhile: answer this once, keep nothing.
        if (!stored) flight.cancelled = true;
      } catch (error) {
        onError?.(error);
      }
    }
    return kept;
  }

  function load(
    certIdDer: Uint8Array,
    serial: string,
    mode: LoadMode,
    requestKey?: string,
  ): Promise<OcspAnswer> {
    const flightKey = hex(certIdDer);
    const current = flights.get(flightKey);
    if (current && mode !== 'resign') {
      return requestKey === undefined
        ? current.promise
        : current.promise.then((answer) => {
            if (!current.cancelled && answer.etag) remember(requestKey, answer, certIdDer, serial);
            return answer;
          });
    }
    const flight: Flight = { serial, cancelled: false, promise: Promise.resolve(undefined as never) };
    flight.promise = loadOrSign(certIdDer, serial, mode, flight)
      .then((answer) => {
        if (!flight.cancelled && requestKey !== undefined) remember(requestKey, answer, certIdDer, serial);
        if (!flight.cancelled && mode === 'refresh') {
          // Every request form of this CertID now gets the new response.
          for (const key of [...(bySerial.get(serial) ?? [])]) {
            const entry = lru.get(key);
            if (entry && hex(entry.certIdDer) === flightKey) remember(key, answer, certIdDer, serial);
          }
        }
        return answer;
      })
      .finally(() => {
        if (flights.get(flightKey) === flight) flights.delete(flightKey);
      });
    flights.set(flightKey, flight);
    return flight.promise;
  }

  function peek(requestKey: string): OcspAnswer | undefined {
    const entry = lru.get(requestKey);
    if (!entry) return undefined;
    const now = clock.now().getTime();
    if (now >= entry.expiresAt) {
      forget(requestKey);
      return undefined;
    }
    lru.delete(requestKey);
    lru.set(requestKey, entry);
    if (now >= entry.refreshAt && !flights.has(hex(entry.certIdDer))) {
      load(entry.certIdDer, entry.serial, 'refresh').catch((error) => onError?.(error));
    }
    return entry.answer;
  }

  return {
    peek,
    get(certIdDer, serial, requestKey) {
      const hit = requestKey === undefined ? undefined : peek(requestKey);
      return hit ? Promise.resolve(hit) : load(certIdDer, serial, 'serve', requestKey);
    },
    async prepare(certIdDer, serial) {
      await load(certIdDer, serial, 'refresh');
    },
    async resign(serial) {
      this.invalidate(serial);
      if (!store) return;
      for (const row of await store.listForSerial(serial)) {
        await load(row.certIdDer, serial, 'resign');
      }
    },
    invalidate(serial) {
      for (const key of [...(bySerial.get(serial) ?? [])]) forget(key);
      for (const [key, flight] of flights) {
        if (flight.serial !== serial) continue;
        flight.cancelled = true;
        flights.delete(key);
      }
    },
    clear() {
      lru.clear();
      bySerial.clear();
      for (const flight of flights.values()) flight.cancelled = true;
      flights.clear();
    },
    size: () => lru.size,
  };
}
