import { domainToASCII } from 'node:url';
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { checkDnsName } from '../../src/policy/dns.ts';
import { checkEmail } from '../../src/policy/email.ts';
import { decodePunycode, encodePunycode } from '../../src/policy/punycode.ts';
import { checkUri, matchPath, parsePathPattern } from '../../src/policy/uri.ts';

describe('punycode (RFC 3492)', () => {
  // RFC 3492 §7.1 sample strings, lower-cased as A-labels are compared (the samples' mixed-case
  // annotations would otherwise carry upper case into the decoded text).
  test.each([
    [
      'Arabic (Egyptian)',
      'egbpdaj6bu4bxfgehfvwxn',
      '\u0644\u064A\u0647\u0645\u0627\u0628\u062A\u0643\u0644\u0645\u0648\u0634\u0639\u0631\u0628\u064A\u061F',
    ],
    [
      'Chinese (simplified)',
      'ihqwcrb4cv8a8dqg056pqjye',
      '\u4ED6\u4EEC\u4E3A\u4EC0\u4E48\u4E0D\u8BF4\u4E2D\u6587',
    ],
    ['Czech', 'proprostnemluvesky-uyb24dma41a', 'pro\u010Dprost\u011Bnemluv\u00ED\u010Desky'],
    ['Japanese', '3b-ww4c5e180e575a65lsy2b', '3\u5E74b\u7D44\u91D1\u516B\u5148\u751F'],
    [
      'Russian',
      'b1abfaaepdrnnbgefbadotcwatmq2g4l',
      '\u043F\u043E\u0447\u0435\u043C\u0443\u0436\u0435\u043E\u043D\u0438\u043D\u0435\u0433\u043E\u0432\u043E\u0440\u044F\u0442\u043F\u043E\u0440\u0443\u0441\u0441\u043A\u0438',
    ],
    ['German', 'bcher-kva', 'b\u00FCcher'],
  ])('decodes and encodes the %s sample', (_name, encoded, decoded) => {
    expect(decodePunycode(encoded)).toEqual({ ok: true, value: decoded });
    expect(encodePunycode(decoded)).toBe(encoded);
  });

  test.each([
    ['a digit outside the alphabet', 'abc-!', 'not a punycode digit'],
    ['a number cut short', 'bcher-kv', 'middle of a number'],
    ['an overflowing number', 'bcher-99999999999', 'overflow'],
  ])('refuses %s', (_name, text, reason) => {
    const result = decodePunycode(text);
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.reason).toContain(reason);
  });

  test('never throws, whatever it is given', () => {
    fc.assert(
      fc.property(fc.string({ unit: fc.constantFrom(...'abcxyz0189-') }), (text) => {
        const result = decodePunycode(text);
        if (result.ok && [...result.value].some((c) => c.codePointAt(0)! >= 0x80)) {
          // Whatever decodes encodes to something that decodes the same.
          expect(decodePunycode(encodePunycode(result.value))).toEqual(result);
        }
      }),
    );
  });

  test('encodes Unicode labels as node:url does', () => {
    const letters = fc.constantFrom(...'abcdefäöüßéèñçøåπλжщ中文日本한국'.split(''));
    fc.assert(
      fc.property(fc.array(letters, { minLength: 1, maxLength: 12 }), (chars) => {
        const label = chars.join('');
        if (chars.every((c) => c.charCodeAt(0) < 0x80)) return;
        expect(`xn--${encodePunycode(label)}`).toBe(domainToASCII(label));
      }),
    );
  });
});

describe('DNS names', () => {
  test.each([
    ['a plain name', 'example.com', 'example.com'],
    ['upper case, which is lowered', 'EXAMPLE.com', 'example.com'],
    ['a wildcard', '*.example.com', '*.example.com'],
    ['an A-label', 'xn--bcher-kva.example', 'xn--bcher-kva.example'],
    ['an A-label in upper case', 'XN--BCHER-KVA.example', 'xn--bcher-kva.example'],
    ['a Greek A-label', 'xn--nxasmm1c.example', 'xn--nxasmm1c.example'],
    ['a single-script Cyrillic A-label', 'xn--80ak6aa92e.com', 'xn--80ak6aa92e.com'],
    ['a 63-character label', `${'a'.repeat(63)}.example.com`, `${'a'.repeat(63)}.example.com`],
    ['digits and hyphens', '1-2.example.com', '1-2.example.com'],
  ])('accepts %s', (_name, input, name) => {
    const result = checkDnsName(input);
    expect(result.ok && result.name).toBe(name);
  });

  test.each([
    ['*.com', 'policy.wildcard_not_allowed', 'top-level domain'],
    ['a*.example.com', 'policy.dns_name_invalid', 'whole leftmost label'],
    ['*a.example.com', 'policy.dns_name_invalid', 'whole leftmost label'],
    ['*.*.example.com', 'policy.dns_name_invalid', 'only the leftmost label'],
    ['www.*.example.com', 'policy.dns_name_invalid', 'only the leftmost label'],
    ['example.com.', 'policy.dns_name_invalid', 'ends with a dot'],
    [
      'bücher.example',
      'policy.dns_name_invalid',
      "raw Unicode; internationalised names must be written as IDNA A-labels (RFC 5890 §2.3.2.1), here 'xn--bcher-kva.example'",
    ],
    ['xn--pypal-4ve.com', 'policy.dns_name_invalid', 'mixes Latin and Cyrillic'], // pаypal with a Cyrillic а
    ['xn--abc.com', 'policy.dns_name_invalid', 'malformed A-label'],
    ['xn--.com', 'policy.dns_name_invalid', 'hyphen'],
    ['xn--bcher-kva9.example', 'policy.dns_name_invalid', 'malformed A-label'],
    ['xn--example-.com', 'policy.dns_name_invalid', 'starts or ends with a hyphen'],
    ['xn--example.com', 'policy.dns_name_invalid', 'malformed A-label'],
    ['xn--ls8h.com', 'policy.dns_name_invalid', 'U+1F4A9'], // an emoji is not a letter
    ['ab--cd.example.com', 'policy.dns_name_invalid', 'third and fourth positions'],
    ['192.0.2.1', 'policy.dns_name_invalid', 'is an IP address'],
    ['2001:db8::1', 'policy.dns_name_invalid', 'is an IP address'],
    ['1.2.3.4.5', 'policy.dns_name_invalid', 'all digits'],
    ['a_b.example.com', 'policy.dns_name_invalid', "contains '_'"],
    ['-a.example.com', 'policy.dns_name_invalid', 'hyphen'],
    ['a..example.com', 'policy.dns_name_invalid', 'empty label'],
    ['.example.com', 'policy.dns_name_invalid', 'empty label'],
    ['www.example.com\r\nevil', 'policy.dns_name_invalid', 'control characters'],
    ['www example.com', 'policy.dns_name_invalid', 'white space'],
    ['', 'policy.dns_name_invalid', 'empty'],
    [`${'a'.repeat(64)}.example.com`, 'policy.dns_name_invalid', 'limit is 63'],
    [`${'abcdefghi.'.repeat(26)}com`, 'policy.dns_name_invalid', 'limit is 253'],
  ])('refuses %j with %s', (input, code, reason) => {
    const result = checkDnsName(input);
    expect(result.ok).toBe(false);
    if (!result.ok) {
      expect(result.code).toBe(code);
      expect(result.reason).toContain(reason);
    }
  });

  test('never throws and accepts only lower-case LDH names, whatever it is given', () => {
    fc.assert(
      fc.property(
        fc.string({ unit: fc.constantFrom(...'aZ9-.*_:xn\u00e9\u0430\r '), maxLength: 40 }),
        (text) => {
          const result = checkDnsName(text);
          if (result.ok) expect(result.name).toMatch(/^(\*\.)?[a-z0-9-]+(\.[a-z0-9-]+)*$/);
        },
      ),
    );
  });
});

describe('email addresses', () => {
  test.each([
    ['alice@example.com', 'alice@example.com'],
    ['Alice.Smith+tag@EXAMPLE.com', 'Alice.Smith+tag@example.com'], // the local part keeps its case
    ["o'brien@example.com", "o'brien@example.com"],
  ])('accepts %s as %s', (input, address) => {
    const result = checkEmail(input);
    expect(result.ok && result.address).toBe(address);
  });

  test.each([
    ['a CR/LF', 'alice@example.com\r\nBcc: mallory@example.net', 'control characters'],
    ['a LF in the local part', 'ali\nce@example.com', 'control characters'],
    ['a quoted local part', '"alice smith"@example.com', 'white space'],
    ['a quoted local part without spaces', '"alice"@example.com', 'quoted local part'],
    ['no @', 'alice.example.com', 'no @'],
    ['two @', 'alice@bob@example.com', 'more than one @'],
    ['an empty local part', '@example.com', 'nothing before'],
    ['a dot at the end of the local part', 'alice.@example.com', 'dot-atom'],
    ['two dots in the local part', 'al..ice@example.com', 'dot-atom'],
    ['a raw Unicode local part', 'jörg@example.com', 'non-ASCII'],
    ['an address literal', 'alice@[192.0.2.1]', 'address literal'],
    ['a domain with a trailing dot', 'alice@example.com.', 'ends with a dot'],
    ['a wildcard domain', 'alice@*.example.com', 'wildcard'],
    ['an IP as the domain', 'alice@192.0.2.1', 'IP address'],
    ['an overlong local part', `${'a'.repeat(65)}@example.com`, '64 characters'],
  ])('refuses %s', (_name, input, reason) => {
    const result = checkEmail(input);
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.reason).toContain(reason);
  });
});

describe('URIs', () => {
  test.each([
    ['spiffe://example.org/ns/default/sa/web', 'spiffe://example.org/ns/default/sa/web'],
    ['HTTPS://Example.COM/users/Alice', 'https://example.com/users/Alice'], // the path keeps its case
    ['https://example.com:8443/x', 'https://example.com:8443/x'],
    ['https://example.com', 'https://example.com'],
    ['https://example.com/a%20b', 'https://example.com/a%20b'],
  ])('accepts %s as %s', (input, uri) => {
    const result = checkUri(input);
    expect(result.ok && result.uri).toBe(uri);
  });

  test.each([
    ['userinfo', 'https://alice@example.com/', 'userinfo'],
    ['userinfo with a password', 'https://alice:pw@example.com/', 'userinfo'],
    ['a fragment', 'spiffe://example.org/ns/a/sa/b#frag', 'fragment'],
    ['a query', 'https://example.com/?a=b', 'query'],
    ['spaces', 'https://example.com/a b', 'spaces'],
    ['a CR/LF', 'https://example.com/a\r\nb', 'control characters'],
    ['raw Unicode', 'https://example.com/ä', 'non-ASCII'],
    ['no scheme', '//example.com/a', 'absolute URI'],
    ['no authority', 'urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6', 'no authority'],
    ['an empty host', 'https:///a', 'no host'],
    ['an IP-literal host', 'https://[2001:db8::1]/', 'IP-literal'],
    ['an IPv4 host', 'https://192.0.2.1/', 'IP address'],
    ['a port of 0', 'https://example.com:0/', 'invalid port'],
    ['a port over 65535', 'https://example.com:65536/', 'invalid port'],
    ['a dot segment', 'https://example.com/a/../b', 'dot segment'],
    ['an empty segment', 'https://example.com/a//b', 'empty segment'],
    ['a trailing slash', 'https://example.com/a/', 'empty segment'],
    ['a percent-encoded unreserved character', 'https://example.com/%61', 'unreserved'],
    ['a lower-case percent-encoding', 'https://example.com/a%2fb', 'lower case'],
    ['a broken percent-encoding', 'https://example.com/a%zz', 'percent-encode'],
    ['a SPIFFE ID with an upper-case trust domain', 'spiffe://Example.org/ns/a', 'lower-case'],
    ['a SPIFFE ID with an upper-case scheme', 'SPIFFE://example.org/ns/a', 'lower case'],
    ['a SPIFFE ID with a port', 'spiffe://example.org:443/ns/a', 'no port'],
    ['a SPIFFE ID with a trailing slash', 'spiffe://example.org/ns/a/', 'trailing'],
    ['a SPIFFE ID with a percent-encoding', 'spiffe://example.org/ns/a%20b', 'SPIFFE ID path segments'],
    ['a SPIFFE ID with a dot segment', 'spiffe://example.org/ns/../sa/x', '. or ..'],
  ])('refuses %s', (_name, input, reason) => {
    const result = checkUri(input);
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.reason).toContain(reason);
  });

  test.each([
    ['/ns/*/sa/*', '/ns/default/sa/web', true],
    ['/ns/*/sa/*', '/ns/default/sa/web/extra', false],
    ['/ns/*/sa/*', '/ns/default/sa', false],
    ['/ns/*/sa/*', '/ns/default/xx/web', false],
    ['/services/**', '/services/billing', true],
    ['/services/**', '/services/billing/eu', true],
    ['/services/**', '/services', false],
    ['/', '', true],
    ['/', '/x', false],
  ])('%s matches %s: %s', (patternText, path, expected) => {
    const pattern = parsePathPattern(patternText);
    const uri = checkUri(`https://example.com${path}`);
    expect(pattern.ok && uri.ok && matchPath(pattern.pattern, uri.segments)).toBe(expected);
  });

  test.each([
    ['no leading slash', 'ns/*', "starts with '/'"],
    ['a partial wildcard', '/ns/a*', 'whole segment'],
    ['** before the end', '/**/x', 'last segment'],
    ['an empty segment', '/ns//x', 'empty segment'],
  ])('refuses a path pattern with %s', (_name, text, reason) => {
    const result = parsePathPattern(text);
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.reason).toContain(reason);
  });
});
