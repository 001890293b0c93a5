import { createHash } from 'node:crypto';
import { AsnConvert, OctetString } from '@peculiar/asn1-schema';
import {
  CRLReason,
  Extension,
  InvalidityDate,
  id_ce_cRLReasons,
  id_ce_invalidityDate,
  RevokedCertificate,
  Time,
} from '@peculiar/asn1-x509';
import * as x509 from '@peculiar/x509';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { buildCrl, type CrlEntry, encodeCrlEntry } from '../../src/revocation/crl-builder.ts';
import { REASON_CODES, REVOCATION_REASONS } from '../../src/revocation/reasons.ts';
import { parseRevocationSerial } from '../../src/revocation/serial.ts';
import { hasTool } from '../helpers/tools.ts';
import { openssl, scratch } from './helpers/openssl.ts';
import {
  createIntermediate,
  createLeaf,
  createRoot,
  crlPem,
  type TestCa,
  type TestKeyAlgorithm,
  type TestLeaf,
} from './helpers/pki.ts';
import { verifyEcdsaSha256 } from './helpers/signed.ts';

const NOW = new Date('2026-03-01T12:00:00.000Z');
const DAY = 86_400_000;

describe('a CRL entry', () => {
  const cases: { name: string; entry: CrlEntry }[] = [
    { name: 'unspecified has no reasonCode', entry: { serial: '01', revokedAt: NOW, reason: 'unspecified' } },
    {
      name: 'keyCompromise with an invalidity date',
      entry: {
        serial: '00ff10',
        revokedAt: NOW,
        reason: 'keyCompromise',
        invalidityDate: new Date('2026-02-27T08:30:00Z'),
      },
    },
    { name: 'a 20-octet serial', entry: { serial: '7f'.repeat(20), revokedAt: NOW, reason: 'superseded' } },
    {
      name: 'a date from 2050 on as GeneralizedTime',
      entry: { serial: '42', revokedAt: new Date('2051-01-01T00:00:00Z'), reason: 'aACompromise' },
    },
    ...REVOCATION_REASONS.map((reason) => ({
      name: `reason ${reason}`,
      entry: { serial: 'abcdef', revokedAt: NOW, reason } as CrlEntry,
    })),
  ];

  test.each(cases)('encodes like @peculiar/asn1-x509 does: $name', ({ entry }) => {
    const extensions: Extension[] = [];
    if (entry.reason !== 'unspecified') {
      extensions.push(
        new Extension({
          extnID: id_ce_cRLReasons,
          critical: false,
          extnValue: new OctetString(AsnConvert.serialize(new CRLReason(REASON_CODES[entry.reason]))),
        }),
      );
    }
    if (entry.invalidityDate) {
      extensions.push(
        new Extension({
          extnID: id_ce_invalidityDate,
          critical: false,
          extnValue: new OctetString(AsnConvert.serialize(new InvalidityDate(entry.invalidityDate))),
        }),
      );
    }
    const serial = Buffer.from(parseRevocationSerial(entry.serial), 'hex');
    const reference = new RevokedCertificate({
      userCertificate: serial.buffer.slice(serial.byteOffset, serial.byteOffset + serial.byteLength),
      revocationDate: new Time(entry.revokedAt),
      ...(extensions.length ? { crlEntryExtensions: extensions } : {}),
    });
    expect(Buffer.from(encodeCrlEntry(entry)).toString('hex')).toBe(
      Buffer.from(AsnConvert.serialize(reference)).toString('hex'),
    );
  });

  test('writes the serial canonically whatever way it was given', () => {
    const a = encodeCrlEntry({ serial: 'AB:CD', revokedAt: NOW, reason: 'superseded' });
    const b = encodeCrlEntry({ serial: '00abcd', revokedAt: NOW, reason: 'superseded' });
    expect(Buffer.from(a).equals(Buffer.from(b))).toBe(true);
    // 0xab has its high bit set: the INTEGER needs a leading zero octet to stay positive.
    expect(Buffer.from(a).toString('hex')).toContain('020300abcd');
  });

  test('drops milliseconds from the revocation date', () => {
    const a = encodeCrlEntry({
      serial: '01',
      revokedAt: new Date(NOW.getTime() + 999),
      reason: 'superseded',
    });
    const b = encodeCrlEntry({ serial: '01', revokedAt: NOW, reason: 'superseded' });
    expect(Buffer.from(a).equals(Buffer.from(b))).toBe(true);
  });

  test('refuses a reason Signet does not support', () => {
    expect(() =>
      encodeCrlEntry({ serial: '01', revokedAt: NOW, reason: 'certificateHold' as never }),
    ).toThrow(/unsupported reason/);
  });
});

describe('buildCrl', () => {
  let root: TestCa;
  let intermediate: TestCa;

  beforeAll(async () => {
    root = await createRoot();
    intermediate = await createIntermediate(root);
  });

  test('writes v2, the issuer name, whole-second times, AKI, CRL number and entries', async () => {
    const crl = await buildCrl({
      issuer: intermediate.der,
      signer: intermediate.signer,
      number: 1_772_366_400_000_000_000n,
      thisUpdate: new Date(NOW.getTime() + 123),
      nextUpdate: new Date(NOW.getTime() + DAY + 456),
      entries: [
        [
          {
            serial: '0a',
            revokedAt: NOW,
            reason: 'keyCompromise',
            invalidityDate: new Date(NOW.getTime() - DAY),
          },
          { serial: '0b', revokedAt: NOW, reason: 'unspecified' },
        ],
        [{ serial: '0c', revokedAt: NOW, reason: 'cessationOfOperation' }],
      ],
    });
    expect(crl.thisUpdate).toEqual(NOW);
    expect(crl.nextUpdate).toEqual(new Date(NOW.getTime() + DAY));
    expect(crl.entryCount).toBe(3);
    expect(Buffer.from(crl.sha256).toString('hex')).toBe(createHash('sha256').update(crl.der).digest('hex'));

    const parsed = new x509.X509Crl(crl.der);
    expect(parsed.version).toBe(1);
    expect(parsed.issuer).toBe(intermediate.certificate.subject);
    expect(parsed.thisUpdate).toEqual(NOW);
    expect(parsed.entries.map((entry) => [entry.serialNumber.toLowerCase(), entry.reason])).toEqual([
      ['0a', x509.X509CrlReason.keyCompromise],
      ['0b', undefined],
      ['0c', x509.X509CrlReason.cessationOfOperation],
    ]);
    expect(parsed.entries[0]!.invalidity).toEqual(new Date(NOW.getTime() - DAY));
    const aki = parsed.getExtension('2.5.29.35') as x509.AuthorityKeyIdentifierExtension;
    const ski = intermediate.certificate.getExtension('2.5.29.14') as x509.SubjectKeyIdentifierExtension;
    expect(aki.keyId).toBe(ski.keyId);
    expect(await parsed.verify({ publicKey: intermediate.certificate.publicKey })).toBe(true);
  });

  test('omits revokedCertificates entirely when nothing is revoked (RFC 5280 §5.1.2.6)', async () => {
    const crl = await buildCrl({
      issuer: intermediate.der,
      signer: intermediate.signer,
      number: 7n,
      thisUpdate: NOW,
      nextUpdate: new Date(NOW.getTime() + DAY),
    });
    const parsed = new x509.X509Crl(crl.der);
    expect(parsed.entries).toEqual([]);
    expect(crl.entryCount).toBe(0);
  });

  test('refuses a key handle that is not the issuer certificate key', async () => {
    const other = await createIntermediate(root);
    await expect(
      buildCrl({
        issuer: intermediate.der,
        signer: other.signer,
        number: 1n,
        thisUpdate: NOW,
        nextUpdate: new Date(NOW.getTime() + DAY),
      }),
    ).rejects.toThrow(/does not verify/);
  });

  test('refuses a serial listed twice', async () => {
    await expect(
      buildCrl({
        issuer: intermediate.der,
        signer: intermediate.signer,
        number: 1n,
        thisUpdate: NOW,
        nextUpdate: new Date(NOW.getTime() + DAY),
        entries: [
          [{ serial: '0a', revokedAt: NOW, reason: 'superseded' }],
          [{ serial: '0A', revokedAt: NOW, reason: 'superseded' }],
        ],
      }),
    ).rejects.toThrow(/appears twice/);
  });

  test.each([
    { name: 'in order', serials: ['0a', '0b', '0c'], duplicate: false },
    { name: 'out of order', serials: ['0c', '0a', '0b'], duplicate: false },
    { name: 'out of order with a repeat far back', serials: ['0a', '0c', '0b', '0a'], duplicate: true },
    { name: 'in order with a repeat', serials: ['0a', '0b', '0b'], duplicate: true },
  ])('checks each serial appears once when entries come $name', async ({ serials, duplicate }) => {
    const attempt = buildCrl({
      issuer: intermediate.der,
      signer: intermediate.signer,
      number: 1n,
      thisUpdate: NOW,
      nextUpdate: new Date(NOW.getTime() + DAY),
      entries: serials.map((serial) => ({ serial, revokedAt: NOW, reason: 'superseded' as const })),
    });
    if (duplicate) await expect(attempt).rejects.toThrow(/appears twice/);
    else expect((await attempt).entryCount).toBe(serials.length);
  });

  test('finds a repeat that comes out of order after several writer buffers', async () => {
    const serials = Array.from({ length: 8000 }, (_, i) => `1${i.toString(16).padStart(15, '0')}`);
    const attempt = buildCrl({
      issuer: intermediate.der,
      signer: intermediate.signer,
      number: 1n,
      thisUpdate: NOW,
      nextUpdate: new Date(NOW.getTime() + DAY),
      entries: [...serials, '0f', serials[3]!].map((serial) => ({
        serial,
        revokedAt: NOW,
        reason: 'superseded' as const,
      })),
    });
    await expect(attempt).rejects.toThrow(`CRL entry ${serials[3]} appears twice`);
  });

  test.each([
    { name: 'nextUpdate not after thisUpdate', patch: { nextUpdate: NOW }, error: /nextUpdate/ },
    { name: 'a negative CRL number', patch: { number: -1n }, error: /range/ },
    { name: 'a CRL number over 20 octets', patch: { number: 1n << 160n }, error: /range/ },
  ])('refuses $name', async ({ patch, error }) => {
    await expect(
      buildCrl({
        issuer: intermediate.der,
        signer: intermediate.signer,
        number: 1n,
        thisUpdate: NOW,
        nextUpdate: new Date(NOW.getTime() + DAY),
        ...patch,
      }),
    ).rejects.toThrow(error);
  });

  test('streams a large CRL through signStream in pieces', async () => {
    const pieces: number[] = [];
    const signStream = async (chunks: AsyncIterable<Uint8Array>) => {
      const all: Uint8Array[] = [];
      for await (const chunk of chunks) {
        pieces.push(chunk.byteLength);
        all.push(chunk);
      }
      return new Uint8Array(
        await crypto.subtle.sign(
          { name: 'ECDSA', hash: 'SHA-256' },
          intermediate.keys.privateKey,
          Buffer.concat(all),
        ),
      );
    };
    const entries = Array.from({ length: 2000 }, (_, i) => ({
      serial: (i + 1).toString(16),
      revokedAt: NOW,
      reason: 'superseded' as const,
    }));
    const crl = await buildCrl({
      issuer: intermediate.der,
      signer: { ...intermediate.signer, signStream },
      number: 3n,
      thisUpdate: NOW,
      nextUpdate: new Date(NOW.getTime() + DAY),
      entries: [entries],
      chunkBytes: 4096,
    });
    expect(pieces.length).toBeGreaterThan(5);
    expect(Math.max(...pieces)).toBeLessThanOrEqual(4096);
    // @peculiar/x509 refuses to parse this many nodes; node:crypto checks the signature instead.
    expect(verifyEcdsaSha256(crl.der, intermediate.certificate.publicKey.rawData)).toBe(true);
  });

  test('builds a CRL of 100 000 entries quickly', async () => {
    const started = performance.now();
    const crl = await buildLargeCrl(intermediate, 100_000);
    const ms = performance.now() - started;
    console.log(`buildCrl: 100000 entries, ${crl.der.byteLength} bytes, ${ms.toFixed(0)} ms`);
    expect(crl.entryCount).toBe(100_000);
    expect(verifyEcdsaSha256(crl.der, intermediate.certificate.publicKey.rawData)).toBe(true);
    expect(ms).toBeLessThan(10_000);
  });
});

async function buildLargeCrl(ca: TestCa, count: number) {
  async function* pages() {
    for (let start = 0; start < count; start += 1000) {
      yield Array.from({ length: Math.min(1000, count - start) }, (_, i) => ({
        serial: (0x1000000 + start + i).toString(16).padStart(32, '7'),
        revokedAt: NOW,
        reason: i % 3 === 0 ? ('keyCompromise' as const) : ('superseded' as const),
        ...(i % 5 === 0 ? { invalidityDate: new Date(NOW.getTime() - DAY) } : {}),
      }));
    }
  }
  return buildCrl({
    issuer: ca.der,
    signer: ca.signer,
    number: 4n,
    thisUpdate: NOW,
    nextUpdate: new Date(NOW.getTime() + DAY),
    entries: pages(),
  });
}

describe.runIf(hasTool('openssl', ['version']))('openssl accepts the CRLs', () => {
  const dir = scratch();
  afterAll(() => dir.cleanup());

  const algorithms: TestKeyAlgorithm[] = ['ecdsa-p256', 'ecdsa-p384', 'rsa-2048', 'rsa-pss-2048', 'ed25519'];

  test.each(algorithms)('openssl crl -verify accepts a CRL signed with %s', async (algorithm) => {
    const root = await createRoot({ algorithm });
    const ca = await createIntermediate(root, { algorithm });
    const crl = await buildCrl({
      issuer: ca.der,
      signer: ca.signer,
      number: 1_772_366_400_000_000_000n,
      thisUpdate: NOW,
      nextUpdate: new Date(NOW.getTime() + DAY),
      entries: [
        [
          {
            serial: '00c0ffee',
            revokedAt: NOW,
            reason: 'keyCompromise',
            invalidityDate: new Date(NOW.getTime() - DAY),
          },
          { serial: '1234', revokedAt: NOW, reason: 'unspecified' },
        ],
      ],
    });
    const caFile = dir.write(`${algorithm}-ca.pem`, ca.pem);
    const crlFile = dir.write(`${algorithm}.crl`, crl.der);
    const verified = await openssl([
      'crl',
      '-inform',
      'DER',
      '-in',
      crlFile,
      '-CAfile',
      caFile,
      '-noout',
      '-verify',
    ]);
    expect(verified.output).toContain('verify OK');
    expect(verified.code).toBe(0);
    const text = await openssl(['crl', '-inform', 'DER', '-in', crlFile, '-noout', '-text']);
    expect(text.stdout).toContain('Version 2 (0x1)');
    expect(text.stdout).toMatch(/X509v3 CRL Number:\s+1772366400000000000/);
    expect(text.stdout).toContain('X509v3 Authority Key Identifier');
    expect(text.stdout).toContain('Key Compromise');
    expect(text.stdout).toMatch(/Invalidity Date:\s+Feb 28 12:00:00 2026 GMT/);
    expect(text.stdout).toContain('Last Update: Mar  1 12:00:00 2026 GMT');
    expect(text.stdout).toContain('Next Update: Mar  2 12:00:00 2026 GMT');
  });

  test('openssl crl -verify accepts a CRL of 100 000 entries', async () => {
    const root = await createRoot();
    const ca = await createIntermediate(root);
    const crl = await buildLargeCrl(ca, 100_000);
    const crlFile = dir.write('large.crl', crl.der);
    const verified = await openssl([
      'crl',
      '-inform',
      'DER',
      '-in',
      crlFile,
      '-CAfile',
      dir.write('large-ca.pem', ca.pem),
      '-noout',
      '-verify',
    ]);
    expect(verified.output).toContain('verify OK');
  });

  test('openssl reads a critical issuing distribution point for a CA-only CRL', async () => {
    const root = await createRoot();
    const crl = await buildCrl({
      issuer: root.der,
      signer: root.signer,
      number: 9n,
      thisUpdate: NOW,
      nextUpdate: new Date(NOW.getTime() + DAY),
      issuingDistributionPoint: { uris: ['http://ca.example.com/crl/root.crl'], onlyContainsCACerts: true },
    });
    const crlFile = dir.write('idp.crl', crl.der);
    const text = await openssl(['crl', '-inform', 'DER', '-in', crlFile, '-noout', '-text']);
    expect(text.stdout).toMatch(/X509v3 Issuing Distribution Point: critical/);
    expect(text.stdout).toContain('URI:http://ca.example.com/crl/root.crl');
    expect(text.stdout).toContain('Only CA Certificates');
    const verified = await openssl([
      'crl',
      '-inform',
      'DER',
      '-in',
      crlFile,
      '-CAfile',
      dir.write('root-idp.pem', root.pem),
      '-noout',
      '-verify',
    ]);
    expect(verified.output).toContain('verify OK');
  });

  describe('openssl verify -crl_check', () => {
    let root: TestCa;
    let ca: TestCa;
    let revoked: TestLeaf;
    let good: TestLeaf;
    let files: { root: string; ca: string; crl: string };

    beforeAll(async () => {
      root = await createRoot();
      ca = await createIntermediate(root);
      revoked = await createLeaf(ca);
      good = await createLeaf(ca);
      const now = new Date();
      const crl = await buildCrl({
        issuer: ca.der,
        signer: ca.signer,
        number: 10n,
        thisUpdate: new Date(now.getTime() - 60_000),
        nextUpdate: new Date(now.getTime() + DAY),
        entries: [
          [{ serial: revoked.serial, revokedAt: new Date(now.getTime() - 30_000), reason: 'keyCompromise' }],
        ],
      });
      files = {
        root: dir.write('v-root.pem', root.pem),
        ca: dir.write('v-ca.pem', ca.pem),
        crl: dir.write('v.crl.pem', crlPem(crl.der)),
      };
    });

    test('rejects the revoked leaf', async () => {
      const leaf = dir.write('revoked.pem', revoked.pem);
      const result = await openssl([
        'verify',
        '-crl_check',
        '-CAfile',
        files.root,
        '-untrusted',
        files.ca,
        '-CRLfile',
        files.crl,
        leaf,
      ]);
      expect(result.code).not.toBe(0);
      expect(result.output).toContain('certificate revoked');
    });

    test('accepts the good leaf', async () => {
      const leaf = dir.write('good.pem', good.pem);
      const result = await openssl([
        'verify',
        '-crl_check',
        '-CAfile',
        files.root,
        '-untrusted',
        files.ca,
        '-CRLfile',
        files.crl,
        leaf,
      ]);
      expect(result.output).toContain(': OK');
      expect(result.code).toBe(0);
    });
  });
});
