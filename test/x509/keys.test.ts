import { checkPrimeSync, generateKeyPairSync, generatePrimeSync } from 'node:crypto';
import { describe, expect, test } from 'vitest';
import { bitString, integerFromUnsigned, NULL_DER, oid, sequence } from '../../src/x509/der.ts';
import { fermatFactor, inspectPublicKey, isqrt, KeyError } from '../../src/x509/keys.ts';
import { OID } from '../../src/x509/oids.ts';

function unsigned(value: bigint): Uint8Array {
  const hex = value.toString(16);
  return Uint8Array.from(Buffer.from(hex.length % 2 ? `0${hex}` : hex, 'hex'));
}

function rsaSpki(n: bigint, e = 65537n): Uint8Array {
  return sequence(
    sequence(oid(OID.rsaEncryption), NULL_DER),
    bitString(sequence(integerFromUnsigned(unsigned(n)), integerFromUnsigned(unsigned(e)))),
  );
}

function refusal(spki: Uint8Array): { reason: string; message: string } {
  try {
    inspectPublicKey(spki);
  } catch (error) {
    expect(error).toBeInstanceOf(KeyError);
    return { reason: (error as KeyError).reason, message: (error as KeyError).message };
  }
  throw new Error('the key was accepted');
}

const spkiOf = (type: 'ec' | 'ed25519' | 'rsa', options: object = {}): Uint8Array =>
  new Uint8Array(
    // biome-ignore lint/suspicious/noExplicitAny: generateKeyPairSync's overloads need a literal type.
    (generateKeyPairSync as any)(type, options).publicKey.export({ format: 'der', type: 'spki' }),
  );

describe('inspectPublicKey', () => {
  test.each([
    ['a P-256 key', () => spkiOf('ec', { namedCurve: 'P-256' }), 'ecdsa-p256'],
    ['a P-384 key', () => spkiOf('ec', { namedCurve: 'P-384' }), 'ecdsa-p384'],
    ['an Ed25519 key', () => spkiOf('ed25519'), 'ed25519'],
    ['an RSA-2048 key', () => spkiOf('rsa', { modulusLength: 2048 }), 'rsa-2048'],
  ])('accepts %s and names it', (_name, make, expected) => {
    expect(inspectPublicKey(make()).name).toBe(expected);
  });

  test('refuses a modulus whose primes are close enough for Fermat’s method (BR §6.1.6)', () => {
    const p = generatePrimeSync(1024, { bigint: true });
    let q = p + 2n;
    while (!checkPrimeSync(q)) q += 2n;
    expect(refusal(rsaSpki(p * q))).toEqual({ reason: 'weak', message: expect.stringMatching(/Fermat/) });
  });

  test('refuses a modulus with a small prime factor', () => {
    let n: bigint;
    do n = 751n * generatePrimeSync(2038, { bigint: true });
    while (n.toString(2).length !== 2048);
    expect(refusal(rsaSpki(n))).toEqual({ reason: 'weak', message: expect.stringMatching(/small prime/) });
  });

  test.each([
    ['an exponent of 3', () => rsaSpki(productOfPrimes(2048), 3n), 'weak', /65537/],
    ['1024 bits', () => rsaSpki(productOfPrimes(1024)), 'weak', /at least 2048/],
    ['a size that is not a multiple of 8', () => rsaSpki((1n << 2049n) + 1n), 'weak', /multiple of 8/],
    ['an even modulus', () => rsaSpki(1n << 2047n), 'weak', /even/],
    ['9000 bits', () => rsaSpki((1n << 8999n) + 1n), 'unsupported', /at most 8192/],
    [
      'NULL parameters missing',
      () => sequence(sequence(oid(OID.rsaEncryption)), bitString(sequence())),
      'malformed',
      /NULL/,
    ],
    [
      'an RSASSA-PSS key',
      () => sequence(sequence(oid(OID.rsassaPss)), bitString(sequence())),
      'unsupported',
      /PSS/,
    ],
  ])('refuses an RSA key with %s', (_name, make, reason, message) => {
    expect(refusal(make())).toEqual({ reason, message: expect.stringMatching(message) });
  });

  test('refuses EC points that are not on the curve, at infinity, or of the wrong length', () => {
    const good = spkiOf('ec', { namedCurve: 'P-256' });
    const point = good.subarray(-65);
    const ec = (p: Uint8Array): Uint8Array =>
      sequence(sequence(oid(OID.ecPublicKey), oid(OID.secp256r1)), bitString(p));
    const off = Uint8Array.from(point);
    off[64]! ^= 1;
    expect(refusal(ec(off)).reason).toBe('weak');
    expect(refusal(ec(Uint8Array.from([0]))).reason).toBe('weak');
    expect(refusal(ec(point.subarray(0, 64))).reason).toBe('malformed');
    const p = 0xffffffff00000001000000000000000000000000ffffffffffffffffffffffffn;
    const outside = Uint8Array.from([4, ...unsigned(p), ...point.subarray(33)]);
    expect(refusal(ec(outside)).message).toMatch(/field/);
  });

  test.each([
    ['the identity', '0100000000000000000000000000000000000000000000000000000000000000'],
    ['a point of order 2', 'ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f'],
    ['a point of order 8', '26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05'],
    ['a point of order 4', '0000000000000000000000000000000000000000000000000000000000000000'],
    ['a non-canonical y', 'eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f'],
  ])('refuses an Ed25519 key that is %s', (_name, hex) => {
    const spki = sequence(sequence(oid(OID.ed25519)), bitString(Uint8Array.from(Buffer.from(hex, 'hex'))));
    expect(refusal(spki).reason).toBe('weak');
  });

  test('fermatFactor finds n = 101 * 103 and not a product of distant primes; isqrt is exact', () => {
    expect(fermatFactor(101n * 103n, 1)).toBe(true);
    expect(fermatFactor(3n * 1000003n, 100)).toBe(false);
    for (const n of [0n, 1n, 2n, 15n, 16n, 17n, (1n << 200n) + 12345n]) {
      const r = isqrt(n);
      expect(r * r <= n && (r + 1n) * (r + 1n) > n).toBe(true);
    }
  });
});

function productOfPrimes(bits: number): bigint {
  for (;;) {
    const n = generatePrimeSync(bits / 2, { bigint: true }) * generatePrimeSync(bits / 2, { bigint: true });
    if (n.toString(2).length === bits) return n;
  }
}
