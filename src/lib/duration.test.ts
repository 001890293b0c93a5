import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { formatDuration, MAX_DURATION_SECONDS, parseDuration, parseDurationMs } from './duration.ts';

describe('fractional seconds', () => {
  test.each([
    ['PT0.1S', 100],
    ['PT0,25S', 250],
    ['PT1.5S', 1_500],
    ['PT2S', 2_000],
    ['PT1M0.001S', 60_001],
  ])('with fractionalSeconds, reads %s as %i ms', (text, ms) => {
    expect(parseDurationMs(text)).toMatchObject({ ok: true, ms });
  });

  test.each([
    ['a fraction of a second by default', 'PT0.1S', 'fraction', false],
    ['a fraction of an hour even when seconds may have one', 'PT1.5H', 'fraction', true],
    ['a fraction finer than milliseconds', 'PT0.0001S', 'milliseconds', true],
  ])('refuses %s', (_name, text, reason, fractionalSeconds) => {
    const result = parseDuration(text, { fractionalSeconds });
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.reason).toContain(reason);
  });
});

describe('parseDuration', () => {
  test.each([
    ['P90D', 90 * 86_400],
    ['PT1H', 3_600],
    ['PT5M', 300],
    ['PT30S', 30],
    ['PT0S', 0],
    ['P0D', 0],
    ['P1DT12H', 129_600],
    ['P1DT2H3M4S', 86_400 + 7_200 + 180 + 4],
    ['PT90M', 5_400],
    ['P2W', 14 * 86_400],
    ['P397D', 397 * 86_400],
    ['P36500D', MAX_DURATION_SECONDS],
  ])('reads %s as %i seconds', (text, seconds) => {
    expect(parseDuration(text)).toEqual({ ok: true, seconds });
  });

  test.each([
    ['an empty string', '', 'must not be empty'],
    ['a bare P', 'P', 'no components'],
    ['a T with nothing after it', 'P1DT', 'no hours, minutes or seconds'],
    ['years', 'P1Y', 'years or months'],
    ['months', 'P3M', 'years or months'],
    ['years and days', 'P1Y2D', 'years or months'],
    ['a fraction', 'PT1.5H', 'fraction'],
    ['a comma fraction', 'PT1,5H', 'fraction'],
    ['a negative sign', '-P1D', 'must start with P'],
    ['a sign after P', 'P-1D', 'sign'],
    ['lower-case designators', 'p90d', 'lower-case'],
    ['a lower-case unit', 'P90d', 'lower-case'],
    ['white space', 'P 90D', 'white space'],
    ['weeks mixed with days', 'P1W2D', 'combines weeks'],
    ['components out of order', 'PT1M1H', 'order'],
    ['hours without T', 'P1H', 'order'],
    ['a plain number', '90', 'must start with P'],
    ['a Go-style duration', '24h', 'must start with P'],
    ['a duration over the maximum', 'P36501D', 'maximum'],
    ['an absurdly long number', `P${'9'.repeat(40)}D`, 'maximum'],
  ])('refuses %s with its reason', (_name, text, reason) => {
    const result = parseDuration(text);
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.reason).toContain(reason);
  });

  test('refuses a value that is not a string instead of throwing', () => {
    expect(parseDuration(90 as unknown as string).ok).toBe(false);
  });
});

describe('formatDuration', () => {
  test.each([
    [0, 'PT0S'],
    [30, 'PT30S'],
    [3_600, 'PT1H'],
    [90 * 86_400, 'P90D'],
    [86_400 + 7_200 + 180 + 4, 'P1DT2H3M4S'],
    [5_400, 'PT1H30M'],
  ])('writes %i seconds as %s', (seconds, text) => {
    expect(formatDuration(seconds)).toBe(text);
  });

  test('throws on a negative or fractional number of seconds', () => {
    expect(() => formatDuration(-1)).toThrow(RangeError);
    expect(() => formatDuration(1.5)).toThrow(RangeError);
  });

  test('parsing what it writes gives back the same number of seconds', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: MAX_DURATION_SECONDS }), (seconds) => {
        expect(parseDuration(formatDuration(seconds))).toEqual({ ok: true, seconds });
      }),
    );
  });
});
