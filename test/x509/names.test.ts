import { describe, expect, it, test } from 'vitest';
import { readDer } from '../../src/x509/der.ts';
import {
  dnsMatches,
  emailMatches,
  encodeNameConstraints,
  nameConstraintViolations,
  parseCidr,
  parseNameConstraints,
  uriHost,
  uriMatches,
} from '../../src/x509/name-constraints.ts';
import { canonicalIp, decodeName, encodeName, formatIp, formatName, parseIp } from '../../src/x509/names.ts';
import { decodePem, PemError, toPem } from '../../src/x509/pem.ts';

describe('IP address text', () => {
  test.each([
    ['192.0.2.1', '192.0.2.1'],
    ['2001:DB8:0:0:0:0:0:1', '2001:db8::1'],
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'],
    ['2001:0db8::0001', '2001:db8::1'],
    ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1'],
    ['::', '::'],
    ['::1', '::1'],
    ['::ffff:192.0.2.1', '::ffff:192.0.2.1'],
    ['2001:db8::192.0.2.1', '2001:db8::c000:201'],
  ])('%s is written canonically as %s (RFC 5952)', (input, expected) => {
    expect(canonicalIp(input)).toBe(expected);
  });

  test.each([
    '192.0.2',
    '192.0.2.256',
    '192.0.2.01',
    '2001:db8::1::1',
    '1:2:3:4:5:6:7:8:9',
    'example.com',
    '::g',
  ])('%s is not an IP address', (input) => {
    expect(parseIp(input)).toBeUndefined();
  });

  test('formatIp refuses lengths other than 4 and 16', () => {
    expect(() => formatIp(new Uint8Array(5))).toThrow(RangeError);
  });
});

describe('subject names', () => {
  test('encodeName writes one attribute per RDN with the RFC 5280 string types, and decodeName reads it back', () => {
    const der = encodeName([
      { type: 'C', value: 'US' },
      { type: 'O', value: 'Exämple' },
      { type: 'emailAddress', value: 'ops@example.com' },
      { type: 'CN', value: 'www.example.com' },
    ]);
    const rdns = decodeName(readDer(der));
    expect(rdns.map((rdn) => rdn.map((attribute) => [attribute.type, attribute.value]))).toEqual([
      [['C', 'US']],
      [['O', 'Exämple']],
      [['emailAddress', 'ops@example.com']],
      [['CN', 'www.example.com']],
    ]);
    const tags = readDer(der).children.map((rdn) => rdn.children[0]!.children[1]!.tag);
    expect(tags).toEqual([0x13, 0x0c, 0x16, 0x0c]);
  });
});

describe('name constraints (RFC 5280 §4.2.1.10)', () => {
  test.each([
    ['example.com', 'example.com', true],
    ['www.example.com', 'example.com', true],
    ['a.b.example.com', 'example.com', true],
    ['notexample.com', 'example.com', false],
    ['example.com', '.example.com', false],
    ['www.example.com', '.example.com', true],
    ['WWW.Example.COM', 'example.com', true],
    ['anything.example', '', true],
  ])('dNSName %s within %s: %s', (name, constraint, expected) => {
    expect(dnsMatches(name, constraint)).toBe(expected);
  });

  test.each([
    ['ops@example.com', 'ops@example.com', true],
    ['Ops@example.com', 'ops@example.com', false],
    ['ops@example.com', 'example.com', true],
    ['ops@mail.example.com', 'example.com', false],
    ['ops@mail.example.com', '.example.com', true],
    ['ops@example.com', '.example.com', false],
  ])('rfc822Name %s within %s: %s', (email, constraint, expected) => {
    expect(emailMatches(email, constraint)).toBe(expected);
  });

  test.each([
    ['spiffe://example.org/ns/web', 'example.org', true],
    ['https://user@www.example.org:8443/x', '.example.org', true],
    ['https://www.example.org/', 'example.org', false],
    ['urn:uuid:1234', 'example.org', false],
    ['https://[2001:db8::1]/', 'example.org', false],
  ])('URI %s within %s: %s', (uri, constraint, expected) => {
    expect(uriMatches(uri, constraint)).toBe(expected);
  });

  test('uriHost takes the host from the authority', () => {
    expect(uriHost('https://u:p@Host.Example.org:443/path')).toBe('host.example.org');
    expect(uriHost('mailto:a@example.com')).toBeUndefined();
  });

  test('parseCidr refuses host bits and bad prefixes', () => {
    expect(Buffer.from(parseCidr('192.0.2.0/24').mask).toString('hex')).toBe('ffffff00');
    expect(() => parseCidr('192.0.2.1/24')).toThrow(/host bits/);
    expect(() => parseCidr('192.0.2.0/33')).toThrow(RangeError);
    expect(() => parseCidr('2001:db8::/129')).toThrow(RangeError);
  });

  test('constraints written for a CA read back and judge names: permitted, excluded and wildcards', () => {
    const constraints = parseNameConstraints(
      encodeNameConstraints({
        permitted: [
          { type: 'dns', value: 'example.com' },
          { type: 'ip', value: '192.0.2.0/24' },
          { type: 'ip', value: '2001:db8::/32' },
          { type: 'email', value: 'example.com' },
          { type: 'uri', value: 'example.org' },
        ],
        excluded: [{ type: 'dns', value: 'secret.example.com' }],
      }),
    );
    const check = (type: 'dns' | 'ip' | 'email' | 'uri', value: string): string[] =>
      nameConstraintViolations(constraints, [{ type, value, source: 'subjectAltName' }]);
    expect(check('dns', 'www.example.com')).toEqual([]);
    expect(check('dns', 'www.example.net')).toEqual([
      expect.stringMatching(/outside every permitted dns subtree/),
    ]);
    expect(check('dns', 'a.secret.example.com')).toEqual([expect.stringMatching(/excluded subtree/)]);
    expect(check('dns', '*.example.com')).toEqual([expect.stringMatching(/excluded subtree/)]);
    expect(check('ip', '192.0.2.77')).toEqual([]);
    expect(check('ip', '198.51.100.1')).toHaveLength(1);
    expect(check('ip', '2001:db8:1::1')).toEqual([]);
    expect(check('ip', '2001:db9::1')).toHaveLength(1);
    expect(check('email', 'ops@example.com')).toEqual([]);
    expect(check('email', 'ops@example.net')).toHaveLength(1);
    expect(check('uri', 'spiffe://example.org/ns/a')).toEqual([]);
    expect(check('uri', 'spiffe://example.net/ns/a')).toHaveLength(1);
  });
});

describe('PEM', () => {
  test('toPem writes 64-character lines and decodePem reads exactly one block with an expected label', () => {
    const der = new Uint8Array(100).fill(7);
    const pem = toPem(der, 'X509 CRL');
    expect(pem.split('\n')[1]).toHaveLength(64);
    expect(decodePem(pem, 'X509 CRL').der).toEqual(der);
    expect(() => decodePem(pem, 'CERTIFICATE')).toThrow(PemError);
    expect(() => decodePem(`junk${pem}`, 'X509 CRL')).toThrow(PemError);
    expect(() => decodePem(pem.replace('Bw', 'B='), 'X509 CRL')).toThrow(PemError);
  });

  test('base64 with non-zero padding bits is not canonical and is refused', () => {
    expect(() => decodePem('-----BEGIN X-----\nAB==\n-----END X-----\n', 'X')).toThrow(/canonical/);
  });
});

describe('formatName (RFC 4514 text)', () => {
  const name = (...rdns: { oid: string; type?: string; value: string }[][]) =>
    rdns as Parameters<typeof formatName>[0];

  it('writes the least significant RDN first, multi-valued RDNs with +, unknown types as OIDs', () => {
    expect(
      formatName(
        name(
          [{ oid: '2.5.4.6', type: 'C', value: 'US' }],
          [{ oid: '2.5.4.10', type: 'O', value: 'Example Inc.' }],
          [
            { oid: '2.5.4.3', type: 'CN', value: 'Root' },
            { oid: '1.2.3.4', value: 'x' },
          ],
        ),
      ),
    ).toBe('CN=Root+1.2.3.4=x,O=Example Inc.,C=US');
  });

  it('escapes the characters RFC 4514 §2.4 names', () => {
    expect(formatName(name([{ oid: '2.5.4.3', type: 'CN', value: ' a,b+c"d\\e<f>g;h=i ' }]))).toBe(
      'CN=\\ a\\,b\\+c\\"d\\\\e\\<f\\>g\\;h\\=i\\ ',
    );
    expect(formatName(name([{ oid: '2.5.4.3', type: 'CN', value: '#hash' }]))).toBe('CN=\\#hash');
  });
});
