/**
 * CSR intake: PKCS#10 (RFC 2986) in PEM or DER, strictly DER, signature (proof of possession)
 * verified with node:crypto, public key checked (BR §6.1.5, §6.1.6), requested names and
 * extensions extracted. Every refusal is a CsrError with a stable `csr.*` code; nothing else
 * escapes, whatever the input.
 */

import { createHash, createPublicKey, type KeyObject } from 'node:crypto';
import { AppError } from '../lib/errors.ts';
import { AlgorithmError, parseSignatureAlgorithm, verifySignature } from './algorithms.ts';
import type { KeyBlocklist } from './blocklist.ts';
import {
  bitStringBytes,
  content,
  contextTag,
  DerError,
  decodeInteger,
  decodeOid,
  encoding,
  readDer,
  TAG,
  type Tlv,
} from './der.ts';
import { extensionParts } from './extension.ts';
import { inspectPublicKey, KeyError, type PublicKeyDetails } from './keys.ts';
import { decodeGeneralNames, decodeName, UnsupportedNameError } from './names.ts';
import { OID } from './oids.ts';
import { decodePem, PEM_LABEL, PemError } from './pem.ts';
import type { ParsedCsr, RawExtension, San, SubjectAttribute } from './types.ts';

export const CSR_ERROR_CODES = [
  'csr.pem_invalid',
  'csr.malformed',
  'csr.trailing_data',
  'csr.non_der_encoding',
  'csr.duplicate_extension',
  'csr.too_large',
  'csr.signature_invalid',
  'csr.signature_algorithm_unsupported',
  'csr.key_unsupported',
  'csr.key_weak',
  'csr.key_blocked',
  'csr.critical_extension_unsupported',
  'csr.san_unsupported',
  'csr.subject_unsupported',
] as const;
export type CsrErrorCode = (typeof CSR_ERROR_CODES)[number];

/** A refused CSR: 400 at the HTTP edge (DESIGN.md "Status codes"). */
export class CsrError extends AppError {
  declare readonly code: CsrErrorCode;
  constructor(code: CsrErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, 'invalid', message, undefined, options);
  }
}

export interface ParseCsrOptions {
  /** Largest accepted input, in bytes as given (PEM or DER). Default 64 KiB. */
  maxBytes?: number;
  blocklist?: KeyBlocklist;
  /** Rounds of Fermat factorisation for RSA moduli; default 100 (BR §6.1.6). */
  fermatRounds?: number;
}

export const DEFAULT_MAX_CSR_BYTES = 64 * 1024;

/**
 * The deepest nesting a CSR needs: CertificationRequest > info > attributes > Attribute > SET >
 * Extensions > Extension > value, or RSASSA-PSS parameters under the signature algorithm.
 * Extension values are read separately with their own limit.
 */
const MAX_CSR_DEPTH = 8;
const MAX_EXTENSION_DEPTH = 8;

/** Extensions whose meaning we know, so a request may mark them critical. */
const UNDERSTOOD_EXTENSIONS = new Set<string>([
  OID.subjectAltName,
  OID.basicConstraints,
  OID.keyUsage,
  OID.extKeyUsage,
  OID.tlsFeature,
  OID.subjectKeyIdentifier,
]);

export function parseCsr(input: string | Uint8Array, options: ParseCsrOptions = {}): ParsedCsr {
  try {
    return parseCsrUnchecked(input, options);
  } catch (error) {
    if (error instanceof CsrError) throw error;
    // Anything unforeseen is still the request's fault and still gets a stable code.
    throw new CsrError('csr.malformed', 'the CSR could not be parsed', { cause: error });
  }
}

function parseCsrUnchecked(input: string | Uint8Array, options: ParseCsrOptions): ParsedCsr {
  const maxBytes = options.maxBytes ?? DEFAULT_MAX_CSR_BYTES;
  const size = typeof input === 'string' ? Buffer.byteLength(input, 'utf8') : input.length;
  if (size > maxBytes)
    throw new CsrError('csr.too_large', `the CSR is ${size} bytes; at most ${maxBytes} accepted`);
  if (size === 0) throw new CsrError('csr.malformed', 'the CSR is empty');

  const der = toDer(input);
  const root = readStrict(der, MAX_CSR_DEPTH, 'CSR');

  const [info, signatureAlgorithmTlv, signatureTlv, ...rest] = root.children;
  if (
    root.tag !== TAG.SEQUENCE ||
    !info ||
    !signatureAlgorithmTlv ||
    !signatureTlv ||
    rest.length > 0 ||
    info.tag !== TAG.SEQUENCE ||
    signatureTlv.tag !== TAG.BIT_STRING
  ) {
    throw new CsrError('csr.malformed', 'not a CertificationRequest (RFC 2986 §4.2)');
  }
  const [version, subjectTlv, spkiTlv, attributesTlv, ...infoRest] = info.children;
  if (
    !version ||
    !subjectTlv ||
    !spkiTlv ||
    infoRest.length > 0 ||
    version.tag !== TAG.INTEGER ||
    spkiTlv.tag !== TAG.SEQUENCE ||
    (attributesTlv && attributesTlv.tag !== contextTag(0, true))
  ) {
    throw new CsrError('csr.malformed', 'not a CertificationRequestInfo (RFC 2986 §4.1)');
  }
  if (decodeInteger(version) !== 0n) throw new CsrError('csr.malformed', 'CSR version must be v1 (0)');

  // Signature algorithm first: MD5 and SHA-1 are refused before any work on the key.
  let algorithm: ReturnType<typeof parseSignatureAlgorithm>;
  try {
    algorithm = parseSignatureAlgorithm(signatureAlgorithmTlv);
  } catch (error) {
    if (error instanceof AlgorithmError) {
      throw new CsrError(
        error.reason === 'malformed' ? 'csr.malformed' : 'csr.signature_algorithm_unsupported',
        error.message,
      );
    }
    throw error;
  }

  const key = checkKey(spkiTlv, options);

  const { bytes: signature, unusedBits } = bitStringBytes(signatureTlv);
  if (unusedBits !== 0) throw new CsrError('csr.malformed', 'the signature BIT STRING has unused bits');
  if (algorithm.keyType !== key.type) {
    throw new CsrError(
      'csr.signature_invalid',
      `a ${algorithm.name} signature cannot come from a ${key.name} key`,
    );
  }
  let keyObject: KeyObject;
  try {
    keyObject = publicKeyObject(key);
  } catch (error) {
    throw new CsrError('csr.key_unsupported', 'the public key could not be loaded', { cause: error });
  }
  if (!verifySignature(algorithm, keyObject, encoding(info), signature)) {
    throw new CsrError('csr.signature_invalid', 'the CSR signature does not verify with its public key');
  }

  const subject = parseSubject(subjectTlv);
  const { sans, extensions, requestedCa, requestedEku } = parseAttributes(attributesTlv);

  const parsed: ParsedCsr = {
    der: Uint8Array.from(der),
    sha256: createHash('sha256').update(der).digest('hex'),
    subject,
    sans,
    publicKey: Uint8Array.from(key.spki),
    keyAlgorithm: key.name,
    extensions,
  };
  if (requestedCa !== undefined) parsed.requestedCa = requestedCa;
  if (requestedEku !== undefined) parsed.requestedEku = requestedEku;
  return parsed;
}

const base64url = (bytes: Uint8Array): string =>
  Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64url');

/**
 * The verification key. EC and Ed25519 keys are imported from a JWK of the raw point, about half
 * the cost of parsing the SPKI again (NOTES.md "Where issuance time goes"); RSA from the SPKI.
 */
function publicKeyObject(key: PublicKeyDetails): KeyObject {
  if (key.type === 'ec') {
    const size = (key.subjectPublicKey.length - 1) / 2;
    return createPublicKey({
      key: {
        kty: 'EC',
        crv: key.curve!,
        x: base64url(key.subjectPublicKey.subarray(1, 1 + size)),
        y: base64url(key.subjectPublicKey.subarray(1 + size)),
      },
      format: 'jwk',
    });
  }
  if (key.type === 'ed25519') {
    return createPublicKey({
      key: { kty: 'OKP', crv: 'Ed25519', x: base64url(key.subjectPublicKey) },
      format: 'jwk',
    });
  }
  return createPublicKey({ key: Buffer.from(key.spki), format: 'der', type: 'spki' });
}

function toDer(input: string | Uint8Array): Uint8Array {
  let text: string;
  if (typeof input === 'string') {
    text = input;
  } else {
    // DER starts with a SEQUENCE; anything else must be PEM text.
    if (input[0] === TAG.SEQUENCE) return input;
    text = Buffer.from(input.buffer, input.byteOffset, input.byteLength).toString('latin1');
  }
  try {
    return decodePem(text, [PEM_LABEL.csr, PEM_LABEL.legacyCsr]).der;
  } catch (error) {
    if (error instanceof PemError) {
      throw new CsrError('csr.pem_invalid', `not a PEM certificate request: ${error.message}`);
    }
    throw error;
  }
}

function readStrict(bytes: Uint8Array, maxDepth: number, what: string): Tlv {
  try {
    return readDer(bytes, { maxDepth });
  } catch (error) {
    throw derToCsrError(error, what);
  }
}

function derToCsrError(error: unknown, what: string): unknown {
  if (!(error instanceof DerError)) return error;
  switch (error.reason) {
    case 'non_der':
      return new CsrError('csr.non_der_encoding', `${what} is not DER: ${error.message}`);
    case 'trailing_data':
      return new CsrError('csr.trailing_data', `${what}: ${error.message}`);
    case 'too_deep':
      return new CsrError('csr.malformed', `${what} is nested deeper than its structure needs`);
    default:
      return new CsrError('csr.malformed', `${what} is malformed: ${error.message}`);
  }
}

function checkKey(spki: Tlv, options: ParseCsrOptions): PublicKeyDetails {
  let key: PublicKeyDetails;
  try {
    key = inspectPublicKey(
      spki,
      options.fermatRounds === undefined ? {} : { fermatRounds: options.fermatRounds },
    );
  } catch (error) {
    if (error instanceof KeyError) {
      const code =
        error.reason === 'weak'
          ? 'csr.key_weak'
          : error.reason === 'unsupported'
            ? 'csr.key_unsupported'
            : 'csr.malformed';
      throw new CsrError(code, error.message);
    }
    throw derToCsrError(error, 'the public key');
  }
  if (options.blocklist?.has(key.spki)) {
    throw new CsrError('csr.key_blocked', 'this public key is blocked (compromised or known weak)');
  }
  return key;
}

function parseSubject(subject: Tlv): SubjectAttribute[] {
  let rdns: ReturnType<typeof decodeName>;
  try {
    rdns = decodeName(subject);
  } catch (error) {
    throw derToCsrError(error, 'the subject');
  }
  const attributes: SubjectAttribute[] = [];
  for (const rdn of rdns) {
    for (const attribute of rdn) {
      if (!attribute.type) {
        throw new CsrError('csr.subject_unsupported', `subject attribute ${attribute.oid} is not supported`);
      }
      if (attribute.value.length === 0)
        throw new CsrError('csr.malformed', `empty ${attribute.type} in the subject`);
      attributes.push({ type: attribute.type, value: attribute.value });
    }
  }
  return attributes;
}

interface RequestedExtensions {
  sans: San[];
  extensions: RawExtension[];
  requestedCa?: boolean;
  requestedEku?: string[];
}

function parseAttributes(attributes: Tlv | undefined): RequestedExtensions {
  const result: RequestedExtensions = { sans: [], extensions: [] };
  if (!attributes) return result;
  const seen = new Set<string>();
  for (const attribute of attributes.children) {
    const [typeTlv, values, ...extra] = attribute.children;
    if (
      attribute.tag !== TAG.SEQUENCE ||
      !typeTlv ||
      !values ||
      extra.length > 0 ||
      typeTlv.tag !== TAG.OID
    ) {
      throw new CsrError(
        'csr.malformed',
        'an attribute is not SEQUENCE { type, SET OF value } (RFC 2986 §4.1)',
      );
    }
    if (values.tag !== TAG.SET || values.children.length === 0) {
      throw new CsrError('csr.malformed', 'an attribute has no values');
    }
    const type = decodeOid(typeTlv);
    if (seen.has(type)) {
      throw new CsrError(
        type === OID.extensionRequest ? 'csr.duplicate_extension' : 'csr.malformed',
        `attribute ${type} appears twice`,
      );
    }
    seen.add(type);
    if (type !== OID.extensionRequest) continue; // challengePassword and others carry nothing we use.
    // RFC 2985 §5.4.2: extensionRequest is single-valued.
    if (values.children.length !== 1)
      throw new CsrError('csr.malformed', 'extensionRequest must have one value');
    parseExtensions(values.children[0]!, result);
  }
  return result;
}

function parseExtensions(extensionsTlv: Tlv, result: RequestedExtensions): void {
  // RFC 5280 §4.1: Extensions ::= SEQUENCE SIZE (1..MAX) OF Extension.
  if (extensionsTlv.tag !== TAG.SEQUENCE || extensionsTlv.children.length === 0) {
    throw new CsrError('csr.malformed', 'extensionRequest is not a non-empty SEQUENCE OF Extension');
  }
  const seen = new Set<string>();
  for (const extension of extensionsTlv.children) {
    const { oid, critical, value } = readExtension(extension);
    // RFC 5280 §4.2: a certificate MUST NOT include more than one instance of an extension.
    if (seen.has(oid)) throw new CsrError('csr.duplicate_extension', `extension ${oid} is requested twice`);
    seen.add(oid);
    if (critical && !UNDERSTOOD_EXTENSIONS.has(oid)) {
      throw new CsrError('csr.critical_extension_unsupported', `critical extension ${oid} is not understood`);
    }
    const parsedValue = readStrict(value, MAX_EXTENSION_DEPTH, `extension ${oid}`);
    switch (oid) {
      case OID.subjectAltName:
        result.sans = parseSans(value);
        continue; // the SANs travel as `sans`, not as a raw extension
      case OID.basicConstraints:
        result.requestedCa = parseBasicConstraints(parsedValue);
        break;
      case OID.extKeyUsage:
        result.requestedEku = parseEku(parsedValue);
        break;
      case OID.keyUsage:
        if (parsedValue.tag !== TAG.BIT_STRING)
          throw new CsrError('csr.malformed', 'keyUsage is not a BIT STRING');
        break;
    }
    result.extensions.push({ oid, critical, value: Uint8Array.from(value) });
  }
}

function readExtension(extension: Tlv): { oid: string; critical: boolean; value: Uint8Array } {
  const parts = extensionParts(extension);
  if (!parts) {
    throw new CsrError('csr.malformed', 'an extension is not SEQUENCE { OID, BOOLEAN, OCTET STRING }');
  }
  const { oid: oidTlv, critical: criticalTlv, value: valueTlv } = parts;
  // X.690 §11.5: a DEFAULT value is omitted in DER, so an explicit critical FALSE is not DER.
  if (criticalTlv && content(criticalTlv)[0] === 0x00) {
    throw new CsrError('csr.non_der_encoding', 'critical FALSE must be omitted in DER (X.690 §11.5)');
  }
  return { oid: decodeOid(oidTlv), critical: criticalTlv !== undefined, value: content(valueTlv) };
}

function parseSans(value: Uint8Array): San[] {
  let sans: San[];
  try {
    sans = decodeGeneralNames(value, MAX_EXTENSION_DEPTH);
  } catch (error) {
    if (error instanceof UnsupportedNameError) throw new CsrError('csr.san_unsupported', error.message);
    throw derToCsrError(error, 'subjectAltName');
  }
  // RFC 5280 §4.2.1.6: the sequence MUST contain at least one entry.
  if (sans.length === 0) throw new CsrError('csr.malformed', 'subjectAltName is empty');
  for (const san of sans) {
    if (san.value.length === 0)
      throw new CsrError('csr.malformed', `empty ${san.type} name in subjectAltName`);
  }
  return sans;
}

/** RFC 5280 §4.2.1.9: SEQUENCE { cA BOOLEAN DEFAULT FALSE, pathLenConstraint INTEGER OPTIONAL }. */
function parseBasicConstraints(value: Tlv): boolean {
  const [first, second, ...extra] = value.children;
  if (value.tag !== TAG.SEQUENCE || extra.length > 0)
    throw new CsrError('csr.malformed', 'malformed basicConstraints');
  if (!first) return false;
  if (first.tag === TAG.BOOLEAN) {
    if (content(first)[0] === 0x00) {
      throw new CsrError('csr.non_der_encoding', 'cA FALSE must be omitted in DER (X.690 §11.5)');
    }
    if (second && second.tag !== TAG.INTEGER)
      throw new CsrError('csr.malformed', 'malformed pathLenConstraint');
    return true;
  }
  if (first.tag !== TAG.INTEGER || second) throw new CsrError('csr.malformed', 'malformed basicConstraints');
  return false;
}

/** RFC 5280 §4.2.1.12: SEQUENCE SIZE (1..MAX) OF KeyPurposeId. */
function parseEku(value: Tlv): string[] {
  if (value.tag !== TAG.SEQUENCE || value.children.length === 0) {
    throw new CsrError('csr.malformed', 'extendedKeyUsage is not a non-empty SEQUENCE OF OID');
  }
  return value.children.map((purpose) => {
    if (purpose.tag !== TAG.OID) throw new CsrError('csr.malformed', 'extendedKeyUsage holds a non-OID');
    return decodeOid(purpose);
  });
}

/**
 * A renewal without a new key (issue #32): the request a certificate stands for. The subject,
 * the SANs and the public key are read from the certificate the CA issued, and the key passes
 * the same checks a CSR's key does (weak keys, the blocklist as it is now). Proof of possession
 * is the caller's business (a JWS or a TLS handshake with that key): there is no CSR signature.
 * `der` and `sha256` are the certificate's, so the record says which certificate it renewed.
 */
export function requestFromCertificate(certificate: Uint8Array, options: ParseCsrOptions = {}): ParsedCsr {
  try {
    return requestFromCertificateUnchecked(certificate, options);
  } catch (error) {
    if (error instanceof CsrError) throw error;
    throw new CsrError('csr.malformed', 'the certificate could not be read', { cause: error });
  }
}

function requestFromCertificateUnchecked(certificate: Uint8Array, options: ParseCsrOptions): ParsedCsr {
  const root = readStrict(certificate, MAX_CSR_DEPTH, 'the certificate');
  const tbs = root.children[0];
  if (root.tag !== TAG.SEQUENCE || !tbs || tbs.tag !== TAG.SEQUENCE)
    throw new CsrError('csr.malformed', 'not a Certificate (RFC 5280 §4.1)');
  // TBSCertificate: [0] version, serial, signature, issuer, validity, subject, spki, ... [3] extensions.
  const fields = tbs.children[0]?.tag === contextTag(0, true) ? tbs.children.slice(1) : tbs.children;
  const subjectTlv = fields[4];
  const spkiTlv = fields[5];
  if (!subjectTlv || !spkiTlv || spkiTlv.tag !== TAG.SEQUENCE)
    throw new CsrError('csr.malformed', 'not a TBSCertificate (RFC 5280 §4.1)');
  const key = checkKey(spkiTlv, options);
  const subject = parseSubject(subjectTlv);
  let sans: San[] = [];
  const extensionsTlv = fields.slice(6).find((field) => field.tag === contextTag(3, true));
  for (const extension of extensionsTlv?.children[0]?.children ?? []) {
    const { oid, value } = readExtension(extension);
    if (oid === OID.subjectAltName) sans = parseSans(value);
  }
  return {
    der: Uint8Array.from(certificate),
    sha256: createHash('sha256').update(certificate).digest('hex'),
    subject,
    sans,
    publicKey: Uint8Array.from(key.spki),
    keyAlgorithm: key.name,
    extensions: [],
  };
}
