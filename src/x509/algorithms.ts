/**
 * Signature algorithms: the ones we verify on CSRs (RFC 4055, RFC 5758, RFC 8410), the ones we
 * sign certificates with (chosen by the issuer's key, never by the request), their DER
 * AlgorithmIdentifiers, and the conversions between WebCrypto and X.509 signature forms.
 */

import { type KeyObject, constants as nodeCrypto, verify as nodeVerify, type webcrypto } from 'node:crypto';
import {
  contextTag,
  decodeInteger,
  decodeOid,
  encoding,
  integerFromNumber,
  integerFromUnsigned,
  NULL_DER,
  oid,
  sequence,
  TAG,
  type Tlv,
  tlv,
} from './der.ts';
import type { KeyType } from './keys.ts';
import { OID } from './oids.ts';
import type { PublicKeyAlgorithmName } from './types.ts';

export type HashName = 'sha256' | 'sha384' | 'sha512';

export type SignatureAlgorithmName =
  | 'ecdsa-with-SHA256'
  | 'ecdsa-with-SHA384'
  | 'ecdsa-with-SHA512'
  | 'sha256WithRSAEncryption'
  | 'sha384WithRSAEncryption'
  | 'sha512WithRSAEncryption'
  | 'RSASSA-PSS'
  | 'Ed25519';

export interface SignatureAlgorithm {
  name: SignatureAlgorithmName;
  oid: string;
  keyType: KeyType;
  /** undefined for Ed25519 (pure EdDSA hashes inside the algorithm). */
  hash?: HashName;
  /** RSASSA-PSS salt length in octets. */
  saltLength?: number;
  /** The AlgorithmIdentifier, DER. */
  identifier: Uint8Array;
}

const ECDSA_OIDS: Record<string, [SignatureAlgorithmName, HashName]> = {
  [OID.ecdsaWithSha256]: ['ecdsa-with-SHA256', 'sha256'],
  [OID.ecdsaWithSha384]: ['ecdsa-with-SHA384', 'sha384'],
  [OID.ecdsaWithSha512]: ['ecdsa-with-SHA512', 'sha512'],
};
const RSA_OIDS: Record<string, [SignatureAlgorithmName, HashName]> = {
  [OID.sha256WithRSAEncryption]: ['sha256WithRSAEncryption', 'sha256'],
  [OID.sha384WithRSAEncryption]: ['sha384WithRSAEncryption', 'sha384'],
  [OID.sha512WithRSAEncryption]: ['sha512WithRSAEncryption', 'sha512'],
};
const HASH_OIDS: Record<string, HashName> = {
  [OID.sha256]: 'sha256',
  [OID.sha384]: 'sha384',
  [OID.sha512]: 'sha512',
};
/** Refused outright: collisions are practical (BR §7.1.3.2 forbids SHA-1 and MD5). */
const BROKEN = new Set<string>([
  OID.md2WithRSAEncryption,
  OID.md5WithRSAEncryption,
  OID.sha1WithRSAEncryption,
  OID.ecdsaWithSha1,
  OID.dsaWithSha1,
]);

export type AlgorithmErrorReason = 'malformed' | 'unsupported';

export class AlgorithmError extends Error {
  override readonly name = 'AlgorithmError';
  constructor(
    readonly reason: AlgorithmErrorReason,
    message: string,
  ) {
    super(message);
  }
}

/** Reads a signature AlgorithmIdentifier, enforcing the parameter rules of each algorithm. */
export function parseSignatureAlgorithm(identifier: Tlv): SignatureAlgorithm {
  const [algorithmOid, parameters, ...extra] = identifier.children;
  if (identifier.tag !== TAG.SEQUENCE || !algorithmOid || algorithmOid.tag !== TAG.OID || extra.length > 0) {
    throw new AlgorithmError('malformed', 'AlgorithmIdentifier is not SEQUENCE { OID, parameters }');
  }
  const id = decodeOid(algorithmOid);
  const der = Uint8Array.from(encoding(identifier));
  if (BROKEN.has(id))
    throw new AlgorithmError('unsupported', `signature algorithm ${id} (MD5/SHA-1) is refused`);
  const ecdsa = ECDSA_OIDS[id];
  if (ecdsa) {
    // RFC 5758 §3.2: the parameters field MUST be absent.
    if (parameters)
      throw new AlgorithmError('unsupported', 'ECDSA parameters must be absent (RFC 5758 §3.2)');
    return { name: ecdsa[0], oid: id, keyType: 'ec', hash: ecdsa[1], identifier: der };
  }
  const rsa = RSA_OIDS[id];
  if (rsa) {
    // RFC 4055 §5: the parameters MUST be NULL (absent tolerated by some, refused here).
    if (!parameters || parameters.tag !== TAG.NULL) {
      throw new AlgorithmError('unsupported', 'RSA PKCS#1 v1.5 parameters must be NULL (RFC 4055 §5)');
    }
    return { name: rsa[0], oid: id, keyType: 'rsa', hash: rsa[1], identifier: der };
  }
  if (id === OID.ed25519) {
    if (parameters)
      throw new AlgorithmError('unsupported', 'Ed25519 parameters must be absent (RFC 8410 §3)');
    return { name: 'Ed25519', oid: id, keyType: 'ed25519', identifier: der };
  }
  if (id === OID.rsassaPss) {
    if (!parameters) throw new AlgorithmError('unsupported', 'RSASSA-PSS needs explicit parameters');
    const { hash, saltLength } = parsePssParameters(parameters);
    return { name: 'RSASSA-PSS', oid: id, keyType: 'rsa', hash, saltLength, identifier: der };
  }
  throw new AlgorithmError('unsupported', `signature algorithm ${id} is not supported`);
}

/**
 * RFC 4055 §3.1 RSASSA-PSS-params. We accept SHA-256/384/512 with MGF1 over the same hash and
 * trailerField 1; the SHA-1 defaults are refused.
 */
function parsePssParameters(parameters: Tlv): { hash: HashName; saltLength: number } {
  if (parameters.tag !== TAG.SEQUENCE)
    throw new AlgorithmError('malformed', 'RSASSA-PSS-params not a SEQUENCE');
  let hash: HashName | undefined;
  let mgfHash: HashName | undefined;
  let saltLength = 20;
  for (const field of parameters.children) {
    const inner = field.children[0];
    if (!inner || field.children.length !== 1)
      throw new AlgorithmError('malformed', 'malformed RSASSA-PSS-params');
    switch (field.tag) {
      case contextTag(0, true):
        hash = hashFromIdentifier(inner);
        break;
      case contextTag(1, true): {
        const [mgfOid, mgfParameters] = inner.children;
        if (!mgfOid || mgfOid.tag !== TAG.OID || decodeOid(mgfOid) !== OID.mgf1 || !mgfParameters) {
          throw new AlgorithmError('unsupported', 'RSASSA-PSS mask generation must be MGF1');
        }
        mgfHash = hashFromIdentifier(mgfParameters);
        break;
      }
      case contextTag(2, true): {
        if (inner.tag !== TAG.INTEGER) throw new AlgorithmError('malformed', 'saltLength is not an INTEGER');
        const value = decodeInteger(inner);
        if (value < 0n || value > 1024n)
          throw new AlgorithmError('unsupported', 'unreasonable PSS salt length');
        saltLength = Number(value);
        break;
      }
      case contextTag(3, true):
        if (inner.tag !== TAG.INTEGER || decodeInteger(inner) !== 1n) {
          throw new AlgorithmError('unsupported', 'RSASSA-PSS trailerField must be 1');
        }
        break;
      default:
        throw new AlgorithmError('malformed', 'unknown field in RSASSA-PSS-params');
    }
  }
  if (!hash || !mgfHash)
    throw new AlgorithmError('unsupported', 'RSASSA-PSS with the SHA-1 defaults is refused');
  if (hash !== mgfHash)
    throw new AlgorithmError('unsupported', 'RSASSA-PSS MGF1 hash must equal the message hash');
  return { hash, saltLength };
}

function hashFromIdentifier(identifier: Tlv): HashName {
  const [hashOid, parameters] = identifier.children;
  if (identifier.tag !== TAG.SEQUENCE || !hashOid || hashOid.tag !== TAG.OID) {
    throw new AlgorithmError('malformed', 'hash AlgorithmIdentifier malformed');
  }
  if (parameters && parameters.tag !== TAG.NULL)
    throw new AlgorithmError('malformed', 'hash parameters not NULL');
  const hash = HASH_OIDS[decodeOid(hashOid)];
  if (!hash) throw new AlgorithmError('unsupported', 'hash algorithm is not SHA-256, SHA-384 or SHA-512');
  return hash;
}

/** Verifies a signature with node:crypto; false for any failure, including a malformed signature. */
export function verifySignature(
  algorithm: SignatureAlgorithm,
  key: KeyObject,
  data: Uint8Array,
  signature: Uint8Array,
): boolean {
  try {
    switch (algorithm.keyType) {
      case 'ec':
        return nodeVerify(algorithm.hash!, data, { key, dsaEncoding: 'der' }, signature);
      case 'ed25519':
        return nodeVerify(null, data, key, signature);
      case 'rsa':
        if (algorithm.name === 'RSASSA-PSS') {
          return nodeVerify(
            algorithm.hash!,
            data,
            { key, padding: nodeCrypto.RSA_PKCS1_PSS_PADDING, saltLength: algorithm.saltLength! },
            signature,
          );
        }
        return nodeVerify(algorithm.hash!, data, { key, padding: nodeCrypto.RSA_PKCS1_PADDING }, signature);
    }
  } catch {
    return false;
  }
}

// ---- What certificates are signed with ----------------------------------------------------------

const identifierWithoutParameters = (id: string): Uint8Array => sequence(oid(id));

export const CERTIFICATE_SIGNATURE_ALGORITHMS = {
  'ecdsa-with-SHA256': {
    name: 'ecdsa-with-SHA256',
    oid: OID.ecdsaWithSha256,
    keyType: 'ec',
    hash: 'sha256',
    identifier: identifierWithoutParameters(OID.ecdsaWithSha256),
  },
  'ecdsa-with-SHA384': {
    name: 'ecdsa-with-SHA384',
    oid: OID.ecdsaWithSha384,
    keyType: 'ec',
    hash: 'sha384',
    identifier: identifierWithoutParameters(OID.ecdsaWithSha384),
  },
  sha256WithRSAEncryption: {
    name: 'sha256WithRSAEncryption',
    oid: OID.sha256WithRSAEncryption,
    keyType: 'rsa',
    hash: 'sha256',
    identifier: sequence(oid(OID.sha256WithRSAEncryption), NULL_DER),
  },
  Ed25519: {
    name: 'Ed25519',
    oid: OID.ed25519,
    keyType: 'ed25519',
    identifier: identifierWithoutParameters(OID.ed25519),
  },
} as const satisfies Record<string, SignatureAlgorithm>;

/**
 * The issuer's key decides the signature algorithm (NOTES.md: OpenSSL signs P-384 CSRs with
 * SHA-256 by default; never copy the request's choice): P-256 with SHA-256, P-384 with SHA-384
 * (RFC 5480 §4, BR §7.1.3.2.2), RSA with SHA-256 PKCS#1 v1.5, Ed25519 pure.
 */
export function signatureAlgorithmForKey(keyAlgorithm: PublicKeyAlgorithmName): SignatureAlgorithm {
  if (keyAlgorithm === 'ecdsa-p256') return CERTIFICATE_SIGNATURE_ALGORITHMS['ecdsa-with-SHA256'];
  if (keyAlgorithm === 'ecdsa-p384') return CERTIFICATE_SIGNATURE_ALGORITHMS['ecdsa-with-SHA384'];
  if (keyAlgorithm === 'ed25519') return CERTIFICATE_SIGNATURE_ALGORITHMS.Ed25519;
  if (/^rsa-\d+$/.test(keyAlgorithm)) return CERTIFICATE_SIGNATURE_ALGORITHMS.sha256WithRSAEncryption;
  throw new RangeError(`no certificate signature algorithm for key algorithm ${keyAlgorithm}`);
}

/** The WebCrypto `AlgorithmIdentifier` that makes `subtle.sign` produce this signature. */
export function webCryptoSignParams(
  algorithm: SignatureAlgorithm,
): webcrypto.AlgorithmIdentifier | webcrypto.EcdsaParams {
  switch (algorithm.keyType) {
    case 'ec':
      return { name: 'ECDSA', hash: algorithm.hash === 'sha384' ? 'SHA-384' : 'SHA-256' };
    case 'ed25519':
      return { name: 'Ed25519' };
    case 'rsa':
      return { name: 'RSASSA-PKCS1-v1_5' };
  }
}

export type SignatureSchemeKind = 'ecdsa' | 'rsa-pkcs1' | 'rsa-pss' | 'ed25519';

const HASH_OID: Record<HashName, string> = { sha256: OID.sha256, sha384: OID.sha384, sha512: OID.sha512 };
const ECDSA_OID: Record<HashName, string> = {
  sha256: OID.ecdsaWithSha256,
  sha384: OID.ecdsaWithSha384,
  sha512: OID.ecdsaWithSha512,
};
const RSA_PKCS1_OID: Record<HashName, string> = {
  sha256: OID.sha256WithRSAEncryption,
  sha384: OID.sha384WithRSAEncryption,
  sha512: OID.sha512WithRSAEncryption,
};

/**
 * The AlgorithmIdentifier (DER) of a signature scheme, for CRLs and OCSP responses: ECDSA without
 * parameters (RFC 5758 §3.2), RSASSA-PKCS1-v1_5 with NULL (RFC 4055 §5), RSASSA-PSS with its hash,
 * MGF1 with the same hash and the salt length when it is not the default 20 (RFC 4055 §3.1; the
 * hash identifiers without parameters, RFC 5754 §2), Ed25519 without parameters (RFC 8410 §3).
 */
export function signatureAlgorithmIdentifier(
  kind: SignatureSchemeKind,
  hash?: HashName,
  saltLength?: number,
): Uint8Array {
  if (kind === 'ed25519') return identifierWithoutParameters(OID.ed25519);
  if (!hash) throw new RangeError(`a ${kind} signature needs a hash`);
  if (kind === 'ecdsa') return identifierWithoutParameters(ECDSA_OID[hash]);
  if (kind === 'rsa-pkcs1') return sequence(oid(RSA_PKCS1_OID[hash]), NULL_DER);
  const hashIdentifier = sequence(oid(HASH_OID[hash]));
  return sequence(
    oid(OID.rsassaPss),
    sequence(
      tlv(contextTag(0, true), hashIdentifier),
      tlv(contextTag(1, true), sequence(oid(OID.mgf1), hashIdentifier)),
      ...(saltLength === undefined || saltLength === 20
        ? []
        : [tlv(contextTag(2, true), integerFromNumber(saltLength))]),
    ),
  );
}

/** WebCrypto ECDSA signatures are r||s (IEEE P1363); X.509 wants Ecdsa-Sig-Value (RFC 5480 §2.2). */
export function ecdsaP1363ToDer(signature: Uint8Array): Uint8Array {
  if (signature.length === 0 || signature.length % 2 !== 0)
    throw new RangeError('not an r||s ECDSA signature');
  const half = signature.length / 2;
  return sequence(
    integerFromUnsigned(signature.subarray(0, half)),
    integerFromUnsigned(signature.subarray(half)),
  );
}

/** Turns what WebCrypto `subtle.sign` returned into the X.509 signature value. */
export function signatureValueFromWebCrypto(
  algorithm: SignatureAlgorithm,
  signature: Uint8Array,
): Uint8Array {
  // WebCrypto's contract is r||s for ECDSA (W3C WebCrypto §23.4); the HSM facade keeps it.
  return algorithm.keyType === 'ec' ? ecdsaP1363ToDer(signature) : signature;
}
