import { checkPrimeSync, generateKeyPairSync, generatePrimeSync } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { beforeAll, describe, expect, test } from 'vitest';
import { createKeyBlocklist, keyBlocklistFromHashes } from '../../src/x509/blocklist.ts';
import { encodeExtension } from '../../src/x509/certificate.ts';
import { CsrError, parseCsr } from '../../src/x509/csr.ts';
import {
  bitString,
  contextTag,
  integerFromNumber,
  integerFromUnsigned,
  NULL_DER,
  oid,
  sequence,
  setOf,
  tlv,
  utf8String,
} from '../../src/x509/der.ts';
import { spkiSha256 } from '../../src/x509/keys.ts';
import { encodeName } from '../../src/x509/names.ts';
import { OID } from '../../src/x509/oids.ts';
import { hasTool } from '../helpers/tools.ts';
import {
  csrPem,
  extensionRequestAttribute,
  generateTestKey,
  handCsr,
  opensslCsr,
  sanExtension,
  type TestKey,
  tempDir,
} from './fixtures.ts';

const haveOpenssl = hasTool('openssl', ['version']);

let p256: TestKey;
let p384: TestKey;
let rsa2048: TestKey;
let rsa3072: TestKey;
let ed25519: TestKey;

beforeAll(async () => {
  [p256, p384, rsa2048, rsa3072, ed25519] = await Promise.all([
    generateTestKey('ecdsa-p256'),
    generateTestKey('ecdsa-p384'),
    generateTestKey('rsa-2048'),
    generateTestKey('rsa-3072'),
    generateTestKey('ed25519'),
  ]);
});

function refusal(input: string | Uint8Array, options?: Parameters<typeof parseCsr>[1]): string {
  try {
    parseCsr(input, options);
  } catch (error) {
    expect(error).toBeInstanceOf(CsrError);
    return (error as CsrError).code;
  }
  throw new Error('the CSR was accepted');
}

/** SubjectPublicKeyInfo for an RSA modulus and exponent (rsaEncryption, NULL parameters). */
function rsaSpki(n: bigint, e = 65537n): Uint8Array {
  const bytes = (value: bigint): Uint8Array => {
    const hex = value.toString(16);
    return Uint8Array.from(Buffer.from(hex.length % 2 ? `0${hex}` : hex, 'hex'));
  };
  const key = sequence(integerFromUnsigned(bytes(n)), integerFromUnsigned(bytes(e)));
  return sequence(sequence(oid(OID.rsaEncryption), NULL_DER), bitString(key));
}

function ecSpki(curveOid: string, point: Uint8Array): Uint8Array {
  return sequence(sequence(oid(OID.ecPublicKey), oid(curveOid)), bitString(point));
}

/** A modulus whose primes are neighbours: Fermat's method factors it in one step. */
function closePrimeModulus(): bigint {
  const p = generatePrimeSync(1024, { bigint: true });
  let q = p + 2n;
  while (!checkPrimeSync(q)) q += 2n;
  return p * q;
}

describe.skipIf(!haveOpenssl)('parseCsr accepts requests made by OpenSSL', () => {
  test.each([
    ['ecdsa-p256', () => p256, []],
    ['ecdsa-p384', () => p384, []],
    ['ecdsa-p384', () => p384, ['-sha384']],
    ['rsa-2048', () => rsa2048, []],
    ['rsa-3072', () => rsa3072, []],
    ['rsa-2048', () => rsa2048, ['-sigopt', 'rsa_padding_mode:pss', '-sigopt', 'rsa_pss_saltlen:32']],
    ['ed25519', () => ed25519, []],
  ] as const)('a %s request (%#) parses with its names, key and extensions', (name, key, extra) => {
    const pem = opensslCsr(
      key(),
      '/C=US/O=Example Org/CN=www.example.com',
      'DNS:www.Example.com,DNS:example.com,IP:192.0.2.10,IP:2001:db8:0:0::1,email:ops@example.com,URI:spiffe://example.org/ns/web',
      [
        ...extra,
        '-addext',
        'extendedKeyUsage=serverAuth,clientAuth',
        '-addext',
        'basicConstraints=critical,CA:FALSE',
      ],
    );
    const parsed = parseCsr(pem);
    expect(parsed.keyAlgorithm).toBe(name);
    expect(Buffer.from(parsed.publicKey).equals(Buffer.from(key().spki))).toBe(true);
    expect(parsed.subject).toEqual([
      { type: 'C', value: 'US' },
      { type: 'O', value: 'Example Org' },
      { type: 'CN', value: 'www.example.com' },
    ]);
    expect(parsed.sans).toEqual([
      { type: 'dns', value: 'www.example.com' },
      { type: 'dns', value: 'example.com' },
      { type: 'ip', value: '192.0.2.10' },
      { type: 'ip', value: '2001:db8::1' },
      { type: 'email', value: 'ops@example.com' },
      { type: 'uri', value: 'spiffe://example.org/ns/web' },
    ]);
    expect(parsed.requestedEku).toEqual(['1.3.6.1.5.5.7.3.1', '1.3.6.1.5.5.7.3.2']);
    expect(parsed.requestedCa).toBe(false);
    expect(parsed.extensions.map((extension) => extension.oid).sort()).toEqual([
      OID.basicConstraints,
      OID.extKeyUsage,
    ]);
    expect(parsed.sha256).toMatch(/^[0-9a-f]{64}$/);
  });

  test('the same request is accepted as DER bytes, as PEM bytes and with the legacy NEW label', () => {
    const pem = opensslCsr(p256, '/CN=www.example.com', 'DNS:www.example.com');
    const der = parseCsr(pem).der;
    expect(parseCsr(der).sha256).toBe(parseCsr(pem).sha256);
    expect(parseCsr(Buffer.from(pem)).sha256).toBe(parseCsr(pem).sha256);
    expect(parseCsr(pem.replace(/CERTIFICATE REQUEST/g, 'NEW CERTIFICATE REQUEST')).sha256).toBe(
      parseCsr(pem).sha256,
    );
  });

  test('a request without extensions has no SANs and an empty subject is allowed', () => {
    const parsed = parseCsr(opensslCsr(p256, '/', ''));
    expect(parsed.subject).toEqual([]);
    expect(parsed.sans).toEqual([]);
    expect(parsed.requestedCa).toBeUndefined();
  });
});

describe('parseCsr refuses each kind of bad request with its own code', () => {
  const pemOf = (): string => csrPem(handCsr({ key: p256 }));
  const bigExtension = (): Uint8Array =>
    encodeExtension('1.3.6.1.4.1.99999.1', false, tlv(0x04, new Uint8Array(70_000)));

  const cases: [string, () => string | Uint8Array, string, Parameters<typeof parseCsr>[1]?][] = [
    [
      'a PEM with the CERTIFICATE label',
      () => pemOf().replace(/CERTIFICATE REQUEST/g, 'CERTIFICATE'),
      'csr.pem_invalid',
    ],
    ['a PEM with text before it', () => `hello\n${pemOf()}`, 'csr.pem_invalid'],
    ['a PEM with text after it', () => `${pemOf()}trailing words`, 'csr.pem_invalid'],
    ['a PEM with invalid base64', () => pemOf().replace(/\n[A-Za-z]/, '\n!'), 'csr.pem_invalid'],
    ['two PEM blocks', () => pemOf() + pemOf(), 'csr.pem_invalid'],
    ['a string that is not PEM', () => 'MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA', 'csr.pem_invalid'],
    [
      'mismatched BEGIN and END labels',
      () => pemOf().replace('END CERTIFICATE REQUEST', 'END CERTIFICATE'),
      'csr.pem_invalid',
    ],
    ['truncated DER', () => handCsr({ key: p256 }).subarray(0, 100), 'csr.malformed'],
    ['DER that is an INTEGER', () => new Uint8Array([0x02, 0x01, 0x05]), 'csr.pem_invalid'],
    ['a SEQUENCE of the wrong shape', () => sequence(sequence(), sequence()), 'csr.malformed'],
    [
      'version 2',
      () =>
        handCsr({
          key: p256,
          editInfo: (info) => sequence(integerFromNumber(1), ...splitInfo(info).slice(1)),
        }),
      'csr.malformed',
    ],
    [
      'a subject nested deeper than a Name needs',
      () => {
        let deep = utf8String('x');
        for (let i = 0; i < 12; i++) deep = sequence(deep);
        return handCsr({ key: p256, subject: sequence(setOf([sequence(oid('2.5.4.3'), deep)])) });
      },
      'csr.malformed',
    ],
    [
      'a subject value that is a SEQUENCE',
      () =>
        handCsr({
          key: p256,
          subject: sequence(setOf([sequence(oid('2.5.4.3'), sequence(utf8String('x')))])),
        }),
      'csr.malformed',
    ],
    [
      'an empty subjectAltName',
      () => handCsr({ key: p256, extensions: [encodeExtension(OID.subjectAltName, false, sequence())] }),
      'csr.malformed',
    ],
    [
      'an iPAddress of five octets',
      () =>
        handCsr({
          key: p256,
          extensions: [encodeExtension(OID.subjectAltName, false, sequence(tlv(0x87, new Uint8Array(5))))],
        }),
      'csr.malformed',
    ],
    [
      'a dNSName with a non-ASCII octet',
      () =>
        handCsr({
          key: p256,
          extensions: [
            encodeExtension(
              OID.subjectAltName,
              false,
              sequence(tlv(0x82, Buffer.from('caf\xe9.example.com', 'latin1'))),
            ),
          ],
        }),
      'csr.malformed',
    ],
    [
      'an extensionRequest with two values',
      () =>
        handCsr({
          key: p256,
          attributes: tlv(
            contextTag(0, true),
            sequence(
              oid(OID.extensionRequest),
              setOf([
                sequence(sanExtension([{ type: 'dns', value: 'a.example.com' }])),
                sequence(sanExtension([{ type: 'dns', value: 'b.example.com' }])),
              ]),
            ),
          ),
        }),
      'csr.malformed',
    ],
    [
      'an empty extension list',
      () => handCsr({ key: p256, attributes: extensionRequestAttribute([]) }),
      'csr.malformed',
    ],
    ['a byte after the DER', () => Uint8Array.from([...handCsr({ key: p256 }), 0]), 'csr.trailing_data'],
    [
      'a byte after the DER inside PEM',
      () => csrPem(Uint8Array.from([...handCsr({ key: p256 }), 0])),
      'csr.trailing_data',
    ],
    [
      'an indefinite-length outer SEQUENCE (BER)',
      () => {
        const der = handCsr({ key: p256 });
        const headerLength = der[1]! & 0x80 ? 2 + (der[1]! & 0x7f) : 2;
        return Uint8Array.from([0x30, 0x80, ...der.subarray(headerLength), 0, 0]);
      },
      'csr.non_der_encoding',
    ],
    [
      'a long-form length where the short form fits',
      () => handCsr({ key: p256, subject: Uint8Array.from([0x30, 0x81, 0x00]) }),
      'csr.non_der_encoding',
    ],
    [
      'critical encoded as 0x01 instead of 0xFF',
      () => {
        const extension = sequence(
          oid(OID.subjectAltName),
          Uint8Array.from([0x01, 0x01, 0x01]),
          tlv(0x04, sequence(tlv(0x82, Buffer.from('www.example.com')))),
        );
        return handCsr({ key: p256, extensions: [extension] });
      },
      'csr.non_der_encoding',
    ],
    [
      'an explicit critical FALSE',
      () => {
        const extension = sequence(
          oid(OID.subjectAltName),
          Uint8Array.from([0x01, 0x01, 0x00]),
          tlv(0x04, sequence(tlv(0x82, Buffer.from('www.example.com')))),
        );
        return handCsr({ key: p256, extensions: [extension] });
      },
      'csr.non_der_encoding',
    ],
    [
      'a version INTEGER with a redundant zero octet',
      () =>
        handCsr({
          key: p256,
          editInfo: (info) =>
            sequence(Uint8Array.from([0x02, 0x02, 0x00, 0x00]), ...splitInfo(info).slice(1)),
        }),
      'csr.non_der_encoding',
    ],
    [
      'a multi-valued RDN whose SET is not sorted',
      () =>
        handCsr({
          key: p256,
          subject: sequence(
            tlv(
              0x31,
              sequence(oid('2.5.4.3'), utf8String('z.example.com')),
              sequence(oid('2.5.4.10'), utf8String('Org')),
            ),
          ),
        }),
      'csr.non_der_encoding',
    ],
    [
      'a SAN value that is not DER inside its OCTET STRING',
      () =>
        handCsr({
          key: p256,
          extensions: [
            encodeExtension(
              OID.subjectAltName,
              false,
              Uint8Array.from([0x30, 0x80, 0x82, 0x01, 0x61, 0x00, 0x00]),
            ),
          ],
        }),
      'csr.non_der_encoding',
    ],
    [
      'two subjectAltName extensions',
      () =>
        handCsr({
          key: p256,
          extensions: [
            sanExtension([{ type: 'dns', value: 'a.example.com' }]),
            sanExtension([{ type: 'dns', value: 'b.example.com' }]),
          ],
        }),
      'csr.duplicate_extension',
    ],
    [
      'two extensionRequest attributes',
      () => {
        const attribute = sequence(
          oid(OID.extensionRequest),
          setOf([sequence(sanExtension([{ type: 'dns', value: 'a.example.com' }]))]),
        );
        return handCsr({ key: p256, attributes: tlv(contextTag(0, true), attribute, attribute) });
      },
      'csr.duplicate_extension',
    ],
    ['a request over 64 KiB', () => handCsr({ key: p256, extensions: [bigExtension()] }), 'csr.too_large'],
    ['a request over a configured limit', () => pemOf(), 'csr.too_large', { maxBytes: 200 }],
    [
      'a flipped signature bit',
      () =>
        handCsr({
          key: p256,
          editSignature: (sig) => {
            const copy = Uint8Array.from(sig);
            copy[10]! ^= 1;
            return copy;
          },
        }),
      'csr.signature_invalid',
    ],
    [
      'a subject changed after signing',
      () => {
        const der = handCsr({ key: p256 });
        const at = Buffer.from(der).indexOf('www.example.com');
        const copy = Uint8Array.from(der);
        copy[at] = 'v'.charCodeAt(0);
        return copy;
      },
      'csr.signature_invalid',
    ],
    [
      'a signature by another key',
      () => handCsr({ key: p256, spki: generateP256Spki() }),
      'csr.signature_invalid',
    ],
    [
      'an RSA signature algorithm on an EC key',
      () => handCsr({ key: p256, algorithmIdentifier: sequence(oid(OID.sha256WithRSAEncryption), NULL_DER) }),
      'csr.signature_invalid',
    ],
    [
      'a SHA-1 ECDSA signature',
      () => handCsr({ key: p256, signature: 'ecdsa-with-SHA1' }),
      'csr.signature_algorithm_unsupported',
    ],
    [
      'a SHA-1 RSA signature',
      () => handCsr({ key: rsa2048, signature: 'sha1WithRSAEncryption' }),
      'csr.signature_algorithm_unsupported',
    ],
    [
      'an MD5 RSA signature',
      () => handCsr({ key: rsa2048, signature: 'md5WithRSAEncryption' }),
      'csr.signature_algorithm_unsupported',
    ],
    [
      'an unknown signature algorithm',
      () => handCsr({ key: p256, algorithmIdentifier: sequence(oid('1.3.6.1.4.1.99999.7')) }),
      'csr.signature_algorithm_unsupported',
    ],
    [
      'ECDSA with NULL parameters',
      () => handCsr({ key: p256, algorithmIdentifier: sequence(oid(OID.ecdsaWithSha256), NULL_DER) }),
      'csr.signature_algorithm_unsupported',
    ],
    [
      'a P-521 key',
      () => handCsr({ key: p256, spki: ecSpki(OID.secp521r1, new Uint8Array(133).fill(4, 0, 1)) }),
      'csr.key_unsupported',
    ],
    [
      'an Ed448 key',
      () => handCsr({ key: p256, spki: sequence(sequence(oid(OID.ed448)), bitString(new Uint8Array(57))) }),
      'csr.key_unsupported',
    ],
    [
      'a secp256k1 key',
      () => handCsr({ key: p256, spki: ecSpki('1.3.132.0.10', new Uint8Array(65).fill(4, 0, 1)) }),
      'csr.key_unsupported',
    ],
    [
      'a compressed P-256 point',
      () =>
        handCsr({
          key: p256,
          spki: ecSpki(OID.secp256r1, Uint8Array.from([2, ...p256.spki.subarray(-64, -32)])),
        }),
      'csr.key_unsupported',
    ],
    [
      'an RSA key of 16384 bits',
      () => handCsr({ key: rsa2048, spki: rsaSpki((1n << 16383n) + 1n) }),
      'csr.key_unsupported',
    ],
    [
      'an RSA key of 1024 bits',
      () =>
        handCsr({
          key: rsa2048,
          spki: rsaSpkiOf(generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey),
        }),
      'csr.key_weak',
    ],
    [
      'an RSA exponent of 3',
      () => handCsr({ key: rsa2048, spki: rsaSpki(oddModulus(2048), 3n) }),
      'csr.key_weak',
    ],
    [
      'an RSA modulus with a small factor',
      () => handCsr({ key: rsa2048, spki: rsaSpki(smallFactorModulus()) }),
      'csr.key_weak',
    ],
    [
      'an RSA modulus with close primes (Fermat)',
      () => handCsr({ key: rsa2048, spki: rsaSpki(closePrimeModulus()) }),
      'csr.key_weak',
    ],
    [
      'an EC point off the curve',
      () => handCsr({ key: p256, spki: ecSpki(OID.secp256r1, offCurve(p256.spki)) }),
      'csr.key_weak',
    ],
    [
      'the EC point at infinity',
      () => handCsr({ key: p256, spki: ecSpki(OID.secp256r1, Uint8Array.from([0])) }),
      'csr.key_weak',
    ],
    [
      'an Ed25519 key of small order',
      () =>
        handCsr({
          key: ed25519,
          spki: sequence(
            sequence(oid(OID.ed25519)),
            bitString(
              Uint8Array.from(
                Buffer.from('26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05', 'hex'),
              ),
            ),
          ),
        }),
      'csr.key_weak',
    ],
    [
      'a blocked key',
      () => handCsr({ key: p256 }),
      'csr.key_blocked',
      { blocklist: keyBlocklistFromHashes([]) },
    ],
    [
      'an unknown critical extension',
      () =>
        handCsr({
          key: p256,
          extensions: [
            sanExtension([{ type: 'dns', value: 'www.example.com' }]),
            encodeExtension('1.3.6.1.4.1.99999.2', true, NULL_DER),
          ],
        }),
      'csr.critical_extension_unsupported',
    ],
    [
      'an otherName SAN',
      () =>
        handCsr({
          key: p256,
          extensions: [
            encodeExtension(
              OID.subjectAltName,
              false,
              sequence(
                tlv(
                  contextTag(0, true),
                  oid('1.3.6.1.4.1.311.20.2.3'),
                  tlv(contextTag(0, true), utf8String('user@example.com')),
                ),
              ),
            ),
          ],
        }),
      'csr.san_unsupported',
    ],
    [
      'a surname in the subject',
      () => handCsr({ key: p256, subject: sequence(setOf([sequence(oid('2.5.4.4'), utf8String('Smith'))])) }),
      'csr.subject_unsupported',
    ],
  ];

  test.each(cases.map(([name, make, code, options]) => [name, code, make, options] as const))(
    '%s is refused with %s',
    (_name, code, make, options) => {
      const input = make();
      const resolved =
        code === 'csr.key_blocked' ? { blocklist: keyBlocklistFromHashes([spkiSha256(p256.spki)]) } : options;
      expect(refusal(input, resolved)).toBe(code);
    },
  );

  test('the table covers every listed code', () => {
    const covered = new Set(cases.map(([, , code]) => code));
    for (const code of [
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
    ]) {
      expect(covered.has(code)).toBe(true);
    }
  });
});

function splitInfo(info: Uint8Array): Uint8Array[] {
  // The children of the CertificationRequestInfo SEQUENCE, as DER slices.
  const headerLength = info[1]! & 0x80 ? 2 + (info[1]! & 0x7f) : 2;
  const parts: Uint8Array[] = [];
  let offset = headerLength;
  while (offset < info.length) {
    const lengthByte = info[offset + 1]!;
    const lengthOctets = lengthByte & 0x80 ? lengthByte & 0x7f : 0;
    let length = lengthOctets ? 0 : lengthByte;
    for (let i = 0; i < lengthOctets; i++) length = length * 256 + info[offset + 2 + i]!;
    const end = offset + 2 + lengthOctets + length;
    parts.push(info.subarray(offset, end));
    offset = end;
  }
  return parts;
}

function generateP256Spki(): Uint8Array {
  const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return new Uint8Array(publicKey.export({ format: 'der', type: 'spki' }));
}

function rsaSpkiOf(publicKey: import('node:crypto').KeyObject): Uint8Array {
  return new Uint8Array(publicKey.export({ format: 'der', type: 'spki' }));
}

/** An odd number of exactly `bits` bits with no small factors checked (a stand-in modulus). */
function oddModulus(bits: number): bigint {
  const p = generatePrimeSync(bits / 2, { bigint: true });
  const q = generatePrimeSync(bits / 2, { bigint: true });
  return p * q;
}

/** 2048 bits, odd, with the factor 751. */
function smallFactorModulus(): bigint {
  for (;;) {
    const n = 751n * generatePrimeSync(2038, { bigint: true });
    if (n.toString(2).length === 2048) return n;
  }
}

function offCurve(spki: Uint8Array): Uint8Array {
  const point = Uint8Array.from(spki.subarray(-65));
  point[64]! ^= 1;
  return point;
}

describe('the key blocklist', () => {
  test('a file of hashes blocks those keys, ignores comments, and reload picks up changes', async () => {
    const file = join(tempDir(), 'blocked-keys.txt');
    writeFileSync(
      file,
      `# compromised keys\n${spkiSha256(p256.spki).toUpperCase()}  # the p256 test key\n\n`,
    );
    const blocklist = createKeyBlocklist(file);
    expect(blocklist.size).toBe(1);
    expect(refusal(handCsr({ key: p256 }), { blocklist })).toBe('csr.key_blocked');
    expect(parseCsr(handCsr({ key: p384 }), { blocklist }).keyAlgorithm).toBe('ecdsa-p384');

    writeFileSync(file, `${spkiSha256(p384.spki)}\n`);
    expect(await blocklist.reload()).toBe(1);
    expect(parseCsr(handCsr({ key: p256 }), { blocklist }).keyAlgorithm).toBe('ecdsa-p256');
    expect(refusal(handCsr({ key: p384 }), { blocklist })).toBe('csr.key_blocked');
  });

  test('a bad line fails the load with its line number, and a failed reload keeps the old list', async () => {
    const file = join(tempDir(), 'blocked-keys.txt');
    writeFileSync(file, 'not-a-hash\n');
    expect(() => createKeyBlocklist(file)).toThrow(/:1: not a SHA-256/);
    writeFileSync(file, `${spkiSha256(p256.spki)}\n`);
    const blocklist = createKeyBlocklist(file);
    writeFileSync(file, `${spkiSha256(p384.spki)}\nzz\n`);
    await expect(blocklist.reload()).rejects.toThrow(/:2:/);
    expect(blocklist.has(p256.spki)).toBe(true);
  });
});

describe('parseCsr under random mutation', () => {
  test('mutated requests are accepted or refused with a CsrError, never anything else, quickly', () => {
    const seeds = [
      handCsr({
        key: p256,
        extensions: [
          sanExtension([
            { type: 'dns', value: 'www.example.com' },
            { type: 'ip', value: '192.0.2.1' },
          ]),
        ],
      }),
      handCsr({ key: rsa2048 }),
      handCsr({ key: ed25519, subject: encodeName([{ type: 'O', value: 'Example' }]) }),
    ];
    const mutation = fc.oneof(
      fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }),
      fc.record({ kind: fc.constant('set' as const), at: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }),
      fc.record({
        kind: fc.constant('insert' as const),
        at: fc.nat(),
        bytes: fc.uint8Array({ minLength: 1, maxLength: 8 }),
      }),
      fc.record({
        kind: fc.constant('delete' as const),
        at: fc.nat(),
        count: fc.integer({ min: 1, max: 8 }),
      }),
      fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
    );
    fc.assert(
      fc.property(
        fc.nat({ max: seeds.length - 1 }),
        fc.array(mutation, { minLength: 1, maxLength: 4 }),
        fc.boolean(),
        (seedIndex, mutations, asPem) => {
          let bytes = Array.from(seeds[seedIndex]!);
          for (const m of mutations) {
            const at = m.at % Math.max(bytes.length, 1);
            if (m.kind === 'flip') bytes[at] = bytes[at]! ^ (1 << m.bit);
            else if (m.kind === 'set') bytes[at] = m.value;
            else if (m.kind === 'insert') bytes.splice(at, 0, ...m.bytes);
            else if (m.kind === 'delete') bytes.splice(at, m.count);
            else bytes = bytes.slice(0, at);
          }
          const input = asPem ? csrPem(Uint8Array.from(bytes)) : Uint8Array.from(bytes);
          const started = performance.now();
          try {
            parseCsr(input);
          } catch (error) {
            if (!(error instanceof CsrError)) throw error;
          }
          expect(performance.now() - started).toBeLessThan(500);
        },
      ),
      { numRuns: 1500 },
    );
  });
});
