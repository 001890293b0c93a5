import { execFileSync } from 'node:child_process';
import { AsnConvert } from '@peculiar/asn1-schema';
import { Time } from '@peculiar/asn1-x509';
import { describe, expect, test } from 'vitest';
import { CRL_NUMBER_MAX, nextCrlNumber, timeDerivedCrlNumber } from '../../src/revocation/crl-number.ts';
import { parseRevocationReason, REVOCATION_REASONS, reasonCode } from '../../src/revocation/reasons.ts';
import { parseRevocationSerial, serialFromIntegerContent } from '../../src/revocation/serial.ts';
import {
  DerError,
  encodeLength,
  generalizedTime,
  integerFromBigInt,
  oid,
  readTlvAt,
  time,
} from '../../src/x509/der.ts';
import { hasTool } from '../helpers/tools.ts';

const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString('hex');

describe('DER pieces', () => {
  test.each([
    { length: 0, expected: '00' },
    { length: 127, expected: '7f' },
    { length: 128, expected: '8180' },
    { length: 255, expected: '81ff' },
    { length: 256, expected: '820100' },
    { length: 5_420_250, expected: '8352b4da' },
  ])('encodes the length $length as $expected', ({ length, expected }) => {
    expect(hex(encodeLength(length))).toBe(expected);
  });

  test.each([
    { value: 0n, expected: '020100' },
    { value: 127n, expected: '02017f' },
    { value: 128n, expected: '02020080' },
    { value: 1_772_366_400_000_000_000n, expected: '02081898b5d9b3d68000' },
  ])('encodes the INTEGER $value minimally', ({ value, expected }) => {
    expect(hex(integerFromBigInt(value))).toBe(expected);
  });

  test.each([
    { dotted: '1.3.6.1.5.5.7.48.1.1', expected: '06092b0601050507300101' },
    { dotted: '2.5.29.20', expected: '0603551d14' },
    { dotted: '1.2.840.113549.1.1.11', expected: '06092a864886f70d01010b' },
  ])('encodes the OID $dotted', ({ dotted, expected }) => {
    expect(hex(oid(dotted))).toBe(expected);
  });

  test.each([
    { date: '1950-01-01T00:00:00Z' },
    { date: '2026-03-01T12:00:00Z' },
    { date: '2049-12-31T23:59:59Z' },
    { date: '2050-01-01T00:00:00Z' },
  ])('writes Time $date as @peculiar/asn1-x509 does (UTCTime through 2049)', ({ date }) => {
    expect(hex(time(new Date(date)))).toBe(
      hex(new Uint8Array(AsnConvert.serialize(new Time(new Date(date))))),
    );
  });

  test('writes a date before 1950 as GeneralizedTime (a two-digit 49 would read as 2049)', () => {
    expect(hex(time(new Date('1949-12-31T23:59:59Z')))).toBe(
      hex(Buffer.from('180f31393439313233313233353935395a', 'hex')),
    );
  });

  test('refuses fractional seconds rather than rounding silently', () => {
    expect(() => generalizedTime(new Date('2026-03-01T12:00:00.5Z'))).toThrow(/whole seconds/);
  });

  test.each([
    { name: 'truncated', bytes: '3005020101' },
    { name: 'indefinite length', bytes: '3080' },
    { name: 'a non-minimal long length', bytes: '30810100' },
    { name: 'a length of five octets', bytes: '30850000000001' },
    { name: 'a multi-octet tag', bytes: '1f8101' },
  ])('refuses to read $name', ({ bytes }) => {
    expect(() => readTlvAt(Buffer.from(bytes, 'hex'))).toThrow(DerError);
  });
});

describe('CRL numbers', () => {
  const at = new Date('2026-03-01T12:00:00.123Z');

  test('come from the time in nanoseconds at millisecond precision', () => {
    expect(timeDerivedCrlNumber(at)).toBe(1_772_366_400_123_000_000n);
  });

  test.each([
    { name: 'no stored number', previous: undefined, expected: 1_772_366_400_123_000_000n },
    {
      name: 'an older stored number (a restored database)',
      previous: 1_700_000_000_000_000_000n,
      expected: 1_772_366_400_123_000_000n,
    },
    {
      name: 'a stored number from the same millisecond',
      previous: 1_772_366_400_123_000_000n,
      expected: 1_772_366_400_123_000_001n,
    },
    {
      name: 'a stored number ahead of the clock (a clock stepped back)',
      previous: 1_800_000_000_000_000_000n,
      expected: 1_800_000_000_000_000_001n,
    },
  ])('take the larger of stored + 1 and the time: $name', ({ previous, expected }) => {
    expect(nextCrlNumber({ now: at, previous })).toBe(expected);
  });

  test('stop at 20 octets', () => {
    expect(() => nextCrlNumber({ now: at, previous: CRL_NUMBER_MAX })).toThrow(/20 octets/);
    expect(integerFromBigInt(CRL_NUMBER_MAX).byteLength).toBe(22);
  });
});

describe('revocation reasons', () => {
  test.each(REVOCATION_REASONS.map((reason) => ({ reason })))('parses $reason as written', ({ reason }) => {
    expect(parseRevocationReason(reason)).toBe(reason);
  });

  test('uses the RFC 5280 codes', () => {
    expect(REVOCATION_REASONS.map(reasonCode)).toEqual([0, 1, 2, 3, 4, 5, 9, 10]);
  });
});

describe('serials', () => {
  test.each([
    { input: '0a', expected: '0a' },
    { input: 'A', expected: '0a' },
    { input: '00:C0:FF:EE', expected: '00c0ffee' },
    { input: 'c0ffee', expected: '00c0ffee' },
    { input: '0000c0ffee', expected: '00c0ffee' },
    { input: '00007f', expected: '7f' },
    { input: '7f'.repeat(20), expected: '7f'.repeat(20) },
  ])('normalizes $input to $expected', ({ input, expected }) => {
    expect(parseRevocationSerial(input)).toBe(expected);
  });

  test.each([
    { input: '', message: /empty/ },
    { input: '0x12', message: /hexadecimal/ },
    { input: '00', message: /positive/ },
    { input: '80'.repeat(20), message: /20 octets/ },
    { input: '01'.repeat(21), message: /20 octets/ },
    { input: 42, message: /string/ },
  ])('refuses $input', ({ input, message }) => {
    expect(() => parseRevocationSerial(input)).toThrow(
      expect.objectContaining({ code: 'revocation.serial_invalid', message: expect.stringMatching(message) }),
    );
  });

  test.each([
    { content: '0a', expected: '0a' },
    { content: '00c0ffee', expected: '00c0ffee' },
    { content: '00000a', expected: '0a' },
    { content: 'c0ffee', expected: undefined },
    { content: '00', expected: undefined },
    { content: '', expected: undefined },
    { content: '01'.repeat(21), expected: undefined },
  ])('reads the INTEGER content $content as $expected', ({ content, expected }) => {
    expect(serialFromIntegerContent(Buffer.from(content, 'hex'))).toBe(expected);
  });

  test.runIf(hasTool('openssl', ['version']))(
    'agrees with openssl on how a serial with the high bit set is printed',
    () => {
      const text = execFileSync('openssl', ['asn1parse', '-genstr', 'INTEGER:0xC0FFEE'], {
        encoding: 'utf8',
      });
      expect(text).toContain('INTEGER           :C0FFEE');
      expect(parseRevocationSerial('C0FFEE')).toBe('00c0ffee');
    },
  );
});
