import { describe, expect, it } from 'vitest';
import { fromBase64, fromBase64Url } from '../../../src/hsm/custody/codec.ts';

// A decoder ignores the unused low bits of the last base64 character, so "DA==" and "DC==" decode
// to the same byte: an edited signature in audit.head or a sealed object would pass unnoticed.
describe('the partition folder reads base64 in its canonical form only (RFC 4648 §3.5)', () => {
  it.each([
    ['padding bits set before ==', 'DC=='],
    ['padding bits set before =', 'AAC='],
  ])('refuses base64 with %s', (_name, text) => {
    expect(() => fromBase64(text, 'sig')).toThrow(/sig is not canonical base64/);
  });

  it('reads canonical base64 and base64url', () => {
    expect(fromBase64('DA==', 'sig')).toEqual(Buffer.from([0x0c]));
    expect(fromBase64Url('DA', 'sig')).toEqual(Buffer.from([0x0c]));
  });

  it('refuses base64url whose last character carries unused bits', () => {
    expect(() => fromBase64Url('DC', 'sig')).toThrow(/sig is not canonical base64url/);
  });
});
