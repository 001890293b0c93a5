import { createHash, createPublicKey } from 'node:crypto';
import type { StoredCertificate } from '../store.ts';
import type { KeyInfo } from '../types.ts';
import { readCertificateFields } from './cert-fields.ts';
import { CKA, CKC, CKK, CKM, CKO } from './pkcs11.ts';
import { type Attribute, boolValue, ulongValue } from './wire.ts';

/**
 * What a PKCS#11 client sees of the partition: for each exposed key a private key object, a
 * public key object and, when one is stored beside it, a certificate object (PKCS#11 v2.40 §4.8,
 * §4.9, §4.6.3), all sharing the key's CKA_ID.
 *
 * Exposed are only keys whose purposes are exactly ['other'] (issue #26): the CA's keys
 * (certificate, crl, ocsp) are invisible here, so no PKCS#11 client can sign a to-be-signed
 * certificate around the linter. Ed25519 keys are not exposed either: Debian's p11-kit client
 * drops CKM_EDDSA, and one Ed25519 key on a token makes libp11 fail to enumerate every key.
 */

export type ObjectKind = 'private' | 'public' | 'certificate';

export function isExposed(info: Pick<KeyInfo, 'purposes' | 'algorithm'>): boolean {
  return info.purposes.length === 1 && info.purposes[0] === 'other' && info.algorithm !== 'ed25519';
}

/** Attributes no client may read: the private key's secret parts (CKR_ATTRIBUTE_SENSITIVE). */
const SENSITIVE = new Set<number>([
  CKA.VALUE,
  CKA.PRIVATE_EXPONENT,
  CKA.PRIME_1,
  CKA.PRIME_2,
  CKA.EXPONENT_1,
  CKA.EXPONENT_2,
  CKA.COEFFICIENT,
]);

export function isSensitive(kind: ObjectKind, type: number): boolean {
  return kind === 'private' && SENSITIVE.has(type);
}

/** The named curves' OIDs, DER (CKA_EC_PARAMS, RFC 5480 §2.1.1.1). */
export const EC_PARAMS = {
  'ecdsa-p256': Buffer.from('06082a8648ce3d030107', 'hex'),
  'ecdsa-p384': Buffer.from('06052b81040022', 'hex'),
} as const;

interface PublicParts {
  ecPoint?: Buffer;
  modulus?: Buffer;
  exponent?: Buffer;
}

/** By key id and SPKI: a client reads some twenty attributes per object, each needing these. */
const publicParts = new Map<string, PublicParts>();

/** The public key's parameters as PKCS#11 spells them, computed once per key. */
function partsOf(info: KeyInfo): PublicParts {
  const cacheKey = `${info.id}:${Buffer.from(info.publicKey).toString('base64')}`;
  let parts = publicParts.get(cacheKey);
  if (!parts) {
    const jwk = createPublicKey({ key: Buffer.from(info.publicKey), format: 'der', type: 'spki' }).export({
      format: 'jwk',
    });
    if (jwk.kty === 'EC') {
      const point = Buffer.concat([
        Buffer.from([0x04]),
        Buffer.from(jwk.x!, 'base64url'),
        Buffer.from(jwk.y!, 'base64url'),
      ]);
      // CKA_EC_POINT is the DER OCTET STRING around the uncompressed point (PKCS#11 v2.40 §2.3.3).
      parts = { ecPoint: Buffer.concat([Buffer.from([0x04, point.length]), point]) };
    } else {
      parts = { modulus: Buffer.from(jwk.n!, 'base64url'), exponent: Buffer.from(jwk.e!, 'base64url') };
    }
    if (publicParts.size >= 1024) publicParts.clear();
    publicParts.set(cacheKey, parts);
  }
  return parts;
}

/** CKA_ID: the key id's octets. */
export const idOctets = (keyId: string): Buffer => Buffer.from(keyId, 'hex');

/**
 * The readable attributes of one object, canonical values (wire.ts). Sensitive attributes are
 * not in the map; isSensitive says which absent ones to refuse as such.
 */
export function objectAttributes(
  kind: ObjectKind,
  info: KeyInfo,
  certificate: StoredCertificate | undefined,
): Map<number, Buffer> {
  const cert = certificate ? readCertificateFields(certificate.der) : undefined;
  const a = new Map<number, Buffer>();
  const ec = info.algorithm === 'ecdsa-p256' || info.algorithm === 'ecdsa-p384';
  const parts = partsOf(info);
  const empty = Buffer.alloc(0);
  a.set(CKA.TOKEN, boolValue(true));
  a.set(CKA.PRIVATE, boolValue(kind === 'private'));
  a.set(CKA.MODIFIABLE, boolValue(false));
  a.set(CKA.COPYABLE, boolValue(false));
  // Keys are destroyed with signet hsm keys destroy, certificates also through PKCS#11 (admin.ts).
  a.set(CKA.DESTROYABLE, boolValue(kind === 'certificate'));
  a.set(CKA.ID, idOctets(info.id));
  a.set(CKA.PUBLIC_KEY_INFO, Buffer.from(info.publicKey));
  a.set(CKA.START_DATE, empty);
  a.set(CKA.END_DATE, empty);
  a.set(CKA.SUBJECT, cert ? cert.subject : empty);
  if (kind === 'certificate') {
    const der = Buffer.from(certificate!.der);
    a.set(CKA.CLASS, ulongValue(CKO.CERTIFICATE));
    a.set(CKA.LABEL, Buffer.from(certificate!.label, 'utf8'));
    a.set(CKA.CERTIFICATE_TYPE, ulongValue(CKC.X_509));
    a.set(CKA.TRUSTED, boolValue(false));
    a.set(CKA.CERTIFICATE_CATEGORY, ulongValue(0));
    // PKCS#11 v2.40 §4.6.2: the first three octets of the SHA-1 of the certificate.
    a.set(CKA.CHECK_VALUE, createHash('sha1').update(der).digest().subarray(0, 3));
    a.set(CKA.ISSUER, cert!.issuer);
    a.set(CKA.SERIAL_NUMBER, cert!.serialNumber);
    a.set(CKA.VALUE, der);
    a.set(CKA.URL, empty);
    a.set(CKA.HASH_OF_SUBJECT_PUBLIC_KEY, empty);
    a.set(CKA.HASH_OF_ISSUER_PUBLIC_KEY, empty);
    a.set(CKA.JAVA_MIDP_SECURITY_DOMAIN, ulongValue(0));
    return a;
  }
  a.set(CKA.CLASS, ulongValue(kind === 'private' ? CKO.PRIVATE_KEY : CKO.PUBLIC_KEY));
  a.set(CKA.LABEL, Buffer.from(info.label, 'utf8'));
  a.set(CKA.KEY_TYPE, ulongValue(ec ? CKK.EC : CKK.RSA));
  a.set(CKA.DERIVE, boolValue(false));
  a.set(CKA.LOCAL, boolValue(true));
  a.set(CKA.KEY_GEN_MECHANISM, ulongValue(ec ? CKM.EC_KEY_PAIR_GEN : CKM.RSA_PKCS_KEY_PAIR_GEN));
  if (ec) {
    a.set(CKA.EC_PARAMS, EC_PARAMS[info.algorithm as keyof typeof EC_PARAMS]);
    // On the private key too: libp11 reads the point from the key object it loads.
    a.set(CKA.EC_POINT, parts.ecPoint!);
  } else {
    a.set(CKA.MODULUS, parts.modulus!);
    a.set(CKA.PUBLIC_EXPONENT, parts.exponent!);
  }
  if (kind === 'private') {
    a.set(CKA.SENSITIVE, boolValue(true));
    a.set(CKA.ALWAYS_SENSITIVE, boolValue(true));
    a.set(CKA.EXTRACTABLE, boolValue(info.extractable));
    a.set(CKA.NEVER_EXTRACTABLE, boolValue(!info.extractable));
    a.set(CKA.SIGN, boolValue(info.usages.includes('sign')));
    a.set(CKA.SIGN_RECOVER, boolValue(false));
    a.set(CKA.DECRYPT, boolValue(false));
    a.set(CKA.UNWRAP, boolValue(false));
    a.set(CKA.WRAP_WITH_TRUSTED, boolValue(false));
    a.set(CKA.ALWAYS_AUTHENTICATE, boolValue(false));
  } else {
    a.set(CKA.VERIFY, boolValue(info.usages.includes('verify')));
    a.set(CKA.VERIFY_RECOVER, boolValue(false));
    a.set(CKA.ENCRYPT, boolValue(false));
    a.set(CKA.WRAP, boolValue(false));
    a.set(CKA.TRUSTED, boolValue(false));
    if (!ec) a.set(CKA.MODULUS_BITS, ulongValue(parts.modulus!.length * 8));
  }
  return a;
}

/** C_FindObjectsInit: every attribute of the template is present with an equal value (§5.7). */
export function matches(attributes: Map<number, Buffer>, template: readonly Attribute[]): boolean {
  for (const wanted of template) {
    const have = attributes.get(wanted.type);
    if (!have || !wanted.value || wanted.nested || !have.equals(wanted.value)) return false;
  }
  return true;
}

export interface ObjectRef {
  keyId: string;
  kind: ObjectKind;
}

/**
 * Object handles of one connection. A handle names the same object for the connection's life and
 * is never reused. Every key of the partition gets handles, exposed or not: a client that guesses
 * the handle of a CA key finds an object it may neither see nor use (CKR_OBJECT_HANDLE_INVALID,
 * CKR_KEY_FUNCTION_NOT_PERMITTED), which is the partition's refusal rather than an accident of
 * numbering.
 */
export class HandleTable {
  private readonly byObject = new Map<string, number>();
  private readonly byHandle = new Map<number, ObjectRef>();
  private next = 1;

  handleOf(keyId: string, kind: ObjectKind): number {
    const name = `${keyId}/${kind}`;
    let handle = this.byObject.get(name);
    if (handle === undefined) {
      handle = this.next++;
      this.byObject.set(name, handle);
      this.byHandle.set(handle, { keyId, kind });
    }
    return handle;
  }

  resolve(handle: number): ObjectRef | undefined {
    return this.byHandle.get(handle);
  }
}
