import {
  constants,
  createECDH,
  createHash,
  type ECDH,
  type KeyObject,
  privateEncrypt,
  randomBytes,
} from 'node:crypto';
import { KEY_ALGORITHM_SPECS } from './mechanisms.ts';
import { HsmError, type KeyAlgorithm, type KeyInfo, type RawSignRequest } from './types.ts';

/**
 * Signatures over input the caller prepared, as PKCS#11 clients ask for them through the p11-kit
 * front end (p11/): CKM_ECDSA signs a digest, CKM_RSA_PKCS pads and signs a DigestInfo the caller
 * built, CKM_RSA_PKCS_PSS signs a digest with EMSA-PSS. Such a signature can cover anything at
 * all, including a to-be-signed certificate the linter never saw, so only keys whose purposes
 * are exactly ['other'] may make one (issue #26); the CA's keys never can.
 *
 * Node has no API that signs a precomputed digest with ECDSA (crypto.sign hashes again, NOTES.md),
 * so ECDSA is written out here (SEC 1 v2 §4.1.3): the nonce point k·G comes from OpenSSL (an ECDH
 * key pair, its scalar drawn from OpenSSL's generator), the arithmetic modulo n is BigInt. BigInt
 * is not constant-time: the nonce is inverted only after blinding with a fresh random factor, so
 * the inversion's timing says nothing about k. RSA goes through OpenSSL (privateEncrypt), which
 * blinds on its own.
 */

interface Curve {
  /** OpenSSL's name for createECDH. */
  name: 'prime256v1' | 'secp384r1';
  n: bigint;
  /** Octets of n, and of r and s in the IEEE P1363 signature. */
  size: number;
  bits: number;
}

const CURVES: Partial<Record<KeyAlgorithm, Curve>> = {
  'ecdsa-p256': {
    name: 'prime256v1',
    n: 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n,
    size: 32,
    bits: 256,
  },
  'ecdsa-p384': {
    name: 'secp384r1',
    n: 0xffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf581a0db248b0a77aecec196accc52973n,
    size: 48,
    bits: 384,
  },
};

const HASH_LENGTHS = { sha1: 20, sha256: 32, sha384: 48, sha512: 64 } as const;
/** Largest digest CKM_ECDSA accepts: SHA-512's; anything longer is no digest. */
const MAX_ECDSA_INPUT = 64;

/** True when a key may make signatures over prepared input: purposes exactly ['other'], a signing key. */
export function mayRawSign(info: Pick<KeyInfo, 'purposes' | 'usages'>): boolean {
  return info.purposes.length === 1 && info.purposes[0] === 'other' && info.usages.includes('sign');
}

/** Octets of a signature this key makes (the size C_Sign reports before signing). */
export function signatureLength(algorithm: KeyAlgorithm): number {
  const curve = CURVES[algorithm];
  if (curve) return 2 * curve.size;
  const spec = KEY_ALGORITHM_SPECS[algorithm].generate;
  if (spec.type === 'rsa') return spec.modulusLength / 8;
  return 64;
}

/**
 * Signs prepared input with a key the caller has already checked (mayRawSign). Throws HsmError
 * for a mechanism that does not suit the key or input of the wrong size.
 */
export function rawSign(
  info: Pick<KeyInfo, 'algorithm' | 'label'>,
  privateKey: KeyObject,
  request: Pick<RawSignRequest, 'mechanism' | 'data' | 'pss'>,
): Buffer {
  const { algorithm } = info;
  const data = Buffer.from(request.data.buffer, request.data.byteOffset, request.data.byteLength);
  const family = KEY_ALGORITHM_SPECS[algorithm].family;
  const wants = request.mechanism.startsWith('ecdsa') ? 'ec' : 'rsa';
  if (family !== wants) {
    throw new HsmError(
      'CKR_KEY_TYPE_INCONSISTENT',
      `mechanism ${request.mechanism} does not suit a ${algorithm} key`,
    );
  }
  switch (request.mechanism) {
    case 'ecdsa-sha1':
      return ecdsaDigest(CURVES[algorithm]!, privateKey, createHash('sha1').update(data).digest());
    case 'ecdsa-raw':
      if (data.length < 1 || data.length > MAX_ECDSA_INPUT)
        throw new HsmError(
          'CKR_DATA_LEN_RANGE',
          `CKM_ECDSA signs a digest of 1 to ${MAX_ECDSA_INPUT} octets`,
        );
      return ecdsaDigest(CURVES[algorithm]!, privateKey, data);
    case 'rsa-pkcs1-raw': {
      // RFC 8017 §9.2 step 3: the padding needs 11 octets of the modulus.
      if (data.length < 1 || data.length > signatureLength(algorithm) - 11)
        throw new HsmError('CKR_DATA_LEN_RANGE', 'CKM_RSA_PKCS input is longer than the modulus allows');
      return privateEncrypt({ key: privateKey, padding: constants.RSA_PKCS1_PADDING }, data);
    }
    case 'rsa-pss-raw': {
      const pss = request.pss;
      if (!pss || !Object.hasOwn(HASH_LENGTHS, pss.hash))
        throw new HsmError('CKR_MECHANISM_PARAM_INVALID', 'CKM_RSA_PKCS_PSS needs its hash and salt length');
      if (data.length !== HASH_LENGTHS[pss.hash])
        throw new HsmError('CKR_DATA_LEN_RANGE', `CKM_RSA_PKCS_PSS signs a ${pss.hash} digest`);
      const modulusBits = signatureLength(algorithm) * 8;
      const em = emsaPssEncode(data, modulusBits - 1, pss.hash, pss.saltLength);
      return privateEncrypt({ key: privateKey, padding: constants.RSA_NO_PADDING }, em);
    }
    default:
      throw new HsmError('CKR_MECHANISM_INVALID', `unknown mechanism '${String(request.mechanism)}'`);
  }
}

const scalars = new WeakMap<KeyObject, bigint>();

function privateScalar(privateKey: KeyObject): bigint {
  let d = scalars.get(privateKey);
  if (d === undefined) {
    const jwk = privateKey.export({ format: 'jwk' });
    d = toBigInt(Buffer.from(jwk.d!, 'base64url'));
    scalars.set(privateKey, d);
  }
  return d;
}

const toBigInt = (bytes: Uint8Array): bigint =>
  bytes.length === 0 ? 0n : BigInt(`0x${Buffer.from(bytes).toString('hex')}`);

function toOctets(value: bigint, size: number): Buffer {
  return Buffer.from(value.toString(16).padStart(size * 2, '0'), 'hex');
}

/** x mod n in [0, n). */
const mod = (x: bigint, n: bigint): bigint => {
  const r = x % n;
  return r < 0n ? r + n : r;
};

/** The inverse modulo n (prime) by the extended Euclidean algorithm. */
function invert(a: bigint, n: bigint): bigint {
  let t = 0n;
  let nextT = 1n;
  let r = n;
  let nextR = mod(a, n);
  while (nextR !== 0n) {
    const q = r / nextR;
    const t2 = t - q * nextT;
    t = nextT;
    nextT = t2;
    const r2 = r - q * nextR;
    r = nextR;
    nextR = r2;
  }
  if (r !== 1n) throw new HsmError('CKR_DEVICE_ERROR', 'no inverse');
  return mod(t, n);
}

/** One ECDH object per curve, given a fresh key pair for each nonce (generateKeys is synchronous). */
const nonceSources = new Map<Curve['name'], ECDH>();

/** A uniformly random integer in [1, n). */
function randomScalar(curve: Curve): bigint {
  for (;;) {
    const k = toBigInt(randomBytes(curve.size));
    if (k > 0n && k < curve.n) return k;
  }
}

/** ECDSA over a digest (SEC 1 v2 §4.1.3), answered in IEEE P1363 r||s like the partition's other ECDSA signatures. */
function ecdsaDigest(curve: Curve, privateKey: KeyObject, digest: Buffer): Buffer {
  const { n } = curve;
  const d = privateScalar(privateKey);
  // Step 5: the leftmost bits of the digest, as many as n has.
  let e = toBigInt(digest);
  if (digest.length * 8 > curve.bits) e >>= BigInt(digest.length * 8 - curve.bits);
  for (;;) {
    let ephemeral = nonceSources.get(curve.name);
    if (!ephemeral) {
      ephemeral = createECDH(curve.name);
      nonceSources.set(curve.name, ephemeral);
    }
    const point = ephemeral.generateKeys();
    const k = toBigInt(ephemeral.getPrivateKey());
    // An uncompressed point is 0x04 || x || y (SEC 1 v2 §2.3.3).
    const r = mod(toBigInt(point.subarray(1, 1 + curve.size)), n);
    if (r === 0n) continue;
    const blind = randomScalar(curve);
    const kInverse = mod(invert(mod(k * blind, n), n) * blind, n);
    const s = mod(kInverse * mod(e + r * d, n), n);
    if (s === 0n) continue;
    return Buffer.concat([toOctets(r, curve.size), toOctets(s, curve.size)]);
  }
}

/** MGF1 (RFC 8017 §B.2.1). */
function mgf1(seed: Buffer, length: number, hash: string): Buffer {
  const out: Buffer[] = [];
  let produced = 0;
  for (let counter = 0; produced < length; counter++) {
    const c = Buffer.alloc(4);
    c.writeUInt32BE(counter);
    const block = createHash(hash).update(seed).update(c).digest();
    out.push(block);
    produced += block.length;
  }
  return Buffer.concat(out).subarray(0, length);
}

/** EMSA-PSS-ENCODE (RFC 8017 §9.1.1) of a message digest, MGF1 with the same hash, left-padded to the modulus. */
function emsaPssEncode(
  mHash: Buffer,
  emBits: number,
  hash: keyof typeof HASH_LENGTHS,
  saltLength: number,
): Buffer {
  const hLen = HASH_LENGTHS[hash];
  const emLen = Math.ceil(emBits / 8);
  if (!Number.isSafeInteger(saltLength) || saltLength < 0 || emLen < hLen + saltLength + 2) {
    throw new HsmError('CKR_MECHANISM_PARAM_INVALID', `salt length ${saltLength} does not fit the modulus`);
  }
  const salt = randomBytes(saltLength);
  const h = createHash(hash).update(Buffer.alloc(8)).update(mHash).update(salt).digest();
  const db = Buffer.alloc(emLen - hLen - 1);
  db[emLen - saltLength - hLen - 2] = 0x01;
  salt.copy(db, emLen - saltLength - hLen - 1);
  const mask = mgf1(h, db.length, hash);
  for (let i = 0; i < db.length; i++) db[i]! ^= mask[i]!;
  db[0]! &= 0xff >> (8 * emLen - emBits);
  const em = Buffer.concat([db, h, Buffer.from([0xbc])]);
  const modulusLength = Math.ceil((emBits + 1) / 8);
  return em.length === modulusLength ? em : Buffer.concat([Buffer.alloc(modulusLength - em.length), em]);
}
