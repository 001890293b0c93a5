/**
 * Punycode (RFC 3492), the encoding behind IDNA A-labels ("xn--" + punycode). Written out
 * here rather than borrowed: Node's built-in `punycode` module is deprecated, and
 * `url.domainToUnicode` maps and repairs instead of telling a malformed label apart.
 * Decoding is strict: any overflow, a non-basic code point before the delimiter or a digit
 * outside the alphabet fails with a reason.
 */

const BASE = 36;
const T_MIN = 1;
const T_MAX = 26;
const SKEW = 38;
const DAMP = 700;
const INITIAL_BIAS = 72;
const INITIAL_N = 0x80;
const MAX_INT = 0x7fffffff;

export type PunycodeResult = { ok: true; value: string } | { ok: false; reason: string };

// RFC 3492 §6.1.
function adapt(delta: number, numPoints: number, firstTime: boolean): number {
  let d = firstTime ? Math.floor(delta / DAMP) : delta >> 1;
  d += Math.floor(d / numPoints);
  let k = 0;
  while (d > ((BASE - T_MIN) * T_MAX) >> 1) {
    d = Math.floor(d / (BASE - T_MIN));
    k += BASE;
  }
  return k + Math.floor(((BASE - T_MIN + 1) * d) / (d + SKEW));
}

function digitValue(code: number): number {
  if (code >= 0x30 && code <= 0x39) return code - 22; // '0'..'9' -> 26..35
  if (code >= 0x41 && code <= 0x5a) return code - 0x41; // 'A'..'Z'
  if (code >= 0x61 && code <= 0x7a) return code - 0x61; // 'a'..'z'
  return BASE;
}

function digitChar(d: number): string {
  // 0..25 -> 'a'..'z', 26..35 -> '0'..'9' (lower case, as IDNA A-labels are compared).
  return String.fromCharCode(d < 26 ? d + 0x61 : d + 22);
}

/** RFC 3492 §6.2: the Unicode string a punycode string stands for. */
export function decodePunycode(input: string): PunycodeResult {
  const output: number[] = [];
  const delimiter = input.lastIndexOf('-');
  const basicEnd = Math.max(0, delimiter);
  for (let j = 0; j < basicEnd; j++) {
    const code = input.charCodeAt(j);
    if (code >= 0x80) return { ok: false, reason: 'a non-ASCII character precedes the delimiter' };
    output.push(code);
  }
  let n = INITIAL_N;
  let i = 0;
  let bias = INITIAL_BIAS;
  for (let index = delimiter >= 0 ? delimiter + 1 : 0; index < input.length; ) {
    const oldi = i;
    let w = 1;
    for (let k = BASE; ; k += BASE) {
      if (index >= input.length) return { ok: false, reason: 'the encoding ends in the middle of a number' };
      const digit = digitValue(input.charCodeAt(index++));
      if (digit >= BASE) return { ok: false, reason: `'${input[index - 1]}' is not a punycode digit` };
      if (digit > Math.floor((MAX_INT - i) / w)) return { ok: false, reason: 'a number overflows' };
      i += digit * w;
      const t = k <= bias ? T_MIN : k >= bias + T_MAX ? T_MAX : k - bias;
      if (digit < t) break;
      if (w > Math.floor(MAX_INT / (BASE - t))) return { ok: false, reason: 'a number overflows' };
      w *= BASE - t;
    }
    const length = output.length + 1;
    bias = adapt(i - oldi, length, oldi === 0);
    if (Math.floor(i / length) > MAX_INT - n) return { ok: false, reason: 'a code point overflows' };
    n += Math.floor(i / length);
    i %= length;
    if (n > 0x10ffff || (n >= 0xd800 && n <= 0xdfff)) {
      return { ok: false, reason: 'it decodes to a code point that is not a Unicode scalar value' };
    }
    output.splice(i, 0, n);
    i++;
  }
  return { ok: true, value: String.fromCodePoint(...output) };
}

/** RFC 3492 §6.3: the punycode string for a Unicode string. */
export function encodePunycode(input: string): string {
  const codePoints = Array.from(input, (c) => c.codePointAt(0)!);
  let output = '';
  for (const c of codePoints) if (c < 0x80) output += String.fromCharCode(c);
  const basicCount = output.length;
  let handled = basicCount;
  if (basicCount > 0) output += '-';
  let n = INITIAL_N;
  let delta = 0;
  let bias = INITIAL_BIAS;
  while (handled < codePoints.length) {
    let m = Number.MAX_SAFE_INTEGER;
    for (const c of codePoints) if (c >= n && c < m) m = c;
    delta += (m - n) * (handled + 1);
    n = m;
    for (const c of codePoints) {
      if (c < n) delta++;
      if (c !== n) continue;
      let q = delta;
      for (let k = BASE; ; k += BASE) {
        const t = k <= bias ? T_MIN : k >= bias + T_MAX ? T_MAX : k - bias;
        if (q < t) break;
        output += digitChar(t + ((q - t) % (BASE - t)));
        q = Math.floor((q - t) / (BASE - t));
      }
      output += digitChar(q);
      bias = adapt(delta, handled + 1, handled === basicCount);
      delta = 0;
      handled++;
    }
    delta++;
    n++;
  }
  return output;
}
