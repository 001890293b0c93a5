import { expect, test } from 'vitest';
import { optionSafe } from '../../src/acme/eab.ts';

test('EAB key ids and HMAC keys never start with "-", which ACME clients would read as an option', () => {
  // certbot --eab-kid -xw... failed with "expected one argument" in test/slow/acme-reference.test.ts.
  // Without the redraw, one text in 64 starts with '-': 4,000 draws would all but surely show one.
  const texts = Array.from({ length: 4000 }, (_, i) => optionSafe(i % 2 ? 12 : 32).toString('base64url'));
  expect(texts.filter((t) => t.startsWith('-'))).toEqual([]);
  expect(new Set(texts).size).toBe(texts.length);
  expect(texts.filter((t) => t.startsWith('_')).length).toBeGreaterThan(0);
});
