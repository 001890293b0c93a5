/**
 * The one OCSP response encoder (RFC 6960 §4.2, profiled by RFC 5019), pure: bytes in, DER out.
 * The responder (src/revocation) decides what to say and signs; this module only writes it. The
 * envelope is assembled by hand around the signed ResponseData, which is never re-encoded.
 */

import { id_pkix_ocsp_basic, id_pkix_ocsp_nonce } from '@peculiar/asn1-ocsp';
import { wholeSeconds } from '../lib/clock.ts';
import { REASON_CODES, type RevocationReason } from '../lib/revocation-reasons.ts';
import { bitString, contextTag, enumerated, generalizedTime, oid, TAG, tlv } from './der.ts';

export type OcspResponseStatusName =
  | 'successful'
  | 'malformedRequest'
  | 'internalError'
  | 'tryLater'
  | 'unauthorized';

/** RFC 6960 §4.2.1 OCSPResponseStatus. */
const STATUS_CODES: Readonly<Record<OcspResponseStatusName, number>> = {
  successful: 0,
  malformedRequest: 1,
  internalError: 2,
  tryLater: 3,
  unauthorized: 6,
};

const BASIC_OID = oid(id_pkix_ocsp_basic);
const NONCE_OID = oid(id_pkix_ocsp_nonce);

/** An error OCSPResponse: SEQUENCE { responseStatus ENUMERATED } without responseBytes. */
export const errorResponse = (status: Exclude<OcspResponseStatusName, 'successful'>): Uint8Array =>
  tlv(TAG.SEQUENCE, enumerated(STATUS_CODES[status]));

export type CertStatusName = 'good' | 'revoked' | 'unknown';

export interface CertStatus {
  name: CertStatusName;
  revokedAt?: Date;
  reason?: RevocationReason;
}

/** ResponderID byKey (RFC 6960 §4.2.2.3): the SHA-1 of the responder's public key. */
export const responderIdByKey = (keyHashSha1: Uint8Array): Uint8Array =>
  tlv(contextTag(2, true), tlv(TAG.OCTET_STRING, keyHashSha1));

/** `certs [0] EXPLICIT SEQUENCE OF Certificate` with a delegated responder's certificate. */
export const responderCertificates = (certificate: Uint8Array): Uint8Array =>
  tlv(contextTag(0, true), tlv(TAG.SEQUENCE, certificate));

/** One SingleResponse, echoing the CertID as the client sent it. */
export function encodeSingleResponse(
  certId: Uint8Array,
  state: CertStatus,
  thisUpdate: Date,
  nextUpdate: Date,
): Uint8Array {
  let certStatus: Uint8Array;
  if (state.name === 'good')
    certStatus = Uint8Array.of(0x80, 0x00); // [0] IMPLICIT NULL
  else if (state.name === 'unknown')
    certStatus = Uint8Array.of(0x82, 0x00); // [2] IMPLICIT NULL
  else {
    // [1] IMPLICIT RevokedInfo. The reason is left out for unspecified, as CRLs leave out
    // reasonCode (RFC 5280 §5.3.1; CA/B Forum BR §7.3 asks OCSP to follow the CRL rules).
    const code = REASON_CODES[state.reason!];
    const parts = [generalizedTime(wholeSeconds(state.revokedAt!))];
    if (code !== 0) parts.push(tlv(contextTag(0, true), enumerated(code)));
    certStatus = tlv(contextTag(1, true), ...parts);
  }
  return tlv(
    TAG.SEQUENCE,
    certId,
    certStatus,
    generalizedTime(thisUpdate),
    tlv(contextTag(0, true), generalizedTime(nextUpdate)),
  );
}

/** ResponseData (the bytes that are signed): version v1 is the DEFAULT, so DER leaves it out. */
export function encodeResponseData(input: {
  responderId: Uint8Array;
  producedAt: Date;
  responses: Uint8Array[];
  /** Echoed as received (RFC 9654), non-critical. */
  nonce?: Uint8Array | undefined;
}): Uint8Array {
  const parts = [input.responderId, generalizedTime(input.producedAt), tlv(TAG.SEQUENCE, ...input.responses)];
  if (input.nonce) {
    // responseExtensions [1] EXPLICIT Extensions.
    const extension = tlv(TAG.SEQUENCE, NONCE_OID, tlv(TAG.OCTET_STRING, input.nonce));
    parts.push(tlv(contextTag(1, true), tlv(TAG.SEQUENCE, extension)));
  }
  return tlv(TAG.SEQUENCE, ...parts);
}

/** A successful OCSPResponse around a signed BasicOCSPResponse (RFC 6960 §4.2.1). */
export function encodeSuccessfulResponse(input: {
  responseData: Uint8Array;
  signatureAlgorithm: Uint8Array;
  signature: Uint8Array;
  certs?: Uint8Array | undefined;
}): Uint8Array {
  const basicParts = [input.responseData, input.signatureAlgorithm, bitString(input.signature)];
  if (input.certs) basicParts.push(input.certs);
  const basic = tlv(TAG.SEQUENCE, ...basicParts);
  return tlv(
    TAG.SEQUENCE,
    enumerated(STATUS_CODES.successful),
    tlv(contextTag(0, true), tlv(TAG.SEQUENCE, BASIC_OID, tlv(TAG.OCTET_STRING, basic))),
  );
}
