import { createHash, webcrypto, X509Certificate } from 'node:crypto';
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { beforeAll, describe, expect, test } from 'vitest';
import { lintCertificate, signCertificate } from '../../src/issuance/token.ts';
import { fixedClock } from '../../src/lib/clock.ts';
import { decodeCrlDistributionPointUris } from '../../src/lint/extensions.ts';
import {
  buildTbsCertificate,
  generateSerial,
  IssuerExpiredError,
  leafKeyUsage,
  serialToHex,
} from '../../src/x509/certificate.ts';
import { crlShardOf } from '../../src/x509/crl-urls.ts';
import { readCertificateFields } from '../../src/x509/issuer.ts';
import { OID } from '../../src/x509/oids.ts';
import type { CertificateTemplate } from '../../src/x509/types.ts';
import { createTestChain, generateTestKey, leafTemplate, type TestChain, type TestKey } from './fixtures.ts';

const NOW = new Date('2026-06-01T12:00:00.750Z');
const clock = fixedClock(NOW);

let chain: TestChain;
let p256: TestKey;
let rsa: TestKey;
let ed25519: TestKey;

beforeAll(async () => {
  const [rootKey, issuerKey, leafP256, leafRsa, leafEd] = await Promise.all([
    generateTestKey('ecdsa-p384'),
    generateTestKey('ecdsa-p256'),
    generateTestKey('ecdsa-p256'),
    generateTestKey('rsa-2048'),
    generateTestKey('ed25519'),
  ]);
  p256 = leafP256;
  rsa = leafRsa;
  ed25519 = leafEd;
  chain = await createTestChain(rootKey, issuerKey, { clock: fixedClock('2026-01-01T00:00:00Z') });
});

/** Builds, lints and signs; returns the certificate as @peculiar/x509 sees it. */
async function issue(template: CertificateTemplate): Promise<x509.X509Certificate> {
  const built = buildTbsCertificate(template, chain.issuer, { serial: generateSerial(), clock });
  const lint = lintCertificate(built.der, { issuer: chain.issuer, profile: 'leaf' });
  if (!lint.ok) throw new Error(JSON.stringify(lint.findings));
  const der = await signCertificate(lint.token, { crypto: webcrypto, key: chain.issuerKey.pair.privateKey });
  return new x509.X509Certificate(der);
}

describe('generateSerial', () => {
  test('serials are 17 positive octets with 134 random bits, and distinct', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 2000; i++) {
      const serial = generateSerial();
      expect(serial).toHaveLength(17);
      expect(serial[0]! & 0xc0).toBe(0x40);
      seen.add(serialToHex(serial));
    }
    expect(seen.size).toBe(2000);
  });

  test('serialToHex writes the INTEGER content octets in lowercase, with a sign octet when needed', () => {
    expect(serialToHex(Uint8Array.from([0x7f, 0xab]))).toBe('7fab');
    expect(serialToHex(Uint8Array.from([0x80, 0x01]))).toBe('008001');
    expect(serialToHex(Uint8Array.from([0x00, 0x00, 0x12]))).toBe('12');
  });
});

describe('buildTbsCertificate', () => {
  test('validity starts one minute back in whole seconds and lasts exactly validitySeconds, inclusive', () => {
    const built = buildTbsCertificate(leafTemplate(p256, { validitySeconds: 3600 }), chain.issuer, {
      serial: generateSerial(),
      clock,
    });
    expect(built.notBefore.toISOString()).toBe('2026-06-01T11:59:00.000Z');
    expect(built.notAfter.toISOString()).toBe('2026-06-01T12:58:59.000Z');
    const fields = readCertificateFields(built.der, true);
    expect(fields.notBefore).toEqual(built.notBefore);
    expect(fields.notAfter).toEqual(built.notAfter);
  });

  test('notAfter is capped at the issuer’s notAfter', () => {
    const built = buildTbsCertificate(
      leafTemplate(p256, { validitySeconds: 20 * 365 * 86400 }),
      chain.issuer,
      {
        serial: generateSerial(),
        clock,
      },
    );
    expect(built.notAfter).toEqual(chain.issuer.notAfter);
  });

  test('an issuer past its notAfter cannot issue', () => {
    const late = fixedClock(new Date(chain.issuer.notAfter.getTime() + 1000));
    expect(() =>
      buildTbsCertificate(leafTemplate(p256), chain.issuer, { serial: generateSerial(), clock: late }),
    ).toThrow(IssuerExpiredError);
  });

  test('a template for another issuer is refused', () => {
    expect(() =>
      buildTbsCertificate(leafTemplate(p256, { issuer: 'someone-else' }), chain.issuer, {
        serial: generateSerial(),
        clock,
      }),
    ).toThrow(/issuer someone-else/);
  });

  test('serials longer than 20 octets and zero are refused (RFC 5280 §4.1.2.2)', () => {
    const template = leafTemplate(p256);
    expect(() =>
      buildTbsCertificate(template, chain.issuer, { serial: new Uint8Array(21).fill(1), clock }),
    ).toThrow(/20 octets/);
    expect(() => buildTbsCertificate(template, chain.issuer, { serial: new Uint8Array(8), clock })).toThrow(
      /positive/,
    );
  });

  test('the profile: v3, issuer name and key identifiers, critical basicConstraints and keyUsage, EKU, CRL DP and AIA', async () => {
    const certificate = await issue(leafTemplate(p256));
    expect(certificate.issuer).toBe('O=Signet Test, CN=Signet Test Intermediate ecdsa-p256');
    expect(certificate.subject).toBe('CN=www.example.com');
    expect((certificate.signatureAlgorithm as unknown as { name: string }).name).toBe('ECDSA');
    const spkiBits = new Uint8Array(certificate.publicKey.rawData).subarray(-65);
    const expectedSki = createHash('sha256').update(spkiBits).digest().subarray(0, 20).toString('hex');
    expect(certificate.getExtension(x509.SubjectKeyIdentifierExtension)?.keyId).toBe(expectedSki);
    expect(certificate.getExtension(x509.AuthorityKeyIdentifierExtension)?.keyId).toBe(
      Buffer.from(chain.issuer.subjectKeyIdentifier).toString('hex'),
    );
    const basic = certificate.getExtension(x509.BasicConstraintsExtension)!;
    expect([basic.critical, basic.ca]).toEqual([true, false]);
    const usage = certificate.getExtension(x509.KeyUsagesExtension)!;
    expect([usage.critical, usage.usages]).toEqual([true, x509.KeyUsageFlags.digitalSignature]);
    expect(certificate.getExtension(x509.ExtendedKeyUsageExtension)?.usages).toEqual(['1.3.6.1.5.5.7.3.1']);
    const node = new X509Certificate(Buffer.from(certificate.rawData));
    expect(node.infoAccess).toContain('OCSP - URI:http://ca.example.com/ocsp');
    expect(node.infoAccess).toContain(
      'CA Issuers - URI:http://ca.example.com/v1/issuers/test-intermediate/certificate',
    );
    expect(certificate.getExtension(OID.crlDistributionPoints)).toBeDefined();
    expect(certificate.getExtension(OID.tlsFeature)).toBeNull();
    expect(certificate.getExtension(OID.certificatePolicies)).toBeNull();
  });

  test('a sharded issuer names the shard of the serial in the CRL DP, and a Freshest CRL with deltas, and lints', () => {
    const sharded = { ...chain.issuer, crlShards: 8, deltaCrls: true };
    const seen = new Set<number>();
    for (let i = 0; i < 40; i++) {
      const serial = generateSerial();
      const built = buildTbsCertificate(leafTemplate(p256), sharded, { serial, clock });
      expect(built.crlShard).toBe(crlShardOf(serial, 8));
      seen.add(built.crlShard);
      const fields = readCertificateFields(built.der, true);
      const dp = decodeCrlDistributionPointUris(fields.extensions.get(OID.crlDistributionPoints)!.value);
      expect(dp).toEqual([`http://ca.example.com/crl/test-intermediate/${built.crlShard}.crl`]);
      const freshest = fields.extensions.get(OID.freshestCrl)!;
      expect(freshest.critical).toBe(false);
      expect(decodeCrlDistributionPointUris(freshest.value)).toEqual([
        `http://ca.example.com/crl/test-intermediate/${built.crlShard}/delta.crl`,
      ]);
      const lint = lintCertificate(built.der, { issuer: sharded, profile: 'leaf' });
      expect(lint.findings.filter((finding) => finding.severity === 'error')).toEqual([]);
    }
    expect(seen.size).toBeGreaterThan(4);
    // One shard: the issuer's own URL, and the lint refuses a DP naming a shard it does not have.
    const one = buildTbsCertificate(
      leafTemplate(p256),
      { ...chain.issuer, crlShards: 1 },
      { serial: generateSerial(), clock },
    );
    expect(one.crlShard).toBe(0);
    let serial = generateSerial();
    while (crlShardOf(serial, 8) === 0) serial = generateSerial();
    const eight = buildTbsCertificate(leafTemplate(p256), sharded, { serial, clock });
    const refused = lintCertificate(eight.der, {
      issuer: { ...chain.issuer, crlShards: 1 },
      profile: 'leaf',
    });
    expect(refused.ok).toBe(false);
    const noFreshest = lintCertificate(one.der, {
      issuer: { ...chain.issuer, deltaCrls: true },
      profile: 'leaf',
    });
    expect(noFreshest.ok).toBe(false);
  });

  test('a CN that is not among the SANs is left out, one that is (in any case, or as an IP) stays', async () => {
    const dropped = await issue(
      leafTemplate(p256, {
        subject: [
          { type: 'O', value: 'Example' },
          { type: 'CN', value: 'nothere.example.com' },
        ],
      }),
    );
    expect(dropped.subject).toBe('O=Example');
    const kept = await issue(leafTemplate(p256, { subject: [{ type: 'CN', value: 'WWW.example.com' }] }));
    expect(kept.subject).toBe('CN=WWW.example.com');
    const ip = await issue(
      leafTemplate(p256, {
        subject: [{ type: 'CN', value: '2001:DB8::1' }],
        sans: [{ type: 'ip', value: '2001:db8::1' }],
      }),
    );
    expect(ip.subject).toBe('CN=2001:DB8::1');
  });

  test('an empty subject makes the SAN extension critical (RFC 5280 §4.2.1.6)', async () => {
    const spiffe = await issue(
      leafTemplate(p256, {
        subject: [],
        sans: [{ type: 'uri', value: 'spiffe://example.org/ns/default/sa/web' }],
        extendedKeyUsage: ['clientAuth'],
      }),
    );
    expect(spiffe.subject).toBe('');
    expect(spiffe.getExtension(x509.SubjectAlternativeNameExtension)?.critical).toBe(true);
    const named = await issue(leafTemplate(p256));
    expect(named.getExtension(x509.SubjectAlternativeNameExtension)?.critical).toBe(false);
  });

  test.each([
    ['ecdsa-p256', ['digitalSignature', 'keyEncipherment'], ['serverAuth'], ['digitalSignature']],
    ['ecdsa-p384', ['keyAgreement'], ['clientAuth'], ['digitalSignature', 'keyAgreement']],
    ['ed25519', ['keyEncipherment', 'keyAgreement'], ['serverAuth'], ['digitalSignature']],
    ['rsa-2048', ['digitalSignature'], ['serverAuth'], ['digitalSignature', 'keyEncipherment']],
    ['rsa-3072', ['digitalSignature'], ['clientAuth'], ['digitalSignature']],
    ['rsa-2048', ['keyCertSign', 'cRLSign'], ['clientAuth'], ['digitalSignature']],
  ] as const)('a %s key asking for %j with %j gets %j', (key, requested, eku, expected) => {
    expect(leafKeyUsage(key, [...requested], [...eku])).toEqual(expected);
  });

  test('RSA and Ed25519 leaves get the usages their keys can perform', async () => {
    const rsaLeaf = await issue(leafTemplate(rsa, { keyUsage: ['digitalSignature'] }));
    expect(rsaLeaf.getExtension(x509.KeyUsagesExtension)?.usages).toBe(
      x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment,
    );
    const edLeaf = await issue(leafTemplate(ed25519, { keyUsage: ['digitalSignature', 'keyEncipherment'] }));
    expect(edLeaf.getExtension(x509.KeyUsagesExtension)?.usages).toBe(x509.KeyUsageFlags.digitalSignature);
  });

  test('policies, must-staple and passthrough extensions are written as asked', async () => {
    const passthrough = { oid: '1.3.6.1.4.1.99999.5', critical: false, value: Uint8Array.from([0x05, 0x00]) };
    const certificate = await issue(
      leafTemplate(p256, {
        policyOids: ['2.23.140.1.2.1', '1.3.6.1.4.1.99999.1'],
        ocspMustStaple: true,
        passthroughExtensions: [passthrough],
      }),
    );
    expect(certificate.getExtension(x509.CertificatePolicyExtension)?.policies).toEqual([
      '2.23.140.1.2.1',
      '1.3.6.1.4.1.99999.1',
    ]);
    expect(Buffer.from(certificate.getExtension(OID.tlsFeature)!.value).toString('hex')).toBe('3003020105');
    expect(Buffer.from(certificate.getExtension(passthrough.oid)!.value).toString('hex')).toBe('0500');
  });

  test('a passthrough extension may not duplicate one the CA sets', () => {
    const template = leafTemplate(p256, {
      passthroughExtensions: [
        { oid: OID.basicConstraints, critical: true, value: Uint8Array.from([0x30, 0x00]) },
      ],
    });
    expect(() => buildTbsCertificate(template, chain.issuer, { serial: generateSerial(), clock })).toThrow(
      /duplicate/,
    );
  });

  test('the CSR’s SubjectPublicKeyInfo goes into the certificate byte for byte', () => {
    const built = buildTbsCertificate(leafTemplate(rsa), chain.issuer, { serial: generateSerial(), clock });
    const fields = readCertificateFields(built.der, true);
    expect(
      Buffer.from(built.der.subarray(fields.spki.start, fields.spki.end)).equals(Buffer.from(rsa.spki)),
    ).toBe(true);
  });
});
