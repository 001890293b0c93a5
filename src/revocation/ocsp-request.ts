/**
 * OCSP requests (RFC 6960 §4.1, profiled by RFC 5019): parsing and checking the DER, and the GET
 * path of RFC 6960 Appendix A.1. Pure: bytes in, a parsed request or OcspMalformedError out.
 */
import { CertID, id_pkix_ocsp_nonce, OCSPRequest } from '@peculiar/asn1-ocsp';
import { AsnConvert } from '@peculiar/asn1-schema';
import type { Extension } from '@peculiar/asn1-x509';
import { oid, readChildrenOf, readTlvAt, sequence, TAG, tlv, tlvEncoding } from '../x509/der.ts';
import { CERT_ID_HASH_OIDS, type CertIdHash, type IssuerFacts } from './issuer.ts';
import { serialFromIntegerContent } from './serial.ts';

export interface CertIdLookup {
  hash: CertIdHash;
  issuerNameHash: Uint8Array;
  issuerKeyHash: Uint8Array;
}

/** Raised for requests that are not OCSP requests; the responder turns it into malformedRequest. */
export class OcspMalformedError extends Error {
  readonly code = 'ocsp.malformed_request';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'OcspMalformedError';
  }
}

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

export interface ParsedCertId {
  /** The CertID exactly as received, echoed in the SingleResponse. */
  der: Uint8Array;
  /** Its canonical serial, when it is one a certificate can have. */
  serial: string | undefined;
  /** Undefined for a hash algorithm or hash lengths no issuer can match. */
  lookup: CertIdLookup | undefined;
}

export interface ParsedRequest {
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
    return certIdFields(single.reqCert, rawCertIds[index]!);
  });
  return { certIds, nonce };
}

/** A CertID DER (as stored with a pre-signed response) read back into what a request holds. */
export function parseCertId(der: Uint8Array): ParsedCertId {
  let certId: CertID;
  try {
    certId = AsnConvert.parse(der, CertID);
  } catch (error) {
    throw new OcspMalformedError('not a DER CertID', { cause: error });
  }
  return certIdFields(certId, der);
}

function certIdFields(certId: CertID, der: Uint8Array): ParsedCertId {
  const hash = HASH_BY_OID.get(certId.hashAlgorithm.algorithm);
  const issuerNameHash = new Uint8Array(certId.issuerNameHash.buffer);
  const issuerKeyHash = new Uint8Array(certId.issuerKeyHash.buffer);
  const lookup =
    hash && issuerNameHash.byteLength === HASH_LENGTH[hash] && issuerKeyHash.byteLength === HASH_LENGTH[hash]
      ? { hash, issuerNameHash, issuerKeyHash }
      : undefined;
  return { der: der.slice(), serial: serialFromIntegerContent(new Uint8Array(certId.serialNumber)), lookup };
}

/**
 * The SHA-1 CertID of a certificate (RFC 6960 §4.1.1; what RFC 5019 §2.1.1 clients send), from
 * its issuer's facts and its canonical serial: `ocsp.preSign: all` signs responses to it ahead.
 */
export function certIdFor(issuer: Pick<IssuerFacts, 'nameHash' | 'keyHash'>, serial: string): Uint8Array {
  return sequence(
    sequence(oid(CERT_ID_HASH_OIDS.sha1), tlv(TAG.NULL)),
    tlv(TAG.OCTET_STRING, issuer.nameHash.sha1),
    tlv(TAG.OCTET_STRING, issuer.keyHash.sha1),
    tlv(TAG.INTEGER, Uint8Array.from(Buffer.from(serial, 'hex'))),
  );
}
