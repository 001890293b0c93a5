import { webcrypto } from 'node:crypto';
import { beforeAll, describe, expect, test } from 'vitest';
import {
  IssuanceToken,
  lintCertificate,
  MisissuanceError,
  signCertificate,
} from '../../src/issuance/token.ts';
import { fixedClock } from '../../src/lib/clock.ts';
import { buildTbsCertificate, generateSerial } from '../../src/x509/certificate.ts';
import { readCertificateFields } from '../../src/x509/issuer.ts';
import {
  createTestChain,
  generateTestKey,
  leafTemplate,
  type TestChain,
  type TestKey,
} from '../x509/fixtures.ts';

const clock = fixedClock('2026-06-01T12:00:00Z');
let chain: TestChain;
let leafKey: TestKey;
let stranger: TestKey;
let rsaStranger: TestKey;

beforeAll(async () => {
  const [rootKey, issuerKey, leaf, other, rsa] = await Promise.all([
    generateTestKey('ecdsa-p384'),
    generateTestKey('ecdsa-p256'),
    generateTestKey('ecdsa-p256'),
    generateTestKey('ecdsa-p256'),
    generateTestKey('rsa-2048'),
  ]);
  leafKey = leaf;
  stranger = other;
  rsaStranger = rsa;
  chain = await createTestChain(rootKey, issuerKey, { clock: fixedClock('2026-01-01T00:00:00Z') });
});

function passingLint(template = leafTemplate(leafKey)) {
  const built = buildTbsCertificate(template, chain.issuer, { serial: generateSerial(), clock });
  const lint = lintCertificate(built.der, { issuer: chain.issuer, profile: 'leaf' });
  if (!lint.ok) throw new Error(JSON.stringify(lint.findings));
  return { built, token: lint.token };
}

/** A Crypto that counts signatures and can tamper with what it signs or returns. */
function countingCrypto(tamper?: {
  data?: (data: Uint8Array) => Uint8Array;
  signature?: (s: Uint8Array) => Uint8Array;
}) {
  let calls = 0;
  return {
    get calls() {
      return calls;
    },
    subtle: {
      async sign(
        algorithm: webcrypto.AlgorithmIdentifier,
        key: webcrypto.CryptoKey,
        data: webcrypto.BufferSource,
      ) {
        calls++;
        const bytes = new Uint8Array(data as ArrayBuffer);
        const signed = await webcrypto.subtle.sign(algorithm, key, tamper?.data ? tamper.data(bytes) : bytes);
        return (
          tamper?.signature ? tamper.signature(new Uint8Array(signed)).slice().buffer : signed
        ) as ArrayBuffer;
      },
    },
  };
}

describe('issuance tokens', () => {
  test('a passing lint yields a token describing the TBS it holds', () => {
    const { built, token } = passingLint();
    expect(token).toBeInstanceOf(IssuanceToken);
    expect(token.issuerId).toBe('test-intermediate');
    expect(token.serialNumber).toBe(built.serialNumber);
    expect(token.notAfter).toEqual(built.notAfter);
    expect(token.tbs).toEqual(built.der);
    expect(token.tbsSha256).toMatch(/^[0-9a-f]{64}$/);
    expect(token.used).toBe(false);
  });

  test('a failing lint yields no token', () => {
    const built = buildTbsCertificate(leafTemplate(leafKey, { extendedKeyUsage: [] }), chain.issuer, {
      serial: generateSerial(),
      clock,
    });
    const lint = lintCertificate(built.der, { issuer: chain.issuer, profile: 'leaf' });
    expect(lint.ok).toBe(false);
    expect(lint.token).toBeUndefined();
    expect(lint.findings.map((f) => f.rule)).toEqual(['eku-present']);
  });

  test('a token cannot be constructed, subclassed or faked', async () => {
    // biome-ignore lint/suspicious/noExplicitAny: deliberately going around the private constructor.
    const Token = IssuanceToken as any;
    expect(() => new Token(new Uint8Array([0x30, 0x00]), chain.issuer, 'leaf')).toThrow(TypeError);
    // biome-ignore lint/suspicious/noExplicitAny: as above.
    const Forged: any = class extends Token {};
    expect(() => new Forged(new Uint8Array([0x30, 0x00]), chain.issuer, 'leaf')).toThrow(TypeError);
    const crypto = countingCrypto();
    const fake = Object.create(IssuanceToken.prototype) as IssuanceToken;
    await expect(signCertificate(fake, { crypto, key: chain.issuerKey.pair.privateKey })).rejects.toThrow(
      MisissuanceError,
    );
    const lookalike = { ...passingLint().token } as IssuanceToken;
    await expect(
      signCertificate(lookalike, { crypto, key: chain.issuerKey.pair.privateKey }),
    ).rejects.toThrow(/not an issuance token/);
    expect(crypto.calls).toBe(0);
  });

  test('a token signs once; the second use throws and signs nothing', async () => {
    const { token } = passingLint();
    const crypto = countingCrypto();
    const der = await signCertificate(token, { crypto, key: chain.issuerKey.pair.privateKey });
    expect(der[0]).toBe(0x30);
    expect(token.used).toBe(true);
    await expect(signCertificate(token, { crypto, key: chain.issuerKey.pair.privateKey })).rejects.toThrow(
      /already used/,
    );
    expect(crypto.calls).toBe(1);
  });

  test('changing the caller’s TBS buffer after the lint does not change what is signed', async () => {
    const { built, token } = passingLint();
    const original = Uint8Array.from(built.der);
    built.der.fill(0);
    const der = await signCertificate(token, { crypto: webcrypto, key: chain.issuerKey.pair.privateKey });
    const fields = readCertificateFields(der);
    expect(der.subarray(fields.tbs.start, fields.tbs.end)).toEqual(original);
  });

  test.each([
    [
      'a signature by another key of the same type',
      () => ({ crypto: countingCrypto(), key: stranger.pair.privateKey }),
    ],
    [
      'a signer that signs different bytes than it was given',
      () => ({
        crypto: countingCrypto({
          data: (data) => Uint8Array.from([...data.subarray(0, -1), data[data.length - 1]! ^ 1]),
        }),
        key: chain.issuerKey.pair.privateKey,
      }),
    ],
    [
      'a signer that returns a corrupted signature',
      () => ({
        crypto: countingCrypto({
          signature: (s) => Uint8Array.from(s, (byte, i) => (i === 5 ? byte ^ 0x40 : byte)),
        }),
        key: chain.issuerKey.pair.privateKey,
      }),
    ],
  ])('%s is a MisissuanceError and nothing is returned', async (_name, make) => {
    const { token } = passingLint();
    const { crypto, key } = make();
    await expect(signCertificate(token, { crypto, key })).rejects.toThrow(MisissuanceError);
    expect(crypto.calls).toBe(1);
  });

  test('a key of the wrong algorithm for the issuer is refused before anything is signed', async () => {
    const { token } = passingLint();
    const crypto = countingCrypto();
    await expect(signCertificate(token, { crypto, key: rsaStranger.pair.privateKey })).rejects.toThrow(
      /cannot sign ecdsa-with-SHA256/,
    );
    expect(crypto.calls).toBe(0);
  });

  test('a token is bound to its issuer: linted for one issuer, it cannot carry another’s TBS', () => {
    const built = buildTbsCertificate(leafTemplate(leafKey), chain.issuer, {
      serial: generateSerial(),
      clock,
    });
    const lint = lintCertificate(built.der, { issuer: chain.rootContext, profile: 'leaf' });
    expect(lint.ok).toBe(false);
    expect(lint.findings.map((f) => f.rule)).toEqual(
      expect.arrayContaining([
        'issuer-name-matches',
        'authority-key-identifier',
        'signature-algorithm-matches-issuer',
      ]),
    );
  });
});
