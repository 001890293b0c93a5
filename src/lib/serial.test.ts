import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import {
  formatSerialWithColons,
  generateSerial,
  InvalidSerialError,
  isCanonicalSerial,
  normalizeSerial,
  serialFromBytes,
  serialToBytes,
} from './serial.ts';

describe('normalizeSerial', () => {
  test.each([
    { name: 'canonical input is unchanged', input: '01a2ff', expected: '01a2ff' },
    { name: 'upper case becomes lower case', input: '01A2FF', expected: '01a2ff' },
    { name: 'colons between octets are removed', input: '01:a2:ff', expected: '01a2ff' },
    { name: 'a single-digit first group with colons is accepted', input: '1:a2:ff', expected: '01a2ff' },
    { name: 'a leading 00 that DER needs is added', input: 'a1b2', expected: '00a1b2' },
    { name: 'a leading 00 that DER needs is kept', input: '00:A1:B2', expected: '00a1b2' },
    { name: 'a superfluous leading 00 is dropped', input: '007f', expected: '7f' },
    { name: 'many superfluous leading zeros are dropped', input: '0000000001', expected: '01' },
    { name: 'an odd number of digits is padded', input: 'abc', expected: '0abc' },
    { name: 'surrounding white space is ignored', input: '  7f\n', expected: '7f' },
    {
      name: 'a 20-octet serial with its high bit clear is accepted',
      input: '7f'.repeat(20),
      expected: '7f'.repeat(20),
    },
    {
      name: 'a 19-octet serial with its high bit set becomes 20 octets',
      input: 'ff'.repeat(19),
      expected: `00${'ff'.repeat(19)}`,
    },
  ])('$name', ({ input, expected }) => {
    expect(normalizeSerial(input)).toBe(expected);
  });

  test.each([
    { name: 'empty input', input: '', reason: 'empty' },
    { name: 'only white space', input: '   ', reason: 'empty' },
    { name: 'zero', input: '00', reason: 'not_positive' },
    { name: 'zero with colons', input: '00:00', reason: 'not_positive' },
    { name: 'a non-hex digit', input: '01g2', reason: 'not_hex' },
    { name: 'a 0x prefix', input: '0x01', reason: 'not_hex' },
    { name: 'a minus sign', input: '-01', reason: 'not_hex' },
    { name: 'a trailing colon', input: '01:', reason: 'not_hex' },
    { name: 'doubled colons', input: '01::02', reason: 'not_hex' },
    { name: 'a three-digit group', input: '01:a2f', reason: 'not_hex' },
    { name: 'an inner space', input: '01 02', reason: 'not_hex' },
    { name: '21 octets', input: '01'.repeat(21), reason: 'too_long' },
    { name: '20 octets with the high bit set (21 with the 00)', input: 'ff'.repeat(20), reason: 'too_long' },
    { name: 'very long input', input: '0'.repeat(100_000), reason: 'too_long' },
  ])('refuses $name with reason $reason', ({ input, reason }) => {
    const error = (() => {
      try {
        normalizeSerial(input);
      } catch (e) {
        return e;
      }
    })();
    expect(error).toBeInstanceOf(InvalidSerialError);
    expect((error as InvalidSerialError).reason).toBe(reason);
    expect((error as InvalidSerialError).code).toBe('request.serial_invalid');
  });

  test('is idempotent and insensitive to case and colons for any positive serial', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 1, maxLength: 19 }), (bytes) => {
        fc.pre(bytes.some((b) => b !== 0));
        const hex = Buffer.from(bytes).toString('hex');
        const canonical = normalizeSerial(hex);
        expect(normalizeSerial(canonical)).toBe(canonical);
        expect(normalizeSerial(hex.toUpperCase())).toBe(canonical);
        expect(normalizeSerial(formatSerialWithColons(canonical))).toBe(canonical);
        expect(isCanonicalSerial(canonical)).toBe(true);
        // The canonical form is the minimal positive DER INTEGER: same value as the input.
        expect(BigInt(`0x${canonical}`)).toBe(BigInt(`0x${hex}`));
        expect(canonical.startsWith('00') ? Number.parseInt(canonical.slice(2, 3), 16) >= 8 : true).toBe(
          true,
        );
      }),
    );
  });
});

describe('serial bytes', () => {
  test('serialToBytes gives the DER content octets including a needed leading zero', () => {
    expect([...serialToBytes('a1:b2')]).toEqual([0x00, 0xa1, 0xb2]);
  });

  test('serialFromBytes reads content octets back to the canonical form', () => {
    expect(serialFromBytes(Uint8Array.from([0x00, 0xa1, 0xb2]))).toBe('00a1b2');
    expect(serialFromBytes(Uint8Array.from([0x01]))).toBe('01');
  });

  test('serialFromBytes refuses a negative INTEGER', () => {
    expect(() => serialFromBytes(Uint8Array.from([0x80, 0x01]))).toThrow(InvalidSerialError);
  });

  test('formatSerialWithColons writes octets separated by colons', () => {
    expect(formatSerialWithColons('A1B2')).toBe('00:a1:b2');
  });

  test('isCanonicalSerial rejects forms that normalize differently', () => {
    expect(isCanonicalSerial('A1')).toBe(false);
    expect(isCanonicalSerial('a1')).toBe(false);
    expect(isCanonicalSerial('00a1')).toBe(true);
    expect(isCanonicalSerial('nope')).toBe(false);
  });
});

describe('generateSerial', () => {
  test('draws canonical, positive serials of at most 20 octets that do not repeat', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 2000; i++) {
      const serial = generateSerial();
      expect(isCanonicalSerial(serial)).toBe(true);
      expect(serial.length).toBeLessThanOrEqual(34);
      seen.add(serial);
    }
    expect(seen.size).toBe(2000);
  });

  test('uses both halves of the first octet, so it does not clear the high bit', () => {
    const serials = Array.from({ length: 200 }, () => generateSerial());
    expect(serials.some((s) => s.startsWith('00'))).toBe(true);
    expect(serials.some((s) => !s.startsWith('00'))).toBe(true);
  });

  test.each([7, 20, 1.5])('refuses %s random octets', (octets) => {
    expect(() => generateSerial(octets)).toThrow(RangeError);
  });

  test('stays within 20 octets at the largest size', () => {
    for (let i = 0; i < 200; i++) expect(serialToBytes(generateSerial(19)).length).toBeLessThanOrEqual(20);
  });
});
