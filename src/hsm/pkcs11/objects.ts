import { createPublicKey } from 'node:crypto';
import type * as Pkcs11Js from 'pkcs11js';
import { KEY_ALGORITHM_SPECS } from '../mechanisms.ts';
import { CKA } from '../p11/pkcs11.ts';
import type { TokenKeyEntry } from '../token-keys.ts';
import { HsmError, type KeyAlgorithm, type KeyUsage } from '../types.ts';
import { CKK_EC, CKK_EC_EDWARDS, CKK_RSA, CKO_PRIVATE_KEY, CKO_PUBLIC_KEY, EC_PARAMS } from './constants.ts';
import { isTokenGone } from './errors.ts';
import type { Pkcs11Instance } from './module.ts';

/** The token's objects: finding them, reading their attributes, a key's description, a key pair's templates. */

export const u = (n: number) => n;
export const readUlong = (buffer: Buffer): number =>
  buffer.length >= 8 ? Number(buffer.readBigUInt64LE(0)) : buffer.readUInt32LE(0);
export const readBool = (buffer: Buffer): boolean => buffer.length > 0 && buffer[0] !== 0;
const b64url = (buffer: Buffer) => buffer.toString('base64url');

/** CKA_EC_POINT is a DER OCTET STRING around the point (PKCS#11 v2.40 §2.3.3); some modules give the bare point. */
function unwrapPoint(value: Buffer, pointLength: number): Buffer {
  if (value.length === pointLength) return value;
  if (value[0] === 0x04) {
    const short = value[1]! < 0x80;
    const offset = short ? 2 : 2 + (value[1]! & 0x7f);
    const inner = value.subarray(offset);
    if (inner.length === pointLength) return inner;
  }
  throw new HsmError('CKR_DEVICE_ERROR', 'the token returned an EC point of an unexpected form');
}

function spkiOf(algorithm: KeyAlgorithm, attrs: Map<number, Buffer>): Buffer {
  let jwk: Record<string, string>;
  if (algorithm === 'ed25519') {
    jwk = { kty: 'OKP', crv: 'Ed25519', x: b64url(unwrapPoint(attrs.get(CKA.EC_POINT)!, 32)) };
  } else if (algorithm.startsWith('ecdsa')) {
    const size = algorithm === 'ecdsa-p256' ? 32 : 48;
    const point = unwrapPoint(attrs.get(CKA.EC_POINT)!, 1 + 2 * size);
    if (point[0] !== 0x04) throw new HsmError('CKR_DEVICE_ERROR', 'the token returned a compressed EC point');
    jwk = {
      kty: 'EC',
      crv: algorithm === 'ecdsa-p256' ? 'P-256' : 'P-384',
      x: b64url(point.subarray(1, 1 + size)),
      y: b64url(point.subarray(1 + size)),
    };
  } else {
    jwk = { kty: 'RSA', n: b64url(attrs.get(CKA.MODULUS)!), e: b64url(attrs.get(CKA.PUBLIC_EXPONENT)!) };
  }
  return createPublicKey({ key: jwk, format: 'jwk' }).export({ format: 'der', type: 'spki' });
}

function algorithmOf(keyType: number, attrs: Map<number, Buffer>): KeyAlgorithm | undefined {
  if (keyType === CKK_EC_EDWARDS) return 'ed25519';
  if (keyType === CKK_EC) {
    const params = attrs.get(CKA.EC_PARAMS);
    if (params?.equals(EC_PARAMS['ecdsa-p256'])) return 'ecdsa-p256';
    if (params?.equals(EC_PARAMS['ecdsa-p384'])) return 'ecdsa-p384';
    return undefined;
  }
  if (keyType === CKK_RSA) {
    const bits = (attrs.get(CKA.MODULUS)?.length ?? 0) * 8;
    return (['rsa-2048', 'rsa-3072', 'rsa-4096'] as const).find((a) => a === `rsa-${bits}`);
  }
  return undefined;
}

export function findObjects(pkcs11: Pkcs11Instance, session: Buffer, template: Pkcs11Js.Template): Buffer[] {
  pkcs11.C_FindObjectsInit(session, template);
  try {
    const all: Buffer[] = [];
    for (;;) {
      const batch = pkcs11.C_FindObjects(session, 64);
      all.push(...batch);
      if (batch.length < 64) return all;
    }
  } finally {
    pkcs11.C_FindObjectsFinal(session);
  }
}

export function readAttributes(
  pkcs11: Pkcs11Instance,
  session: Buffer,
  object: Buffer,
  types: number[],
): Map<number, Buffer> {
  const result = new Map<number, Buffer>();
  // One call per attribute: a module answers CKR_ATTRIBUTE_TYPE_INVALID for a whole template
  // when one attribute does not apply to the object.
  for (const type of types) {
    try {
      const [attr] = pkcs11.C_GetAttributeValue(session, object, [{ type }]);
      if (attr?.value) result.set(type, attr.value as Buffer);
    } catch (error) {
      if (isTokenGone(error)) throw error;
    }
  }
  return result;
}

export function describeKey(
  pkcs11: Pkcs11Instance,
  session: Buffer,
  priv: Buffer,
): TokenKeyEntry | undefined {
  const attrs = readAttributes(pkcs11, session, priv, [
    CKA.ID,
    CKA.LABEL,
    CKA.KEY_TYPE,
    CKA.SIGN,
    CKA.EXTRACTABLE,
    CKA.EC_PARAMS,
    CKA.MODULUS,
    CKA.PUBLIC_EXPONENT,
  ]);
  const id = attrs.get(CKA.ID);
  const keyType = attrs.get(CKA.KEY_TYPE);
  if (!id || id.length === 0 || id.length > 32 || !keyType) return undefined;
  // The public half gives the point (EC) or is the only place it is readable.
  const [pub] = findObjects(pkcs11, session, [
    { type: CKA.CLASS, value: u(CKO_PUBLIC_KEY) },
    { type: CKA.ID, value: id },
  ]);
  if (pub) {
    for (const [type, value] of readAttributes(pkcs11, session, pub, [
      CKA.EC_PARAMS,
      CKA.EC_POINT,
      CKA.MODULUS,
      CKA.PUBLIC_EXPONENT,
    ]))
      attrs.set(type, value);
  }
  const algorithm = algorithmOf(readUlong(keyType), attrs);
  if (!algorithm) return undefined;
  if (algorithm !== 'ed25519' && !algorithm.startsWith('rsa') && !attrs.has(CKA.EC_POINT)) return undefined;
  if (algorithm === 'ed25519' && !attrs.has(CKA.EC_POINT)) return undefined;
  if (algorithm.startsWith('rsa') && !(attrs.has(CKA.MODULUS) && attrs.has(CKA.PUBLIC_EXPONENT)))
    return undefined;
  const sign = attrs.has(CKA.SIGN) && readBool(attrs.get(CKA.SIGN)!);
  return {
    id: id.toString('hex'),
    label: attrs.get(CKA.LABEL)?.toString('utf8') ?? '',
    algorithm,
    usages: sign ? ['sign', 'verify'] : ['verify'],
    extractable: attrs.has(CKA.EXTRACTABLE) && readBool(attrs.get(CKA.EXTRACTABLE)!),
    publicKey: spkiOf(algorithm, attrs),
  };
}

/**
 * The templates of a key pair generated on the token: CKA_TOKEN, CKA_PRIVATE and CKA_SENSITIVE
 * true, CKA_EXTRACTABLE false, and only the usages asked.
 */
export function keyPairTemplates(request: {
  id: string;
  label: string;
  algorithm: KeyAlgorithm;
  usages: KeyUsage[];
}): { publicTemplate: Pkcs11Js.Template; privateTemplate: Pkcs11Js.Template } {
  const { id, label, algorithm, usages } = request;
  const idBytes = Buffer.from(id, 'hex');
  const common = [
    { type: CKA.TOKEN, value: true },
    { type: CKA.LABEL, value: label },
    { type: CKA.ID, value: idBytes },
  ];
  const publicTemplate: Pkcs11Js.Template = [
    ...common,
    { type: CKA.CLASS, value: u(CKO_PUBLIC_KEY) },
    { type: CKA.PRIVATE, value: false },
    { type: CKA.VERIFY, value: true },
    { type: CKA.ENCRYPT, value: false },
    { type: CKA.WRAP, value: false },
  ];
  const privateTemplate: Pkcs11Js.Template = [
    ...common,
    { type: CKA.CLASS, value: u(CKO_PRIVATE_KEY) },
    { type: CKA.PRIVATE, value: true },
    { type: CKA.SENSITIVE, value: true },
    { type: CKA.EXTRACTABLE, value: false },
    { type: CKA.SIGN, value: usages.includes('sign') },
    { type: CKA.DECRYPT, value: false },
    { type: CKA.UNWRAP, value: false },
  ];
  const spec = KEY_ALGORITHM_SPECS[algorithm].generate;
  if (spec.type === 'rsa') {
    publicTemplate.push(
      { type: CKA.MODULUS_BITS, value: u(spec.modulusLength) },
      { type: CKA.PUBLIC_EXPONENT, value: Buffer.from([1, 0, 1]) },
    );
  } else {
    publicTemplate.push({ type: CKA.EC_PARAMS, value: EC_PARAMS[algorithm as keyof typeof EC_PARAMS] });
    privateTemplate.push({ type: CKA.DERIVE, value: false });
  }
  return { publicTemplate, privateTemplate };
}
