import { createPublicKey } from 'node:crypto';
import {
  AlgorithmError,
  parseSignatureAlgorithm,
  type SignatureAlgorithm,
  verifySignature,
} from './algorithms.ts';
import {
  bitStringBytes,
  content,
  contextTag,
  DerError,
  decodeInteger,
  decodeOid,
  decodeTime,
  encoding,
  equalBytes,
  readDer,
  TAG,
  type Tlv,
  toHex,
} from './der.ts';
import { extensionParts } from './extension.ts';
import { readCertificateFields } from './issuer.ts';
import { OID } from './oids.ts';

/**
 * Reading a CRL that was signed elsewhere (RFC 5280 §5): a root CRL made by the offline ceremony
 * (or by `signet init`) that the online CA imports and serves, and the previous CRL a `crl`
 * ceremony numbers its own after. Strict DER (der.ts), the fields a relying party uses, and the
 * signature checked against the issuer's certificate the way RFC 5280 §6.3.3 (f) and (g) check it.
 */

export class CrlReadError extends Error {
  override readonly name = 'CrlReadError';
}

export interface ReadCrl {
  der: Uint8Array;
  /** The TBSCertList, DER: what the signature covers. */
  tbs: Uint8Array;
  signatureAlgorithm: SignatureAlgorithm;
  signature: Uint8Array;
  /** The issuer Name, DER (RFC 5280 §5.1.2.3). */
  issuer: Uint8Array;
  thisUpdate: Date;
  /** RFC 5280 §5.1.2.5: conforming CAs MUST include it; undefined when the CRL has none. */
  nextUpdate: Date | undefined;
  /** cRLNumber (RFC 5280 §5.2.3); undefined when the CRL has none. */
  number: bigint | undefined;
  /** A deltaCRLIndicator is present (RFC 5280 §5.2.4): a delta CRL, not a complete one. */
  delta: boolean;
  /** Serials of the revoked certificates, lowercase hex of the INTEGER content octets. */
  serials: string[];
  /** OIDs of the CRL extensions marked critical. */
  criticalExtensions: string[];
}

const ID_CE_CRL_NUMBER = '2.5.29.20';
const ID_CE_DELTA_CRL_INDICATOR = '2.5.29.27';

const isTime = (tlv: Tlv | undefined) =>
  tlv !== undefined && (tlv.tag === TAG.UTC_TIME || tlv.tag === TAG.GENERALIZED_TIME);

function fail(message: string): never {
  throw new CrlReadError(message);
}

/** Reads a DER CertificateList (RFC 5280 §5.1). Throws CrlReadError saying what is wrong. */
export function readCrl(der: Uint8Array): ReadCrl {
  let root: Tlv;
  try {
    root = readDer(der, { maxDepth: 16 });
  } catch (error) {
    if (error instanceof DerError) fail(`not a DER CRL: ${error.message}`);
    throw error;
  }
  const [tbs, outerAlgorithm, signatureValue, ...extra] = root.children;
  if (
    root.tag !== TAG.SEQUENCE ||
    !tbs ||
    tbs.tag !== TAG.SEQUENCE ||
    !outerAlgorithm ||
    !signatureValue ||
    signatureValue.tag !== TAG.BIT_STRING ||
    extra.length > 0
  ) {
    fail('not a CertificateList: SEQUENCE { tbsCertList, signatureAlgorithm, signatureValue }');
  }
  const fields = [...tbs.children];
  let version = 1;
  if (fields[0]?.tag === TAG.INTEGER) version = Number(decodeInteger(fields.shift()!)) + 1;
  const [innerAlgorithm, issuer, thisUpdate] = fields.splice(0, 3);
  if (!innerAlgorithm || !issuer || issuer.tag !== TAG.SEQUENCE || !isTime(thisUpdate)) {
    fail('the TBSCertList lacks its signature, issuer or thisUpdate');
  }
  // RFC 5280 §5.1.1.2: the outer signatureAlgorithm MUST equal the TBSCertList's signature field.
  if (!equalBytes(encoding(innerAlgorithm), encoding(outerAlgorithm))) {
    fail('the signature algorithm differs between the CRL and its TBSCertList (RFC 5280 §5.1.1.2)');
  }
  let signatureAlgorithm: SignatureAlgorithm;
  try {
    signatureAlgorithm = parseSignatureAlgorithm(outerAlgorithm);
  } catch (error) {
    if (error instanceof AlgorithmError) fail(error.message);
    throw error;
  }
  const nextUpdate = isTime(fields[0]) ? fields.shift()! : undefined;
  const revoked = fields[0]?.tag === TAG.SEQUENCE ? fields.shift()! : undefined;
  const extensionsField = fields[0]?.tag === contextTag(0, true) ? fields.shift()! : undefined;
  if (fields.length > 0) fail('unexpected fields in the TBSCertList');
  if (extensionsField && version !== 2) fail('a CRL with extensions must be v2 (RFC 5280 §5.1.2.1)');

  const serials = (revoked?.children ?? []).map((entry) => {
    const [serial, date] = entry.children;
    if (entry.tag !== TAG.SEQUENCE || serial?.tag !== TAG.INTEGER || !isTime(date)) {
      fail('a revokedCertificates entry is not SEQUENCE { serial, revocationDate, ... }');
    }
    return toHex(content(serial));
  });

  const { number, delta, criticalExtensions } = readCrlExtensions(extensionsField);

  const signature = bitStringBytes(signatureValue);
  if (signature.unusedBits !== 0) fail('the signature BIT STRING has unused bits');
  try {
    return {
      der,
      tbs: encoding(tbs),
      signatureAlgorithm,
      signature: signature.bytes,
      issuer: encoding(issuer),
      thisUpdate: decodeTime(thisUpdate!),
      nextUpdate: nextUpdate ? decodeTime(nextUpdate) : undefined,
      number,
      delta,
      serials,
      criticalExtensions,
    };
  } catch (error) {
    if (error instanceof DerError) fail(error.message);
    throw error;
  }
}

/** crlExtensions [0] EXPLICIT Extensions (RFC 5280 §5.2): the number, delta indicator and criticality. */
function readCrlExtensions(field: Tlv | undefined): {
  number: bigint | undefined;
  delta: boolean;
  criticalExtensions: string[];
} {
  let number: bigint | undefined;
  let delta = false;
  const criticalExtensions: string[] = [];
  const extensions = field?.children[0];
  if (field && (field.children.length !== 1 || extensions?.tag !== TAG.SEQUENCE)) {
    fail('malformed crlExtensions');
  }
  const seen = new Set<string>();
  for (const extension of extensions?.children ?? []) {
    const parts = extensionParts(extension);
    if (!parts) fail('malformed CRL extension');
    const oid = decodeOid(parts.oid);
    // RFC 5280 §4.2 (and §5.2 by reference): an extension appears at most once.
    if (seen.has(oid)) fail(`the CRL extension ${oid} appears twice`);
    seen.add(oid);
    if (parts.critical && content(parts.critical)[0] === 0xff) criticalExtensions.push(oid);
    if (oid === ID_CE_CRL_NUMBER) {
      const value = readInteger(content(parts.value));
      if (value < 0n) fail('the cRLNumber is negative (RFC 5280 §5.2.3)');
      number = value;
    }
    if (oid === ID_CE_DELTA_CRL_INDICATOR) delta = true;
  }
  return { number, delta, criticalExtensions };
}

function readInteger(value: Uint8Array): bigint {
  try {
    const tlv = readDer(value, { maxDepth: 1 });
    if (tlv.tag !== TAG.INTEGER) fail('the cRLNumber is not an INTEGER');
    return decodeInteger(tlv);
  } catch (error) {
    if (error instanceof DerError) fail(`the cRLNumber is not DER: ${error.message}`);
    throw error;
  }
}

/**
 * Whether `issuerCertificate` signed `crl` and may sign CRLs: the CRL's issuer is the
 * certificate's subject (§5.1.2.3, compared byte for byte: the CA writes its own name), a
 * keyUsage, when present, asserts cRLSign (§4.2.1.3), and the signature verifies with the
 * certificate's key (§6.3.3 (g)). Answers the reason when not.
 */
export function checkCrlSignature(
  crl: ReadCrl,
  issuerCertificate: Uint8Array,
): { ok: true } | { ok: false; reason: string } {
  const fields = readCertificateFields(issuerCertificate);
  if (!equalBytes(encoding(fields.subject), crl.issuer)) {
    return { ok: false, reason: "the CRL's issuer is not this issuer's subject (RFC 5280 §5.1.2.3)" };
  }
  const keyUsage = fields.extensions.get(OID.keyUsage);
  if (keyUsage) {
    const bits = bitStringBytes(readDer(keyUsage.value, { maxDepth: 1 })).bytes;
    // cRLSign is bit 6: 0x02 of the first octet.
    if (((bits[0] ?? 0) & 0x02) === 0) {
      return {
        ok: false,
        reason: "the issuer certificate's keyUsage lacks cRLSign (RFC 5280 §4.2.1.3)",
      };
    }
  }
  const key = createPublicKey({ key: Buffer.from(encoding(fields.spki)), format: 'der', type: 'spki' });
  if (!verifySignature(crl.signatureAlgorithm, key, crl.tbs, crl.signature)) {
    return { ok: false, reason: "the signature does not verify with the issuer certificate's key" };
  }
  return { ok: true };
}

/** A self-issued certificate (RFC 5280 §3.2: subject and issuer are the same): a root. */
export function isSelfIssued(certificate: Uint8Array): boolean {
  const fields = readCertificateFields(certificate);
  return equalBytes(encoding(fields.subject), encoding(fields.issuer));
}
