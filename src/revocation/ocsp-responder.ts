import { id_pkix_ocsp_nonce, OCSPRequest } from '@peculiar/asn1-ocsp';
import { AsnConvert } from '@peculiar/asn1-schema';
import type { Extension } from '@peculiar/asn1-x509';
import { partitionUnavailable } from '../hsm/unavailable.ts';
import type { Clock } from '../lib/clock.ts';
import { wholeSeconds } from '../lib/clock.ts';
import { readChildrenOf, readTlvAt, TAG, tlvEncoding } from '../x509/der.ts';
import {
  encodeResponseData,
  encodeSingleResponse,
  encodeSuccessfulResponse,
  errorResponse,
  type OcspResponseStatusName,
  responderCertificates,
  responderIdByKey,
} from '../x509/ocsp-encoder.ts';
import { CERT_ID_HASH_OIDS, type CertIdHash, type IssuerFacts, readIssuerFacts } from './issuer.ts';
import type { RevocationReason } from './reasons.ts';
import { parseRevocationSerial, serialFromIntegerContent } from './serial.ts';
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
 *   unauthorized      a CertID whose issuer this responder does not serve, or CertIDs of several
 *                     issuers in one request (RFC 6960 §2.3: "not capable of responding
 *                     authoritatively"; one response carries one signature, and each issuer signs
 *                     its own)
 *   tryLater          the partition is unreachable, sealed or logged out, the database is down,
 *                     or an answer takes longer than `timeoutMs`
 *   internalError     anything else; details go to `onError`, never into the response
 *
 * A successful response is a BasicOCSPResponse signed by the issuer's own key (purpose 'ocsp'),
 * responderID byKey (RFC 6960 §4.2.2.3, SHA-1 of the issuer's public key), no certificates,
 * producedAt/thisUpdate/nextUpdate in whole seconds, one SingleResponse per CertID echoing it
 * as sent (SHA-1 and SHA-256 alike), and the request's nonce echoed (RFC 9654). A serial the
 * issuer never issued (or whose certificate is not yet or no longer stored) is `unknown`, never
 * `good`.
 */

export { errorResponse, type OcspResponseStatusName };

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

export interface CertIdLookup {
  hash: CertIdHash;
  issuerNameHash: Uint8Array;
  issuerKeyHash: Uint8Array;
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
  onError?: (error: unknown, context: { stage: 'lookup' | 'status' | 'sign'; issuerId?: string }) => void;
  /**
   * Keeps signed responses to requests without a nonce and answers the same request from memory
   * (no database read, no partition signature) while they are younger than `maxAgeMs` (default a
   * quarter of the validity). Off by default: whoever turns it on must call `invalidate(serial)`
   * on every revocation, on every node (the revoke use case's listener, LISTEN/NOTIFY).
   */
  // TODO(#27): built and tested, not yet turned on by the service: OCSP at scale wires it, with
  // invalidate() on every revocation on every node.
  cache?: { maxEntries?: number; maxAgeMs?: number };
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
}

export interface OcspResponder {
  /** DER OCSPResponse for a DER OCSPRequest (POST body). Never throws. */
  respond(request: Uint8Array): Promise<Uint8Array>;
  /** The same with what an HTTP edge needs for RFC 5019 §6 caching headers. Never throws. */
  answer(request: Uint8Array): Promise<OcspAnswer>;
  /** For GET /ocsp/{path}: decodes the path (decodeOcspGetPath) and answers. Never throws. */
  answerGetPath(path: string): Promise<OcspAnswer>;
  /** Forgets cached responses about this serial (any form `parseRevocationSerial` accepts). */
  // TODO(#27): called by no one until the cache is turned on (see `cache`).
  invalidate(serial: string): void;
  /** Forgets every cached response (e.g. notifications may have been missed). */
  clearCache(): void;
}

/** Raised for requests that are not OCSP requests; the responder turns it into malformedRequest. */
export class OcspMalformedError extends Error {
  readonly code = 'ocsp.malformed_request';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'OcspMalformedError';
  }
}

class OcspUnauthorizedError extends Error {}

const HASH_BY_OID = new Map<string, CertIdHash>(
  (Object.entries(CERT_ID_HASH_OIDS) as [CertIdHash, string][]).map(([name, oid]) => [oid, name]),
);
const HASH_LENGTH: Readonly<Record<CertIdHash, number>> = { sha1: 20, sha256: 32, sha384: 48, sha512: 64 };

/** RFC 9654 §2.1: Nonce ::= OCTET STRING (SIZE(1..128)). */
export const MAX_NONCE_OCTETS = 128;
/** A request path in a URL is short; anything longer than this is not an OCSP request (RFC 5019 §5). */
const MAX_GET_PATH = 8192;

/**
 * Decodes the path of GET /ocsp/{path} (RFC 6960 Appendix A.1: the URL-encoding of the base64 of
 * the DER request) into the request bytes. The path may hold `/` (base64), percent-escapes
 * (`%2B`, `%2F`, `%3D`), and `+` that a proxy turned into a space (restored, as cfssl and Boulder
 * do); base64url and missing padding are accepted. Leading slashes are dropped: a DER SEQUENCE in
 * base64 starts with `M`. Throws OcspMalformedError.
 */
export function decodeOcspGetPath(path: string): Uint8Array {
  if (typeof path !== 'string' || path.length === 0)
    throw new OcspMalformedError('the request path is empty');
  if (path.length > MAX_GET_PATH) throw new OcspMalformedError('the request path is too long');
  let text: string;
  try {
    text = decodeURIComponent(path);
  } catch (error) {
    throw new OcspMalformedError('the request path is not valid percent-encoding', { cause: error });
  }
  text = text.replace(/^\/+/, '').replaceAll(' ', '+').replaceAll('-', '+').replaceAll('_', '/');
  const match = /^([A-Za-z0-9+/]+)(={0,2})$/.exec(text);
  if (!match) throw new OcspMalformedError('the request path is not base64');
  const [, body, padding] = match as unknown as [string, string, string];
  if (padding.length > 0 ? (body.length + padding.length) % 4 !== 0 : body.length % 4 === 1) {
    throw new OcspMalformedError('the request path is not base64 of a whole number of octets');
  }
  const bytes = new Uint8Array(Buffer.from(body, 'base64'));
  if (bytes.byteLength === 0) throw new OcspMalformedError('the request is empty');
  return bytes;
}

interface ParsedCertId {
  /** The CertID exactly as received, echoed in the SingleResponse. */
  der: Uint8Array;
  /** Its canonical serial, when it is one a certificate can have. */
  serial: string | undefined;
  /** Undefined for a hash algorithm or hash lengths no issuer can match. */
  lookup: CertIdLookup | undefined;
}

interface ParsedRequest {
  certIds: ParsedCertId[];
  /** The nonce extension's extnValue contents (the DER Nonce), echoed as is. */
  nonce: Uint8Array | undefined;
}

/** RFC 6960 §4.4: an extension the responder does not understand is ignored unless critical. */
function checkExtensions(extensions: readonly Extension[] | undefined, understood: readonly string[]): void {
  const seen = new Set<string>();
  for (const extension of extensions ?? []) {
    // RFC 5280 §4.2 (which RFC 6960 §4.4 follows): one instance of an extension.
    if (seen.has(extension.extnID))
      throw new OcspMalformedError(`extension ${extension.extnID} appears twice`);
    seen.add(extension.extnID);
    if (extension.critical && !understood.includes(extension.extnID)) {
      throw new OcspMalformedError(`critical extension ${extension.extnID} is not supported`);
    }
  }
}

/** Parses and checks a DER OCSPRequest (RFC 6960 §4.1.1). Throws OcspMalformedError. */
export function parseOcspRequest(
  bytes: Uint8Array,
  { maxCertIds = 20, maxRequestBytes = 16 * 1024 }: { maxCertIds?: number; maxRequestBytes?: number } = {},
): ParsedRequest {
  if (!(bytes instanceof Uint8Array) || bytes.byteLength === 0)
    throw new OcspMalformedError('the request is empty');
  if (bytes.byteLength > maxRequestBytes) throw new OcspMalformedError('the request is too large');
  let request: OCSPRequest;
  let rawCertIds: Uint8Array[];
  try {
    const outer = readTlvAt(bytes);
    if (outer.tag !== TAG.SEQUENCE) throw new Error('not a SEQUENCE');
    if (outer.end !== bytes.byteLength) throw new Error('trailing bytes after the request');
    request = AsnConvert.parse(bytes, OCSPRequest);
    // The CertIDs as sent, to echo byte for byte: TBSRequest ::= SEQUENCE { [0] version OPTIONAL,
    // [1] requestorName OPTIONAL, requestList SEQUENCE OF Request, [2] requestExtensions OPTIONAL }.
    const tbsTlv = readChildrenOf(bytes, outer)[0]!;
    const list = readChildrenOf(bytes, tbsTlv).find((child) => child.tag === TAG.SEQUENCE);
    if (!list) throw new Error('no requestList');
    rawCertIds = readChildrenOf(bytes, list).map((single) =>
      tlvEncoding(bytes, readChildrenOf(bytes, single)[0]!),
    );
  } catch (error) {
    throw new OcspMalformedError('the request is not a DER OCSPRequest', { cause: error });
  }
  const tbs = request.tbsRequest;
  if (tbs.version !== 0) throw new OcspMalformedError(`unsupported request version ${tbs.version}`);
  if (tbs.requestList.length === 0) throw new OcspMalformedError('the request names no certificate');
  if (tbs.requestList.length > maxCertIds) {
    throw new OcspMalformedError(`the request names more than ${maxCertIds} certificates`);
  }
  checkExtensions(tbs.requestExtensions, [id_pkix_ocsp_nonce]);
  let nonce: Uint8Array | undefined;
  const nonceExtension = tbs.requestExtensions?.find((extension) => extension.extnID === id_pkix_ocsp_nonce);
  if (nonceExtension) {
    const value = new Uint8Array(nonceExtension.extnValue.buffer);
    try {
      const inner = readTlvAt(value);
      if (inner.tag !== TAG.OCTET_STRING || inner.end !== value.byteLength)
        throw new Error('not an OCTET STRING');
      const length = inner.end - inner.contentStart;
      if (length < 1 || length > MAX_NONCE_OCTETS) throw new Error(`a nonce of ${length} octets`);
    } catch (error) {
      throw new OcspMalformedError(
        `the nonce must be an OCTET STRING of 1 to ${MAX_NONCE_OCTETS} octets (RFC 9654)`,
        {
          cause: error,
        },
      );
    }
    nonce = value;
  }
  if (rawCertIds.length !== tbs.requestList.length)
    throw new OcspMalformedError('the request list is inconsistent');
  const certIds = tbs.requestList.map((single, index): ParsedCertId => {
    checkExtensions(single.singleRequestExtensions, []);
    const certId = single.reqCert;
    const hash = HASH_BY_OID.get(certId.hashAlgorithm.algorithm);
    const issuerNameHash = new Uint8Array(certId.issuerNameHash.buffer);
    const issuerKeyHash = new Uint8Array(certId.issuerKeyHash.buffer);
    const lookup =
      hash &&
      issuerNameHash.byteLength === HASH_LENGTH[hash] &&
      issuerKeyHash.byteLength === HASH_LENGTH[hash]
        ? { hash, issuerNameHash, issuerKeyHash }
        : undefined;
    return {
      der: rawCertIds[index]!.slice(),
      serial: serialFromIntegerContent(new Uint8Array(certId.serialNumber)),
      lookup,
    };
  });
  return { certIds, nonce };
}

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
  if (partitionUnavailable(error)) return true;
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

// biome-ignore lint/complexity/noExcessiveLinesPerFunction: a factory: its closures share the prepared issuers and the cache; each is short
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
  } = options;
  if (!Number.isFinite(validityMs) || validityMs < 1000)
    throw new RangeError('validityMs must be at least 1 second');
  if (!Number.isInteger(maxCertIds) || maxCertIds < 1)
    throw new RangeError('maxCertIds must be a positive integer');
  const directory: OcspIssuerDirectory = Array.isArray(options.issuers)
    ? createOcspIssuerDirectory(options.issuers as readonly OcspIssuer[])
    : (options.issuers as OcspIssuerDirectory);
  const prepared = new WeakMap<OcspIssuer, PreparedIssuer>();
  const cacheMax = options.cache ? (options.cache.maxEntries ?? 10_000) : 0;
  const cacheAgeMs = options.cache?.maxAgeMs ?? Math.floor(validityMs / 4);
  if (options.cache && (!Number.isInteger(cacheMax) || cacheMax < 1 || !(cacheAgeMs >= 0))) {
    throw new RangeError('cache.maxEntries must be a positive integer and cache.maxAgeMs non-negative');
  }
  /** Request CertIDs (hex) -> the answer; Map order is the LRU order. */
  const cache = new Map<string, { answer: OcspAnswer; serials: (string | undefined)[]; until: number }>();
  // A fixed list is checked now: a wrong certificate or key handle fails at start, not per request.
  if (Array.isArray(options.issuers))
    for (const issuer of options.issuers as readonly OcspIssuer[]) prepare(issuer);

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

  async function certStatus(issuer: OcspIssuer, certId: ParsedCertId) {
    const serial = certId.serial;
    if (serial === undefined) return { name: 'unknown' as const };
    const record = await status.findStatus(serial);
    if (!record || record.issuerId !== issuer.id) return { name: 'unknown' as const };
    if (record.status === 'good') return { name: 'good' as const };
    if (record.status === 'revoked' && record.revokedAt && record.revocationReason) {
      return { name: 'revoked' as const, revokedAt: record.revokedAt, reason: record.revocationReason };
    }
    // pending (a reservation whose certificate is not stored yet) or failed (never signed).
    return { name: 'unknown' as const };
  }

  async function answer(request: Uint8Array): Promise<OcspAnswer> {
    let parsed: ParsedRequest;
    try {
      parsed = parseOcspRequest(request, { maxCertIds, maxRequestBytes });
    } catch {
      return failure('malformedRequest');
    }
    // A request with a nonce wants a response made for it (RFC 9654); others may share one.
    const cacheKey =
      cacheMax > 0 && !parsed.nonce
        ? parsed.certIds.map((certId) => Buffer.from(certId.der).toString('hex')).join('.')
        : undefined;
    if (cacheKey !== undefined) {
      const hit = cache.get(cacheKey);
      if (hit && clock.now().getTime() < hit.until) {
        cache.delete(cacheKey);
        cache.set(cacheKey, hit);
        return hit.answer;
      }
      if (hit) cache.delete(cacheKey);
    }
    const fresh = await answerFresh(parsed);
    if (cacheKey !== undefined && fresh.status === 'successful') {
      const until = Math.min(fresh.producedAt!.getTime() + cacheAgeMs, fresh.nextUpdate!.getTime());
      cache.set(cacheKey, { answer: fresh, serials: parsed.certIds.map((certId) => certId.serial), until });
      if (cache.size > cacheMax) cache.delete(cache.keys().next().value!);
    }
    return fresh;
  }

  async function answerFresh(parsed: ParsedRequest): Promise<OcspAnswer> {
    let issuer: OcspIssuer | undefined;
    try {
      issuer = await withTimeout(findIssuer(parsed), timeoutMs);
    } catch (error) {
      if (error instanceof OcspUnauthorizedError) return failure('unauthorized');
      onError?.(error, { stage: 'lookup' });
      return failure(isTransient(error) ? 'tryLater' : 'internalError');
    }
    if (!issuer) return failure('unauthorized');

    let states: Awaited<ReturnType<typeof certStatus>>[];
    try {
      states = await withTimeout(
        Promise.all(parsed.certIds.map((certId) => certStatus(issuer, certId))),
        timeoutMs,
      );
    } catch (error) {
      onError?.(error, { stage: 'status', issuerId: issuer.id });
      return failure(isTransient(error) ? 'tryLater' : 'internalError');
    }

    try {
      const ready = prepare(issuer);
      const producedAt = wholeSeconds(clock.now());
      const nextUpdate = new Date(producedAt.getTime() + Math.floor(validityMs / 1000) * 1000);
      const responses = parsed.certIds.map((certId, i) =>
        encodeSingleResponse(certId.der, states[i]!, producedAt, nextUpdate),
      );
      const responseData = encodeResponseData({
        responderId: ready.responderId,
        producedAt,
        responses,
        nonce: parsed.nonce,
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
        nonce: parsed.nonce !== undefined,
        certStatuses: states.map((state) => state.name),
      };
    } catch (error) {
      onError?.(error, { stage: 'sign', issuerId: issuer.id });
      return failure(isTransient(error) ? 'tryLater' : 'internalError');
    }
  }

  async function findIssuer(parsed: ParsedRequest): Promise<OcspIssuer | undefined> {
    let found: OcspIssuer | undefined;
    for (const certId of parsed.certIds) {
      if (!certId.lookup) throw new OcspUnauthorizedError();
      const issuer = await directory.find(certId.lookup);
      if (!issuer) throw new OcspUnauthorizedError();
      if (found && found.id !== issuer.id) throw new OcspUnauthorizedError();
      found = issuer;
    }
    return found;
  }

  async function safeAnswer(request: Uint8Array): Promise<OcspAnswer> {
    try {
      return await answer(request);
    } catch (error) {
      onError?.(error, { stage: 'sign' });
      return failure('internalError');
    }
  }

  return {
    answer: safeAnswer,
    async respond(request) {
      return (await safeAnswer(request)).der;
    },
    async answerGetPath(path) {
      let request: Uint8Array;
      try {
        request = decodeOcspGetPath(path);
      } catch {
        return failure('malformedRequest');
      }
      return safeAnswer(request);
    },
    invalidate(serial) {
      const canonical = parseRevocationSerial(serial);
      for (const [key, entry] of cache) if (entry.serials.includes(canonical)) cache.delete(key);
    },
    clearCache() {
      cache.clear();
    },
  };
}
