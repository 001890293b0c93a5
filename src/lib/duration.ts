/**
 * ISO 8601 durations as Signet reads them in policies and API bodies ("P90D", "PT1H",
 * "P1DT12H", "P2W"). Strict on purpose: the result is a whole number of seconds, so the
 * designators whose length is not fixed (years, and months before the T) are refused
 * rather than guessed at, and so are fractions, signs, lower-case designators and spaces.
 *
 * Accepted grammar (ISO 8601-1:2019 §5.5.2.4, the subset with fixed-length units):
 *   P nW                         weeks, alone
 *   P [nD] [T [nH] [nM] [nS]]    at least one component; after T, at least one time component
 *
 * With `{ fractionalSeconds: true }` (short timers such as `crl.debounce`), the seconds may carry
 * a decimal fraction of up to three digits (milliseconds): PT0.1S, PT1.25S. ISO 8601 allows a
 * fraction on the lowest-order component only, with a full stop or a comma (§5.5.2.4, §3.2.6).
 */

/** The longest duration accepted: 36,500 days (about a century). */
export const MAX_DURATION_SECONDS = 36_500 * 86_400;

export type DurationResult = { ok: true; seconds: number } | { ok: false; reason: string };

const WEEK = 604_800;
const DAY = 86_400;
const HOUR = 3_600;
const MINUTE = 60;

// Each component is optional; the checks below reject the empty cases the regex lets through.
const PATTERN = /^P(?:(\d+)W|(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?)$/;
const FRACTIONAL_PATTERN = /^P(?:(\d+)W|(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:[.,]\d{1,3})?)S)?)?)$/;
const DIGITS_MAX = 12;

export interface DurationOptions {
  /** Accept a fraction of a second (at most milliseconds): the result may then be fractional. */
  fractionalSeconds?: boolean;
}

export function parseDuration(text: string, options: DurationOptions = {}): DurationResult {
  if (typeof text !== 'string') return { ok: false, reason: 'a duration must be a string such as P90D' };
  const match = (options.fractionalSeconds ? FRACTIONAL_PATTERN : PATTERN).exec(text);
  if (!match) return { ok: false, reason: explain(text) };
  const [, weeks, days, hours, minutes, seconds] = match;
  const hasT = text.includes('T');
  if (hasT && hours === undefined && minutes === undefined && seconds === undefined) {
    return { ok: false, reason: `'${text}' has a T but no hours, minutes or seconds after it` };
  }
  if (weeks === undefined && days === undefined && !hasT) {
    return { ok: false, reason: `'${text}' has no components; write for example P90D or PT1H` };
  }
  const parts: [string | undefined, number][] = [
    [weeks, WEEK],
    [days, DAY],
    [hours, HOUR],
    [minutes, MINUTE],
    [seconds, 1],
  ];
  let total = 0;
  for (const [digits, unit] of parts) {
    if (digits === undefined) continue;
    const whole = digits.split(/[.,]/)[0]!;
    if (whole.length > DIGITS_MAX)
      return { ok: false, reason: `'${text}' is longer than the maximum duration` };
    // Milliseconds are counted as integers so that PT0.1S is exactly 0.1, not 0.1000000001.
    total += unit === 1 ? Math.round(Number(digits.replace(',', '.')) * 1000) / 1000 : Number(digits) * unit;
  }
  if (total > MAX_DURATION_SECONDS) {
    return {
      ok: false,
      reason: `'${text}' is longer than the maximum duration P${MAX_DURATION_SECONDS / DAY}D`,
    };
  }
  return { ok: true, seconds: total };
}

/** Why a string that does not match the grammar was refused, as specifically as we can tell. */
function explain(text: string): string {
  if (text.length === 0) return 'a duration must not be empty; write for example P90D';
  if (/^[Pp]/.test(text) && /[a-z]/.test(text)) {
    return `'${text}' uses lower-case designators; write them in upper case (P90D)`;
  }
  if (!text.startsWith('P')) return `'${text}' is not an ISO 8601 duration: it must start with P (e.g. P90D)`;
  if (/[.,]\d{4,}S$/.test(text)) return `'${text}' has a fraction finer than milliseconds`;
  if (/[.,]/.test(text)) return `'${text}' has a fraction; use a smaller unit instead (PT90M, not PT1.5H)`;
  if (/[-+]/.test(text)) return `'${text}' has a sign; durations are positive`;
  if (/\s/.test(text)) return `'${text}' contains white space`;
  if (/^P(?:\d+Y|[^T]*\d+M)/.test(text)) {
    return `'${text}' uses years or months, which have no fixed length; write days instead (P365D, P30D)`;
  }
  if (/W/.test(text)) return `'${text}' combines weeks with other units; write days instead (P9D, not P1W2D)`;
  return `'${text}' is not an ISO 8601 duration; components go in the order D, then T, H, M, S (e.g. P1DT12H)`;
}

/** A duration in milliseconds, fractional seconds accepted (PT0.1S is 100). */
export function parseDurationMs(text: string): DurationResult & { ms?: number } {
  const result = parseDuration(text, { fractionalSeconds: true });
  return result.ok ? { ...result, ms: Math.round(result.seconds * 1000) } : result;
}

/** The canonical text of a whole number of seconds: P90D, PT1H, P1DT2H30M, PT0S. */
export function formatDuration(totalSeconds: number): string {
  if (!Number.isSafeInteger(totalSeconds) || totalSeconds < 0) {
    throw new RangeError(`cannot format ${totalSeconds} as a duration`);
  }
  if (totalSeconds === 0) return 'PT0S';
  const days = Math.floor(totalSeconds / DAY);
  let rest = totalSeconds % DAY;
  const hours = Math.floor(rest / HOUR);
  rest %= HOUR;
  const minutes = Math.floor(rest / MINUTE);
  const seconds = rest % MINUTE;
  let time = '';
  if (hours) time += `${hours}H`;
  if (minutes) time += `${minutes}M`;
  if (seconds) time += `${seconds}S`;
  return `P${days ? `${days}D` : ''}${time ? `T${time}` : ''}`;
}
