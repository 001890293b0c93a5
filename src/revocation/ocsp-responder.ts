import { partitionUnavailable } from '../hsm/unavailable.ts';
import type { Clock } from '../lib/clock.ts';
import { wholeSeconds } from '../lib/clock.ts';
import { isConnectionFailure } from '../lib/errors.ts';
import {
  encodeResponseData,
  encodeSingleResponse,
  encodeSuccessfulResponse,
  errorResponse,
  type OcspResponseStatusName,
  responderCertificates,
  responderIdByKey,
} from '../x509/ocsp-encoder.ts';
import { type IssuerFacts, readIssuerFacts } from './issuer.ts';
import { createPresignedResponses, type PresignedResponses, type PresignedStore } from './ocsp-presigned.ts';
import type { SigningBudget } from './ocsp-rate-limit.ts';
import {
  type CertIdLookup,
  decodeOcspGetPath,
  type ParsedCertId,
  type ParsedRequest,
  parseCertId,
  parseOcspRequest,
} from './ocsp-request.ts';
import type { RevocationReason } from './reasons.ts';
import { parseRevocationSerial } from './serial.ts';
import {
  assertPurpose,
  type RevocationSigner,
  type SignatureScheme,
  signatureSchemeFor,
  signWith,
} from './signing.ts';

/**
 * The OCSP responder (RFC 6960, profiled by RFC 5019): request bytes in, DER OCSPResponse out,
 * always. Whatever goes wrong becomes an OCSP status, never an exception, JSON or an HTTP 500:
 *
 *   malformedRequest  unparsable DER, trailing bytes, version other than v1, no or too many
 *                     CertIDs, a nonce outside 1..128 octets (RFC 9654 §2.1), duplicate or
 *                     unknown critical extensions (RFC 6960 §4.4)
 *   unauthorized      a CertID whose issuer this responder does not serve, CertIDs of several
 *                     issuers in one request (RFC 6960 §2.3), or a serial this CA never issued
 *                     (RFC 5019 §2.2.3): unsigned, so a guessed serial costs no signature
 *   tryLater          the partition is unreachable, sealed or logged out, the database is down,
 *                     an answer takes longer than `timeoutMs`, or a client over its budget of
 *                     signatures on the spot asks about several CertIDs
 *   internalError     anything else; details go to `onError`, never into the response
 *
 * A request with one CertID and no nonce is answered from a pre-signed response
 * (ocsp-presigned.ts): signed the first time it is asked for, then served without a signature or
 * (when in memory) a database read until it is refreshed or a revocation replaces it. A request
 * with a nonce or several CertIDs is signed on the spot (RFC 9654: the nonce echoed) within the
 * client's budget (`signingBudget`); over it, one CertID gets the pre-signed response without the
 * nonce (RFC 9654 §2.1 allows a responder to leave it out) and several get tryLater.
 *
 * A successful response is a BasicOCSPResponse signed by the issuer's key (purpose 'ocsp') or its
 * delegated responder's (RFC 6960 §4.2.2.2, whose certificate goes in `certs`), responderID byKey
 * (RFC 6960 §4.2.2.3), producedAt/thisUpdate/nextUpdate in whole seconds, one SingleResponse per
 * CertID echoing it as sent (SHA-1 and SHA-256 alike).
 */

export { OcspMalformedError } from './ocsp-request.ts';
export type { CertIdLookup };
export { decodeOcspGetPath, errorResponse, type OcspResponseStatusName, parseOcspRequest };

export interface OcspIssuer {
  /** The issuer id (slug). */
  id: string;
  /** The issuer certificate, DER. */
  certificate: Uint8Array;
  /** The issuer's key handle with purpose 'ocsp' (or the delegated responder's key). */
  signer: RevocationSigner;
  /**
   * A delegated responder's certificate (issued by this issuer, EKU id-kp-OCSPSigning, RFC 6960
   * §4.2.2.2) when `signer` holds its key: it is sent in `certs` and names the responder.
   */
  responderCertificate?: Uint8Array;
}

/** Finds the issuer a CertID names (by issuerNameHash and issuerKeyHash). */
export interface OcspIssuerDirectory {
  find(certId: CertIdLookup): OcspIssuer | undefined | Promise<OcspIssuer | undefined>;
}

/** The certificates repository's `findStatus` (src/db/certificates.repository.ts). */
export interface CertificateStatusRecord {
  issuerId: string;
  status: string;
  revokedAt: Date | null;
  revocationReason: RevocationReason | null;
  /** Last change of status: a pre-signed response is stored only if it is still this. */
  statusChangedAt?: Date;
}

export interface CertificateStatusSource {
  /** The serial is canonical (lowercase hex of the INTEGER content octets). */
  findStatus(serial: string): Promise<CertificateStatusRecord | null | undefined>;
}

export interface OcspResponderOptions {
  issuers: OcspIssuerDirectory | readonly OcspIssuer[];
  status: CertificateStatusSource;
  clock: Clock;
  /** nextUpdate - thisUpdate. Default 4 h (signet.yaml ocsp.validity). */
  validityMs?: number;
  /** CertIDs per request; RFC 5019 §2.1.1 clients send one. Default 20. */
  maxCertIds?: number;
  /** Default 16 KiB. */
  maxRequestBytes?: number;
  /** Longest wait for the status source and the signer before answering tryLater. Default 10 s. */
  timeoutMs?: number;
  /** Decides whether a failure is transient (tryLater) rather than internal. */
  isTransient?: (error: unknown) => boolean;
  /** Logs failures; the response never carries their details. */
  onError?: (
    error: unknown,
    context: { stage: 'lookup' | 'status' | 'sign' | 'store'; issuerId?: string },
  ) => void;
  /** Where pre-signed responses are kept (the database); absent: in memory only. */
  store?: PresignedStore;
  /** Pre-signed responses kept in memory (signet.yaml ocsp.cacheEntries). Default 100,000. */
  cacheEntries?: number;
  /** Signatures on the spot per client (ocsp.nonceRateLimit.perMinute); absent: unlimited. */
  signingBudget?: SigningBudget;
}

export interface OcspAnswer {
  der: Uint8Array;
  status: OcspResponseStatusName;
  /** Set on successful answers. */
  issuerId?: string;
  producedAt?: Date;
  thisUpdate?: Date;
  nextUpdate?: Date;
  /** Whether a nonce was echoed: such a response is for one client and must not be cached. */
  nonce: boolean;
  /** Per CertID, in request order, on successful answers. */
  certStatuses?: ('good' | 'revoked' | 'unknown')[];
  /** A strong entity tag of `der`, on pre-signed answers (RFC 5019 §6.2 caching). */
  etag?: string;
}

/** Who asks: the client's address key (src/api/client-address.ts), for the signing budget. */
export interface OcspRequestContext {
  client?: string;
}

export interface OcspResponder {
  /** DER OCSPResponse for a DER OCSPRequest (POST body). Never throws. */
  respond(request: Uint8Array, context?: OcspRequestContext): Promise<Uint8Array>;
  /** The same with what an HTTP edge needs for RFC 5019 §6 caching headers. Never throws. */
  answer(request: Uint8Array, context?: OcspRequestContext): Promise<OcspAnswer>;
  /** For GET /ocsp/{path}: decodes the path (decodeOcspGetPath) and answers. Never throws. */
  answerGetPath(path: string, context?: OcspRequestContext): Promise<OcspAnswer>;
  /**
   * Forgets pre-signed responses about this serial held in memory (any form
   * `parseRevocationSerial` accepts): a revocation calls it on every node.
   */
  invalidate(serial: string): void;
  /** Forgets every response in memory (e.g. notifications may have been missed). */
  clearCache(): void;
  /** Signs again the stored responses of a serial (what a revocation owes). */
  resign(serial: string): Promise<void>;
  /** Signs and stores the response to a CertID (DER) unless a fresh one is stored (preSign: all). */
  prepare(certIdDer: Uint8Array): Promise<void>;
  /** Responses held in memory. */
  cacheSize(): number;
}

class OcspUnauthorizedError extends Error {}

const equalBytes = (a: Uint8Array, b: Uint8Array) => Buffer.from(a).equals(Buffer.from(b));

/** A directory over a fixed list of issuers, matching every supported CertID hash. */
export function createOcspIssuerDirectory(issuers: readonly OcspIssuer[]): OcspIssuerDirectory {
  const entries = issuers.map((issuer) => ({ issuer, facts: readIssuerFacts(issuer.certificate) }));
  return {
    find({ hash, issuerNameHash, issuerKeyHash }) {
      // Not secret: a plain comparison. Both hashes must match (RFC 6960 §4.1.1): issuers may
      // share a name across keys (rollover) or a key across names.
      return entries.find(
        ({ facts }) =>
          equalBytes(facts.nameHash[hash], issuerNameHash) && equalBytes(facts.keyHash[hash], issuerKeyHash),
      )?.issuer;
    },
  };
}

/** Database or network failures that pass (the partition's are src/hsm/unavailable.ts's): tryLater. */
const TRANSIENT_CODES = new Set([
  'db.unavailable',
  'db.locked',
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'ENOENT',
]);

/**
 * Default transient test, duck-typed on `code` along the cause chain (an HsmError, a StorageError,
 * an AppError of category unavailable, a driver's SQLSTATE class 08 / 57P0x / 53300, a socket errno).
 */
export function isTransientFailure(error: unknown): boolean {
  if (partitionUnavailable(error) || isConnectionFailure(error)) return true;
  let current: unknown = error;
  for (let depth = 0; depth < 6 && current && typeof current === 'object'; depth++) {
    const { code, category, cause } = current as { code?: unknown; category?: unknown; cause?: unknown };
    if (typeof code === 'string' && (TRANSIENT_CODES.has(code) || /^(08|57P0|53300)/.test(code))) return true;
    if (category === 'unavailable') return true;
    current = cause;
  }
  return false;
}

class TimeoutError extends Error {
  readonly code = 'ETIMEDOUT';
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new TimeoutError(`no answer within ${ms} ms`)), ms);
    timer.unref();
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

interface PreparedIssuer {
  facts: IssuerFacts;
  scheme: SignatureScheme;
  /** [2] KeyHash (RFC 6960 §4.2.1). */
  responderId: Uint8Array;
  /** [0] EXPLICIT SEQUENCE OF Certificate, or nothing. */
  certs: Uint8Array | undefined;
}

type CertState =
  | { name: 'good' }
  | { name: 'revoked'; revokedAt: Date; reason: RevocationReason }
  | { name: 'unissued' };

const hex = (bytes: Uint8Array) =>
  Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');

// biome-ignore lint/complexity/noExcessiveLinesPerFunction: a factory: its closures share the prepared issuers and the pre-signed responses; each is short
export function createOcspResponder(options: OcspResponderOptions): OcspResponder {
  const {
    status,
    clock,
    validityMs = 4 * 3_600_000,
    maxCertIds = 20,
    maxRequestBytes = 16 * 1024,
    timeoutMs = 10_000,
    isTransient = isTransientFailure,
    onError,
    signingBudget,
  } = options;
  if (!Number.isFinite(validityMs) || validityMs < 1000)
    throw new RangeError('validityMs must be at least 1 second');
  if (!Number.isInteger(maxCertIds) || maxCertIds < 1)
    throw new RangeError('maxCertIds must be a positive integer');
  const directory: OcspIssuerDirectory = Array.isArray(options.issuers)
    ? createOcspIssuerDirectory(options.issuers as readonly OcspIssuer[])
    : (options.issuers as OcspIssuerDirectory);
  const prepared = new WeakMap<OcspIssuer, PreparedIssuer>();
  // A fixed list is checked now: a wrong certificate or key handle fails at start, not per request.
  if (Array.isArray(options.issuers))
    for (const issuer of options.issuers as readonly OcspIssuer[]) prepare(issuer);

  const presigned: PresignedResponses = createPresignedResponses({
    clock,
    ...(options.store ? { store: options.store } : {}),
    ...(options.cacheEntries !== undefined ? { maxEntries: options.cacheEntries } : {}),
    sign: signOne,
    onError: (error) => onError?.(error, { stage: 'store' }),
  });

  function prepare(issuer: OcspIssuer): PreparedIssuer {
    let entry = prepared.get(issuer);
    if (!entry) {
      assertPurpose(issuer.signer.key, 'ocsp');
      const facts = readIssuerFacts(issuer.certificate);
      const responder = issuer.responderCertificate ? readIssuerFacts(issuer.responderCertificate) : facts;
      entry = {
        facts,
        scheme: signatureSchemeFor(issuer.signer.key),
        responderId: responderIdByKey(responder.keyHash.sha1),
        certs: issuer.responderCertificate ? responderCertificates(responder.certificate) : undefined,
      };
      prepared.set(issuer, entry);
    }
    return entry;
  }

  function failure(status: Exclude<OcspResponseStatusName, 'successful'>): OcspAnswer {
    return { der: errorResponse(status), status, nonce: false };
  }

  function failed(error: unknown, stage: 'lookup' | 'status' | 'sign', issuerId?: string): OcspAnswer {
    onError?.(error, { stage, ...(issuerId ? { issuerId } : {}) });
    return failure(isTransient(error) ? 'tryLater' : 'internalError');
  }

  async function certState(issuer: OcspIssuer, serial: string | undefined) {
    if (serial === undefined) return { state: { name: 'unissued' } as CertState };
    const record = await status.findStatus(serial);
    // Never issued here, issued by another issuer, a reservation whose certificate is not stored
    // yet or one never signed: not ours to sign for (RFC 5019 §2.2.3 unauthorized).
    if (!record || record.issuerId !== issuer.id) return { state: { name: 'unissued' } as CertState };
    const basis = { status: record.status, statusChangedAt: record.statusChangedAt };
    if (record.status === 'good') return { state: { name: 'good' } as CertState, basis };
    if (record.status === 'revoked' && record.revokedAt && record.revocationReason) {
      const state: CertState = {
        name: 'revoked',
        revokedAt: record.revokedAt,
        reason: record.revocationReason,
      };
      return { state, basis };
    }
    return { state: { name: 'unissued' } as CertState };
  }

  async function sign(
    issuer: OcspIssuer,
    certIds: ParsedCertId[],
    states: Exclude<CertState, { name: 'unissued' }>[],
    nonce: Uint8Array | undefined,
  ): Promise<OcspAnswer> {
    try {
      const ready = prepare(issuer);
      const producedAt = wholeSeconds(clock.now());
      const nextUpdate = new Date(producedAt.getTime() + Math.floor(validityMs / 1000) * 1000);
      const responses = certIds.map((certId, i) =>
        encodeSingleResponse(certId.der, states[i]!, producedAt, nextUpdate),
      );
      const responseData = encodeResponseData({
        responderId: ready.responderId,
        producedAt,
        responses,
        nonce,
      });
      const signature = await withTimeout(signWith(issuer.signer, ready.scheme, responseData), timeoutMs);
      const der = encodeSuccessfulResponse({
        responseData,
        signatureAlgorithm: ready.scheme.algorithmIdentifier,
        signature,
        certs: ready.certs,
      });
      return {
        der,
        status: 'successful',
        issuerId: issuer.id,
        producedAt,
        thisUpdate: producedAt,
        nextUpdate,
        nonce: nonce !== undefined,
        certStatuses: states.map((state) => state.name),
      };
    } catch (error) {
      return failed(error, 'sign', issuer.id);
    }
  }

  /** Looks up, checks and signs the CertIDs of a request now. */
  async function signNow(parsed: ParsedRequest): Promise<{ answer: OcspAnswer; basis?: CertStateBasis }> {
    let issuer: OcspIssuer | undefined;
    try {
      issuer = await withTimeout(findIssuer(parsed.certIds), timeoutMs);
    } catch (error) {
      if (error instanceof OcspUnauthorizedError) return { answer: failure('unauthorized') };
      return { answer: failed(error, 'lookup') };
    }
    if (!issuer) return { answer: failure('unauthorized') };
    const found = issuer;
    let looked: Awaited<ReturnType<typeof certState>>[];
    try {
      looked = await withTimeout(
        Promise.all(parsed.certIds.map((c) => certState(found, c.serial))),
        timeoutMs,
      );
    } catch (error) {
      return { answer: failed(error, 'status', found.id) };
    }
    const states = looked.map((entry) => entry.state);
    if (states.some((state) => state.name === 'unissued')) return { answer: failure('unauthorized') };
    const answer = await sign(
      found,
      parsed.certIds,
      states as Exclude<CertState, { name: 'unissued' }>[],
      parsed.nonce,
    );
    return { answer, ...(looked.length === 1 && looked[0]!.basis ? { basis: looked[0]!.basis } : {}) };
  }

  function signOne(certIdDer: Uint8Array) {
    return signNow({ certIds: [parseCertId(certIdDer)], nonce: undefined });
  }

  async function answer(request: Uint8Array, context: OcspRequestContext = {}): Promise<OcspAnswer> {
    // The same bytes as an earlier request without a nonce: answered from memory, unparsed.
    const requestKey = hex(request);
    const hit = presigned.peek(requestKey);
    if (hit) return hit;
    let parsed: ParsedRequest;
    try {
      parsed = parseOcspRequest(request, { maxCertIds, maxRequestBytes });
    } catch {
      return failure('malformedRequest');
    }
    const single = parsed.certIds.length === 1 ? parsed.certIds[0]! : undefined;
    if (parsed.nonce === undefined && single) return presignedAnswer(single, requestKey);
    if (!signingBudget || (await signingBudget.take(context.client ?? 'unknown')))
      return (await signNow(parsed)).answer;
    // Over the budget: the shared response without the nonce (RFC 9654 §2.1), or tryLater.
    return single ? presignedAnswer(single, undefined) : failure('tryLater');
  }

  async function presignedAnswer(certId: ParsedCertId, requestKey: string | undefined): Promise<OcspAnswer> {
    // A CertID no issuer can match, or a serial no certificate can have: unauthorized, unsigned.
    if (!certId.lookup || certId.serial === undefined) return failure('unauthorized');
    return presigned.get(certId.der, certId.serial, requestKey);
  }

  async function findIssuer(certIds: ParsedCertId[]): Promise<OcspIssuer | undefined> {
    let found: OcspIssuer | undefined;
    for (const certId of certIds) {
      if (!certId.lookup) throw new OcspUnauthorizedError();
      const issuer = await directory.find(certId.lookup);
      if (!issuer) throw new OcspUnauthorizedError();
      if (found && found.id !== issuer.id) throw new OcspUnauthorizedError();
      found = issuer;
    }
    return found;
  }

  async function safeAnswer(request: Uint8Array, context?: OcspRequestContext): Promise<OcspAnswer> {
    try {
      return await answer(request, context);
    } catch (error) {
      onError?.(error, { stage: 'sign' });
      return failure('internalError');
    }
  }

  return {
    answer: safeAnswer,
    async respond(request, context) {
      return (await safeAnswer(request, context)).der;
    },
    async answerGetPath(path, context) {
      let request: Uint8Array;
      try {
        request = decodeOcspGetPath(path);
      } catch {
        return failure('malformedRequest');
      }
      return safeAnswer(request, context);
    },
    invalidate(serial) {
      presigned.invalidate(parseRevocationSerial(serial));
    },
    clearCache() {
      presigned.clear();
    },
    resign: (serial) => presigned.resign(parseRevocationSerial(serial)),
    async prepare(certIdDer) {
      const certId = parseCertId(certIdDer);
      if (certId.serial !== undefined) await presigned.prepare(certId.der, certId.serial);
    },
    cacheSize: () => presigned.size(),
  };
}

type CertStateBasis = { status: string; statusChangedAt: Date | undefined };
