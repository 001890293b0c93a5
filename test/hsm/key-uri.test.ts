import { describe, expect, test } from 'vitest';
import { formatKeyUri, parseKeyUri } from '../../src/hsm/key-uri.ts';
import { HsmError } from '../../src/hsm/types.ts';

describe('key URIs', () => {
  test.each([
    [
      'a label',
      'hsm:partition=issuing;label=intermediate-2026',
      { partition: 'issuing', label: 'intermediate-2026' },
    ],
    ['an id', 'hsm:partition=root;id=0a1b2c', { partition: 'root', id: '0a1b2c' }],
    ['a label and an id', 'hsm:partition=p;label=a.b_c;id=ff', { partition: 'p', label: 'a.b_c', id: 'ff' }],
    ['attributes in another order', 'hsm:label=k;partition=p', { partition: 'p', label: 'k' }],
  ])('parses a URI with %s', (_name, uri, expected) => {
    expect(parseKeyUri(uri)).toEqual(expected);
  });

  test.each([
    ['another scheme', 'pkcs11:token=issuing;object=k'],
    ['no partition', 'hsm:label=k'],
    ['no label or id', 'hsm:partition=p'],
    ['an empty value', 'hsm:partition=p;label='],
    ['a repeated attribute', 'hsm:partition=p;label=a;label=b'],
    ['an unknown attribute', 'hsm:partition=p;label=a;slot=1'],
    ['an attribute without a value', 'hsm:partition=p;label'],
    ['percent-encoding', 'hsm:partition=p;label=a%20b'],
    ['an uppercase id', 'hsm:partition=p;id=0A'],
    ['an odd-length id', 'hsm:partition=p;id=abc'],
    ['an uppercase partition name', 'hsm:partition=Issuing;label=k'],
    ['a trailing separator', 'hsm:partition=p;label=k;'],
    ['a label of 65 characters', `hsm:partition=p;label=${'a'.repeat(65)}`],
  ])('refuses a URI with %s (CKR_ARGUMENTS_BAD)', (_name, uri) => {
    expect(() => parseKeyUri(uri)).toThrow(HsmError);
    try {
      parseKeyUri(uri);
    } catch (error) {
      expect((error as HsmError).code).toBe('hsm.arguments_bad');
    }
  });

  test('formats the URI that parses back to the same key', () => {
    const uri = formatKeyUri('issuing', 'intermediate-2026');
    expect(uri).toBe('hsm:partition=issuing;label=intermediate-2026');
    expect(parseKeyUri(uri)).toEqual({ partition: 'issuing', label: 'intermediate-2026' });
  });
});
