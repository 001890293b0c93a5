import { describe, expect, test } from 'vitest';
import {
  DerError,
  decodeOid,
  decodeTime,
  integerFromUnsigned,
  oid,
  readDer,
  setOf,
  time,
  utf8String,
} from '../../src/x509/der.ts';

const bytes = (hex: string): Uint8Array => Uint8Array.from(Buffer.from(hex.replace(/\s/g, ''), 'hex'));

function reason(hex: string, maxDepth?: number): string {
  try {
    readDer(bytes(hex), maxDepth === undefined ? {} : { maxDepth });
  } catch (error) {
    expect(error).toBeInstanceOf(DerError);
    return (error as DerError).reason;
  }
  return 'accepted';
}

describe('the strict DER reader', () => {
  test.each([
    ['an indefinite length', '3080 020100 0000', 'non_der'],
    ['a long-form length for a short value', '3081 03 020100', 'non_der'],
    ['a length with a leading zero octet', '3082 0003 020100', 'non_der'],
    ['BOOLEAN TRUE as 0x01', '3003 010101', 'non_der'],
    ['an INTEGER with a redundant leading zero', '3004 02020001', 'non_der'],
    ['an INTEGER with a redundant leading 0xFF', '3004 0202ff80', 'non_der'],
    ['a constructed OCTET STRING', '2403 040100', 'non_der'],
    ['BIT STRING padding bits set', '030203ff', 'non_der'],
    ['an unsorted SET OF', '3106 020102 020101', 'non_der'],
    ['a UTCTime without seconds', '170b 32363031303130303030 5a', 'non_der'],
    ['a GeneralizedTime with fractional seconds', '1811 32303530303130313030303030302e315a', 'non_der'],
    ['an OID arc with a leading 0x80', '0603 2a8001', 'non_der'],
    ['a truncated value', '3005 020100', 'malformed'],
    ['a truncated length', '3082 01', 'malformed'],
    ['an empty INTEGER', '0200', 'malformed'],
    ['a BIT STRING claiming 8 unused bits', '030208ff', 'malformed'],
    ['NULL with content', '050100', 'malformed'],
    ['a PrintableString with "@"', '130140', 'malformed'],
    ['a UTF8String that is not UTF-8', '0c01ff', 'malformed'],
    ['a high tag number', '1f2200', 'malformed'],
    ['a primitive SEQUENCE', '1000', 'malformed'],
    ['a byte after the value', '3000 00', 'trailing_data'],
    ['nesting deeper than allowed', '3006 3004 3002 3000', 'too_deep'],
  ])('%s is refused as %s', (_name, hex, expected) => {
    expect(reason(hex, 3)).toBe(expected);
  });

  test.each([
    ['an empty SEQUENCE', '3000'],
    ['a sorted SET OF with equal elements', '3106 020101 020101'],
    ['a 128-octet value with a two-octet length', `0481 80 ${'00'.repeat(128)}`],
    ['a negative INTEGER in minimal form', '0201 80'],
    ['a UTCTime', '170d 3236303130313030303030305a'],
  ])('%s is accepted', (_name, hex) => {
    expect(reason(hex)).toBe('accepted');
  });

  test('times up to 2049 are UTCTime and from 2050 GeneralizedTime, in whole seconds (RFC 5280 §4.1.2.5)', () => {
    expect(Buffer.from(time(new Date('2049-12-31T23:59:59.999Z'))).toString('latin1')).toContain(
      '491231235959Z',
    );
    expect(time(new Date('2049-12-31T23:59:59Z'))[0]).toBe(0x17);
    expect(time(new Date('2050-01-01T00:00:00Z'))[0]).toBe(0x18);
    expect(decodeTime(readDer(time(new Date('2050-01-01T00:00:00Z')))).toISOString()).toBe(
      '2050-01-01T00:00:00.000Z',
    );
    expect(decodeTime(readDer(time(new Date('1999-02-03T04:05:06Z')))).toISOString()).toBe(
      '1999-02-03T04:05:06.000Z',
    );
  });

  test('an impossible calendar date in a Time is refused', () => {
    expect(() => decodeTime(readDer(bytes('170d 3236303233303030303030305a')))).toThrow(DerError);
  });

  test('OIDs and unsigned INTEGERs round-trip through writer and reader', () => {
    for (const dotted of ['1.2.840.10045.4.3.2', '2.5.29.17', '2.999.1', '0.9.2342.19200300.100.1.25']) {
      expect(decodeOid(readDer(oid(dotted)))).toBe(dotted);
    }
    expect(Buffer.from(integerFromUnsigned(bytes('80'))).toString('hex')).toBe('02020080');
    expect(Buffer.from(integerFromUnsigned(bytes('000001'))).toString('hex')).toBe('020101');
  });

  test('setOf sorts its components so the reader accepts them', () => {
    expect(
      reason(Buffer.from(setOf([utf8String('b'), utf8String('a'), utf8String('ab')])).toString('hex')),
    ).toBe('accepted');
  });
});
