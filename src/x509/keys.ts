/**
 * Public key checks for subscriber keys (CA/B Forum BR §6.1.5, §6.1.6; RFC 3279, RFC 5480,
 * RFC 8410): which algorithms and sizes are accepted, and whether the key material is sound.
 */

import { createHash } from 'node:crypto';
import { bitStringBytes, content, decodeOid, encoding, readDer, TAG, type Tlv, toHex } from './der.ts';
import { OID } from './oids.ts';
import type { PublicKeyAlgorithmName } from './types.ts';

export type KeyType = 'rsa' | 'ec' | 'ed25519';

export interface PublicKeyDetails {
  type: KeyType;
  /** `ecdsa-p256`, `ecdsa-p384`, `ed25519`, `rsa-<bits>`. */
  name: PublicKeyAlgorithmName;
  /** RSA modulus size, EC field size, 256 for Ed25519. */
  bits: number;
  curve?: 'P-256' | 'P-384';
  /** SubjectPublicKeyInfo, DER, exactly as given. */
  spki: Uint8Array;
  /** The subjectPublicKey BIT STRING's value (the key itself). */
  subjectPublicKey: Uint8Array;
}

export type KeyErrorReason = 'malformed' | 'unsupported' | 'weak';

export class KeyError extends Error {
  override readonly name = 'KeyError';
  constructor(
    readonly reason: KeyErrorReason,
    message: string,
  ) {
    super(message);
  }
}

export interface KeyCheckOptions {
  /** Rounds of Fermat factorisation; BR §6.1.6 and Boulder's goodkey use 100. */
  fermatRounds?: number;
}

export const RSA_MIN_BITS = 2048;
export const RSA_MAX_BITS = 8192;

/**
 * Reads and checks a SubjectPublicKeyInfo. Throws KeyError('malformed') for a structure that is
 * not an SPKI, 'unsupported' for algorithms or parameters we do not issue for, and 'weak' for
 * keys that are too small, invalid, or factorable.
 */
export function inspectPublicKey(spki: Uint8Array | Tlv, options: KeyCheckOptions = {}): PublicKeyDetails {
  let root: Tlv;
  try {
    root = spki instanceof Uint8Array ? readDer(spki, { maxDepth: 4 }) : spki;
  } catch (error) {
    throw new KeyError('malformed', `SubjectPublicKeyInfo is not DER: ${(error as Error).message}`);
  }
  const [algorithm, key, ...extra] = root.children;
  if (
    root.tag !== TAG.SEQUENCE ||
    !algorithm ||
    !key ||
    extra.length > 0 ||
    algorithm.tag !== TAG.SEQUENCE ||
    key.tag !== TAG.BIT_STRING
  ) {
    throw new KeyError(
      'malformed',
      'SubjectPublicKeyInfo is not SEQUENCE { AlgorithmIdentifier, BIT STRING }',
    );
  }
  const [algorithmOid, parameters, ...moreParameters] = algorithm.children;
  if (!algorithmOid || algorithmOid.tag !== TAG.OID || moreParameters.length > 0) {
    throw new KeyError('malformed', 'malformed AlgorithmIdentifier in SubjectPublicKeyInfo');
  }
  const { bytes: subjectPublicKey, unusedBits } = bitStringBytes(key);
  if (unusedBits !== 0) throw new KeyError('malformed', 'subjectPublicKey has unused bits');
  const spkiBytes = encoding(root);
  const algorithmId = decodeOid(algorithmOid);

  switch (algorithmId) {
    case OID.rsaEncryption: {
      // RFC 3279 §2.3.1: the parameters MUST be NULL.
      if (!parameters || parameters.tag !== TAG.NULL) {
        throw new KeyError('malformed', 'rsaEncryption parameters must be NULL (RFC 3279 §2.3.1)');
      }
      const bits = checkRsaKey(subjectPublicKey, options.fermatRounds ?? 100);
      return { type: 'rsa', name: `rsa-${bits}`, bits, spki: spkiBytes, subjectPublicKey };
    }
    case OID.ecPublicKey: {
      // RFC 5480 §2.1.1: namedCurve only; implicitCurve and specifiedCurve MUST NOT be used.
      if (!parameters || parameters.tag !== TAG.OID) {
        throw new KeyError('unsupported', 'EC keys must name their curve (RFC 5480 §2.1.1)');
      }
      const curveOid = decodeOid(parameters);
      const curve = curveOid === OID.secp256r1 ? 'P-256' : curveOid === OID.secp384r1 ? 'P-384' : undefined;
      if (!curve)
        throw new KeyError('unsupported', `EC curve ${curveOid} is not accepted (P-256 and P-384 are)`);
      checkEcPoint(curve, subjectPublicKey);
      const bits = curve === 'P-256' ? 256 : 384;
      return {
        type: 'ec',
        name: curve === 'P-256' ? 'ecdsa-p256' : 'ecdsa-p384',
        bits,
        curve,
        spki: spkiBytes,
        subjectPublicKey,
      };
    }
    case OID.ed25519:
      // RFC 8410 §3: the parameters MUST be absent.
      if (parameters) throw new KeyError('malformed', 'Ed25519 parameters must be absent (RFC 8410 §3)');
      checkEd25519Point(subjectPublicKey);
      return { type: 'ed25519', name: 'ed25519', bits: 256, spki: spkiBytes, subjectPublicKey };
    case OID.rsassaPss:
      throw new KeyError('unsupported', 'RSASSA-PSS-restricted keys are not accepted; use rsaEncryption');
    default:
      throw new KeyError('unsupported', `public key algorithm ${algorithmId} is not accepted`);
  }
}

/** SHA-256 of the SubjectPublicKeyInfo DER, hex: the key blocklist's and Boulder's key hash. */
export function spkiSha256(spki: Uint8Array): string {
  return createHash('sha256').update(spki).digest('hex');
}

// ---- RSA ----------------------------------------------------------------------------------------

function bigintFrom(bytes: Uint8Array): bigint {
  return bytes.length === 0 ? 0n : BigInt(`0x${toHex(bytes)}`);
}

function checkRsaKey(subjectPublicKey: Uint8Array, fermatRounds: number): number {
  let rsaKey: Tlv;
  try {
    rsaKey = readDer(subjectPublicKey, { maxDepth: 2 });
  } catch (error) {
    throw new KeyError('malformed', `RSAPublicKey is not DER: ${(error as Error).message}`);
  }
  const [modulusTlv, exponentTlv, ...extra] = rsaKey.children;
  if (
    rsaKey.tag !== TAG.SEQUENCE ||
    !modulusTlv ||
    !exponentTlv ||
    extra.length > 0 ||
    modulusTlv.tag !== TAG.INTEGER ||
    exponentTlv.tag !== TAG.INTEGER
  ) {
    throw new KeyError('malformed', 'RSAPublicKey is not SEQUENCE { INTEGER, INTEGER } (RFC 3279 §2.3.1)');
  }
  const modulusBytes = content(modulusTlv);
  if (modulusBytes[0]! >= 0x80) throw new KeyError('malformed', 'RSA modulus is negative');
  const n = bigintFrom(modulusBytes);
  const e = bigintFrom(content(exponentTlv));
  const bits = n.toString(2).length;
  if (n === 0n) throw new KeyError('malformed', 'RSA modulus is zero');
  // BR §6.1.5: at least 2048 bits and a multiple of 8; above 8192 bits verification cost is a DoS.
  if (bits < RSA_MIN_BITS)
    throw new KeyError('weak', `RSA key of ${bits} bits; at least ${RSA_MIN_BITS} needed`);
  if (bits > RSA_MAX_BITS) {
    throw new KeyError('unsupported', `RSA key of ${bits} bits; at most ${RSA_MAX_BITS} accepted`);
  }
  if (bits % 8 !== 0)
    throw new KeyError('weak', `RSA modulus of ${bits} bits is not a multiple of 8 (BR §6.1.5)`);
  // BR §6.1.6 allows odd exponents from 2^16+1 to 2^256-1; we accept only 65537, as Boulder does.
  if (e !== 65537n) throw new KeyError('weak', 'RSA public exponent must be 65537');
  if ((n & 1n) === 0n) throw new KeyError('weak', 'RSA modulus is even');
  for (const prime of SMALL_PRIMES) {
    if (n % prime === 0n) throw new KeyError('weak', 'RSA modulus has a small prime factor');
  }
  if (fermatFactor(n, fermatRounds)) {
    throw new KeyError(
      'weak',
      'RSA modulus factors by Fermat’s method: its primes are too close (BR §6.1.6)',
    );
  }
  return bits;
}

/** The odd primes below 752, as Boulder's goodkey checks. */
const SMALL_PRIMES: readonly bigint[] = (() => {
  const primes: bigint[] = [];
  for (let candidate = 3; candidate < 752; candidate += 2) {
    let prime = true;
    for (let d = 3; d * d <= candidate; d += 2) {
      if (candidate % d === 0) {
        prime = false;
        break;
      }
    }
    if (prime) primes.push(BigInt(candidate));
  }
  return primes;
})();

export function isqrt(n: bigint): bigint {
  if (n < 0n) throw new RangeError('square root of a negative number');
  if (n < 2n) return n;
  // Newton's method from an initial guess above the root.
  let x = 1n << BigInt(Math.ceil(n.toString(2).length / 2));
  for (;;) {
    const y = (x + n / x) >> 1n;
    if (y >= x) return x;
    x = y;
  }
}

/** Quadratic residues modulo 64, 63 and 65: a cheap filter before the exact square root. */
const SQUARE_MOD_64 = residues(64);
const SQUARE_MOD_63 = residues(63);
const SQUARE_MOD_65 = residues(65);

function residues(m: number): boolean[] {
  const table = new Array<boolean>(m).fill(false);
  for (let i = 0; i < m; i++) table[(i * i) % m] = true;
  return table;
}

function isSquare(n: bigint): boolean {
  if (!SQUARE_MOD_64[Number(n & 63n)]) return false;
  if (!SQUARE_MOD_63[Number(n % 63n)] || !SQUARE_MOD_65[Number(n % 65n)]) return false;
  const root = isqrt(n);
  return root * root === n;
}

/**
 * Fermat's factorisation: tries a = ceil(sqrt(n)), a+1, ... for `rounds` steps and reports
 * whether a^2 - n is a perfect square, i.e. whether n = (a-b)(a+b) with close primes.
 */
export function fermatFactor(n: bigint, rounds: number): boolean {
  let a = isqrt(n);
  if (a * a < n) a += 1n;
  let b2 = a * a - n;
  for (let i = 0; i < rounds; i++) {
    if (isSquare(b2)) {
      const b = isqrt(b2);
      // a - b > 1 means a real factorisation (n = 1 * n does not count).
      if (a - b > 1n) return true;
    }
    b2 += 2n * a + 1n;
    a += 1n;
  }
  return false;
}

// ---- EC (RFC 5480 §2.2, SEC 1 §3.2.2.1) ---------------------------------------------------------

const CURVES = {
  'P-256': {
    p: 0xffffffff00000001000000000000000000000000ffffffffffffffffffffffffn,
    b: 0x5ac635d8aa3a93e7b3ebbd55769886bc651d06b0cc53b0f63bce3c3e27d2604bn,
    size: 32,
  },
  'P-384': {
    p: 0xfffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffeffffffff0000000000000000ffffffffn,
    b: 0xb3312fa7e23ee7e4988e056be3f82d19181d9c6efe8141120314088f5013875ac656398d8a2ed19d2a85c8edd3ec2aefn,
    size: 48,
  },
} as const;

/**
 * SEC 1 §3.2.2.1 public key validation: not the point at infinity, coordinates in the field,
 * on the curve. The cofactor of P-256 and P-384 is 1, so that is all there is to check.
 */
function checkEcPoint(curve: 'P-256' | 'P-384', point: Uint8Array): void {
  const { p, b, size } = CURVES[curve];
  if (point.length === 1 && point[0] === 0)
    throw new KeyError('weak', 'EC public key is the point at infinity');
  if (point[0] === 0x02 || point[0] === 0x03) {
    throw new KeyError('unsupported', 'compressed EC points are not accepted (RFC 5480 §2.2)');
  }
  if (point[0] !== 0x04 || point.length !== 1 + 2 * size) {
    throw new KeyError('malformed', `EC point is not an uncompressed ${curve} point`);
  }
  const x = bigintFrom(point.subarray(1, 1 + size));
  const y = bigintFrom(point.subarray(1 + size));
  if (x >= p || y >= p) throw new KeyError('weak', 'EC point coordinate outside the field');
  const rhs = (((x * x) % p) * x - 3n * x + b) % p;
  const lhs = (y * y) % p;
  if (lhs !== (rhs + p) % p) throw new KeyError('weak', `EC point is not on ${curve}`);
}

// ---- Ed25519 (RFC 8032 §5.1.3) ------------------------------------------------------------------

const ED_P = (1n << 255n) - 19n;
const ED_D = 37095705934669439343138083508754565189542113879843219016388785533085940283555n;
const ED_SQRT_M1 = 19681161376707505956807079304988542015446066515923890162744021073123829784752n;

function modPow(base: bigint, exponent: bigint, modulus: bigint): bigint {
  let result = 1n;
  let b = base % modulus;
  for (let e = exponent; e > 0n; e >>= 1n) {
    if (e & 1n) result = (result * b) % modulus;
    b = (b * b) % modulus;
  }
  return result;
}

const mod = (a: bigint): bigint => {
  const r = a % ED_P;
  return r < 0n ? r + ED_P : r;
};

/**
 * Decodes the point as RFC 8032 §5.1.3 does and refuses non-canonical encodings, encodings of no
 * point, and points of small order (whose multiple by the cofactor 8 is the identity): such a key
 * has no secret behind it.
 */
function checkEd25519Point(key: Uint8Array): void {
  if (key.length !== 32) throw new KeyError('malformed', 'an Ed25519 public key has 32 octets (RFC 8410 §3)');
  const little = Uint8Array.from(key).reverse();
  const sign = (little[0]! & 0x80) !== 0;
  little[0]! &= 0x7f;
  const y = bigintFrom(little);
  if (y >= ED_P) throw new KeyError('weak', 'Ed25519 point is not canonically encoded');
  const y2 = mod(y * y);
  const u = mod(y2 - 1n);
  const v = mod(ED_D * y2 + 1n);
  const v3 = mod(v * v * v);
  let x = mod(u * v3 * modPow(mod(u * v3 * v3 * v), (ED_P - 5n) / 8n, ED_P));
  const vx2 = mod(v * x * x);
  if (vx2 === mod(-u)) x = mod(x * ED_SQRT_M1);
  else if (vx2 !== u) throw new KeyError('weak', 'Ed25519 public key is not a curve point');
  if (x === 0n && sign) throw new KeyError('weak', 'Ed25519 point is not canonically encoded');
  if (((x & 1n) === 1n) !== sign) x = mod(-x);
  // Three doublings in extended coordinates (RFC 8032 §5.1.4, a = -1): [8]P.
  let X = x;
  let Y = y;
  let Z = 1n;
  for (let i = 0; i < 3; i++) {
    const A = mod(X * X);
    const B = mod(Y * Y);
    const C = mod(2n * Z * Z);
    const H = mod(A + B);
    const E = mod(H - mod((X + Y) * (X + Y)));
    const G = mod(A - B);
    const F = mod(C + G);
    X = mod(E * F);
    Y = mod(G * H);
    Z = mod(F * G);
  }
  if (X === 0n && Y === Z) throw new KeyError('weak', 'Ed25519 public key is a point of small order');
}
