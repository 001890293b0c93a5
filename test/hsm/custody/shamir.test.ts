import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import secrets from 'secrets.js-grempe';
import { combine, split } from 'shamir-secret-sharing';
import { describe, expect, it, test } from 'vitest';
import { sealHeader, unsealMasterKey } from '../../../src/hsm/custody/header.ts';
import {
  combineShares,
  formatSecret,
  formatShare,
  parseSecret,
  parseShare,
  type ShareInfo,
  splitUnsealKey,
} from '../../../src/hsm/custody/unseal-material.ts';
import { HsmError } from '../../../src/hsm/types.ts';

/*
 * shamir-secret-sharing (the package the partition uses) works in GF(2^8) modulo the AES
 * polynomial x^8+x^4+x^3+x+1 (0x11B); secrets.js-grempe, the independent implementation, modulo
 * x^8+x^4+x^3+x^2+1 (0x11D). Both are GF(256), so an isomorphism maps one onto the other: send
 * x to a root of 0x11B in the 0x11D field. Lagrange interpolation commutes with it, so each
 * library can recombine the other's shares once mapped. That checks the arithmetic, not just
 * each library against itself.
 */
function mulModulo(polynomial: number) {
  return (a: number, b: number): number => {
    let product = 0;
    for (let i = 0; i < 8; i++) {
      if (b & 1) product ^= a;
      b >>= 1;
      a <<= 1;
      if (a & 0x100) a ^= polynomial;
    }
    return product;
  };
}
const mulAes = mulModulo(0x11b);
const mulGrempe = mulModulo(0x11d);

function isomorphism(): { to: number[]; from: number[] } {
  for (let alpha = 2; alpha < 256; alpha++) {
    const powers = [1];
    for (let i = 1; i <= 8; i++) powers.push(mulGrempe(powers[i - 1]!, alpha));
    // alpha is a root of x^8 + x^4 + x^3 + x + 1 in the 0x11D field.
    if ((powers[8]! ^ powers[4]! ^ powers[3]! ^ powers[1]! ^ powers[0]!) !== 0) continue;
    const to = Array.from({ length: 256 }, (_, a) => {
      let image = 0;
      for (let bit = 0; bit < 8; bit++) if ((a >> bit) & 1) image ^= powers[bit]!;
      return image;
    });
    const from: number[] = [];
    to.forEach((image, a) => {
      from[image] = a;
    });
    return { to, from };
  }
  throw new Error('no root found');
}

describe('Shamir secret sharing over GF(256)', () => {
  const phi = isomorphism();

  it('maps the AES field onto secrets.js-grempe’s field as a ring isomorphism', () => {
    expect(new Set(phi.to).size).toBe(256);
    let mismatches = 0;
    for (let a = 0; a < 256; a++) {
      for (let b = 0; b < 256; b++) {
        if (phi.to[mulAes(a, b)] !== mulGrempe(phi.to[a]!, phi.to[b]!)) mismatches++;
        if (phi.to[a ^ b] !== (phi.to[a]! ^ phi.to[b]!)) mismatches++;
      }
    }
    expect(mismatches).toBe(0);
  });

  it('recombines shares made by shamir-secret-sharing with secrets.js-grempe’s interpolation', async () => {
    secrets.init(8, 'nodeCryptoRandomBytes');
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 2, max: 12 }),
        fc.integer({ min: 0, max: 10 }),
        async (threshold, extra) => {
          const count = Math.min(255, threshold + extra);
          const secret = Uint8Array.from(randomBytes(32));
          const shares = await split(secret, count, threshold);
          const chosen = shares.slice(0, threshold);
          const xs = chosen.map((share) => phi.to[share[32]!]!);
          const recovered = Array.from(
            { length: 32 },
            (_, i) =>
              phi.from[
                secrets._lagrange(
                  0,
                  xs,
                  chosen.map((share) => phi.to[share[i]!]!),
                )
              ]!,
          );
          expect(Buffer.from(recovered)).toEqual(Buffer.from(secret));
        },
      ),
      { numRuns: 40 },
    );
  });

  it('recombines shares made by secrets.js-grempe with shamir-secret-sharing', async () => {
    secrets.init(8, 'nodeCryptoRandomBytes');
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 2, max: 10 }),
        fc.integer({ min: 0, max: 5 }),
        async (threshold, extra) => {
          const count = threshold + extra;
          const secret = randomBytes(32);
          const perByte = [...secret].map((byte) => secrets._getShares(phi.to[byte]!, count, threshold));
          const shares = Array.from({ length: count }, (_, j) => {
            const share = new Uint8Array(33);
            perByte.forEach((points, i) => {
              share[i] = phi.from[points[j]!.y]!;
            });
            // secrets.js-grempe numbers its shares x = 1..N.
            share[32] = phi.from[j + 1]!;
            return share;
          });
          const subset = fc.sample(
            fc.shuffledSubarray(shares, { minLength: threshold, maxLength: threshold }),
            1,
          )[0]!;
          expect(Buffer.from(await combine(subset))).toEqual(secret);
        },
      ),
      { numRuns: 40 },
    );
  });

  it('recovers the unseal key from any M of N shares', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 2, max: 8 }).chain((threshold) =>
          fc.record({
            threshold: fc.constant(threshold),
            count: fc.integer({ min: threshold, max: 9 }),
            seed: fc.integer(),
          }),
        ),
        async ({ threshold, count, seed }) => {
          const key = randomBytes(32);
          const shares = await splitUnsealKey(key, { partitionId: 'ab'.repeat(16), count, threshold });
          const subset = fc.sample(fc.shuffledSubarray(shares, { minLength: threshold, maxLength: count }), {
            numRuns: 1,
            seed,
          })[0]!;
          const recovered = await combineShares(subset, { partitionId: 'ab'.repeat(16), threshold, count });
          expect(recovered).toEqual(key);
        },
      ),
      { numRuns: 60 },
    );
  });

  it('does not produce the key from M-1 shares', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 3, max: 8 }),
        fc.integer({ min: 0, max: 3 }),
        async (threshold, extra) => {
          const count = threshold + extra;
          const key = Uint8Array.from(randomBytes(32));
          const shares = await split(key, count, threshold);
          const tooFew = shares.slice(extra, extra + threshold - 1);
          expect(Buffer.from(await combine(tooFew))).not.toEqual(Buffer.from(key));
        },
      ),
      { numRuns: 60 },
    );
  });
});

describe('share and secret files', () => {
  const partitionId = '0123456789abcdef0123456789abcdef';
  const other = 'fedcba9876543210fedcba9876543210';

  async function header(sealing: { kind: 'secret' } | { kind: 'shares'; threshold: number; shares: number }) {
    const masterKey = randomBytes(32);
    const unsealKey = randomBytes(32);
    const sealed = sealHeader(
      { id: partitionId, name: 'issuing', createdAt: '2026-01-01T00:00:00Z', sealing, auditKey: 'AA==' },
      masterKey,
      unsealKey,
    );
    const shares =
      sealing.kind === 'shares'
        ? (
            await splitUnsealKey(unsealKey, {
              partitionId,
              count: sealing.shares,
              threshold: sealing.threshold,
            })
          ).map((share) => formatShare('issuing', share))
        : [];
    return { sealed, masterKey, unsealKey, shares, secret: formatSecret(partitionId, 'issuing', unsealKey) };
  }

  it('unseals with M share files in any order, and not with M-1', async () => {
    const h = await header({ kind: 'shares', threshold: 3, shares: 5 });
    expect(await unsealMasterKey(h.sealed, { shares: [h.shares[4]!, h.shares[0]!, h.shares[2]!] })).toEqual(
      h.masterKey,
    );
    await expect(unsealMasterKey(h.sealed, { shares: [h.shares[4]!, h.shares[0]!] })).rejects.toThrow(
      /3 shares are needed to unseal, 2 given/,
    );
  });

  it('detects a wrong share through the seal’s authentication tag', async () => {
    const h = await header({ kind: 'shares', threshold: 3, shares: 5 });
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 0, max: 31 }),
        fc.integer({ min: 1, max: 255 }),
        async (position, flip) => {
          const share = parseShare(h.shares[1]!);
          const bytes = Uint8Array.from(share.bytes);
          bytes[position]! ^= flip;
          const forged = formatShare('issuing', { ...share, bytes });
          const error = await unsealMasterKey(h.sealed, {
            shares: [h.shares[0]!, forged, h.shares[2]!],
          }).catch((e) => e);
          expect(error).toBeInstanceOf(HsmError);
          expect(error.rv).toBe('CKR_UNSEAL_FAILED');
          expect(error.message).toMatch(/at least one share is wrong/);
        },
      ),
      { numRuns: 50 },
    );
  });

  test.each([
    [
      'a share of another partition',
      (s: ShareInfo) => formatShare('x', { ...s, partitionId: other }),
      /belongs to partition fedcba/,
    ],
    [
      'a share from a set of another size',
      (s: ShareInfo) => formatShare('x', { ...s, count: 6 }),
      /from a 3-of-6 set/,
    ],
    [
      'a share with a damaged checksum',
      (s: ShareInfo) => formatShare('x', s).replace(/:([0-9a-f]{8})\n/, ':00000000\n'),
      /damaged/,
    ],
    [
      'a secret given as a share',
      () => formatSecret(partitionId, 'issuing', randomBytes(32)),
      /expected an unseal share but got a secret/,
    ],
    ['an empty file', () => '', /not a Signet share file/],
    ['binary garbage', () => '\u0000\u0001garbage', /not a Signet share file/],
  ])('refuses %s clearly', async (_name, make, message) => {
    const h = await header({ kind: 'shares', threshold: 3, shares: 5 });
    const bad = make(parseShare(h.shares[3]!));
    const error = await unsealMasterKey(h.sealed, { shares: [h.shares[0]!, h.shares[1]!, bad] }).catch(
      (e) => e,
    );
    expect(error).toBeInstanceOf(HsmError);
    expect(error.rv).toBe('CKR_UNSEAL_FAILED');
    expect(error.message).toMatch(message);
  });

  it('refuses the same share given twice', async () => {
    const h = await header({ kind: 'shares', threshold: 3, shares: 5 });
    await expect(
      unsealMasterKey(h.sealed, { shares: [h.shares[0]!, h.shares[1]!, h.shares[1]!] }),
    ).rejects.toThrow(/share 2 was given more than once/);
  });

  it('unseals a secret-sealed header with its secret and refuses another secret', async () => {
    const h = await header({ kind: 'secret' });
    expect(await unsealMasterKey(h.sealed, { secret: Buffer.from(h.secret) })).toEqual(h.masterKey);
    const wrong = formatSecret(partitionId, 'issuing', randomBytes(32));
    await expect(unsealMasterKey(h.sealed, { secret: wrong })).rejects.toThrow(
      /the secret does not open this partition/,
    );
    const foreign = formatSecret(other, 'issuing', h.unsealKey);
    await expect(unsealMasterKey(h.sealed, { secret: foreign })).rejects.toThrow(
      /belongs to partition fedcba/,
    );
  });

  it('round-trips the file formats and ignores comments and surrounding whitespace', () => {
    const key = randomBytes(32);
    expect(parseSecret(`\n\n${formatSecret(partitionId, 'issuing', key)}\n  \n`, partitionId)).toEqual(key);
    const share: ShareInfo = { partitionId, threshold: 2, count: 3, index: 2, bytes: randomBytes(33) };
    expect(parseShare(formatShare('issuing', share).replace(/\n/g, '\r\n'))).toEqual({
      ...share,
      bytes: Buffer.from(share.bytes),
    });
  });

  test.each([
    [1, 3],
    [4, 3],
    [2, 256],
  ])('refuses to split with threshold %i of %i shares', async (threshold, count) => {
    await expect(splitUnsealKey(randomBytes(32), { partitionId, threshold, count })).rejects.toThrow(
      HsmError,
    );
  });
});
