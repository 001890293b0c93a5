/**
 * A minimal DER writer and reader for the few fixed shapes revocation assembles by hand: CRL
 * entries (a hundred thousand of them must encode in well under a second, which the generic
 * schema serializer cannot do: about 30 µs per entry), the outer CRL and OCSP envelopes around
 * already-signed bytes (re-serializing signed bytes risks changing them), and raw slices of an
 * issuer certificate (OCSP's issuerNameHash is over the exact subject bytes, RFC 6960 §4.1.1).
 * Everything structured beyond that is encoded with @peculiar/asn1-x509 / asn1-ocsp classes.
 */

export const TAG = {
  integer: 0x02,
  bitString: 0x03,
  octetString: 0x04,
  null: 0x05,
  oid: 0x06,
  enumerated: 0x0a,
  utcTime: 0x17,
  generalizedTime: 0x18,
  sequence: 0x30,
  set: 0x31,
} as const;

/** Context-specific constructed tag [n] (EXPLICIT tagging or constructed IMPLICIT). */
export const contextConstructed = (n: number): number => 0xa0 | n;

/** X.690 §8.1.3: definite length, short form below 128, long form otherwise. */
export function encodeLength(length: number): Uint8Array {
  if (!Number.isSafeInteger(length) || length < 0) throw new RangeError(`invalid DER length ${length}`);
  if (length < 0x80) return Uint8Array.of(length);
  const bytes: number[] = [];
  for (let rest = length; rest > 0; rest = Math.floor(rest / 256)) bytes.unshift(rest % 256);
  return Uint8Array.from([0x80 | bytes.length, ...bytes]);
}

export function concatBytes(parts: readonly Uint8Array[]): Uint8Array {
  let total = 0;
  for (const part of parts) total += part.byteLength;
  const out = new Uint8Array(total);
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.byteLength;
  }
  return out;
}

/** The identifier and length octets of a TLV whose contents are `length` octets long. */
export function header(tag: number, length: number): Uint8Array {
  const len = encodeLength(length);
  const out = new Uint8Array(1 + len.byteLength);
  out[0] = tag;
  out.set(len, 1);
  return out;
}

export function tlv(tag: number, ...contents: Uint8Array[]): Uint8Array {
  let length = 0;
  for (const part of contents) length += part.byteLength;
  return concatBytes([header(tag, length), ...contents]);
}

/** DER OBJECT IDENTIFIER from dotted text (X.690 §8.19). */
export function encodeOid(dotted: string): Uint8Array {
  const arcs = dotted.split('.').map((arc) => {
    if (!/^\d+$/.test(arc)) throw new RangeError(`invalid OID ${dotted}`);
    return BigInt(arc);
  });
  if (arcs.length < 2 || arcs[0]! > 2n || (arcs[0]! < 2n && arcs[1]! > 39n))
    throw new RangeError(`invalid OID ${dotted}`);
  const out: number[] = [];
  for (const arc of [arcs[0]! * 40n + arcs[1]!, ...arcs.slice(2)]) {
    const groups: number[] = [];
    let rest = arc;
    do {
      groups.unshift(Number(rest & 0x7fn));
      rest >>= 7n;
    } while (rest > 0n);
    for (let i = 0; i < groups.length - 1; i++) groups[i]! |= 0x80;
    out.push(...groups);
  }
  return tlv(TAG.oid, Uint8Array.from(out));
}

/** DER INTEGER of a non-negative bigint (X.690 §8.3: minimal two's complement). */
export function encodeUnsignedInteger(value: bigint): Uint8Array {
  if (value < 0n) throw new RangeError('negative INTEGER');
  let hex = value.toString(16);
  if (hex.length % 2 === 1) hex = `0${hex}`;
  // A set high bit would read as negative: prefix a zero octet.
  if (Number.parseInt(hex.slice(0, 2), 16) >= 0x80) hex = `00${hex}`;
  return tlv(TAG.integer, Buffer.from(hex, 'hex'));
}

export function encodeEnumerated(value: number): Uint8Array {
  if (!Number.isInteger(value) || value < 0 || value > 127) throw new RangeError(`ENUMERATED ${value}`);
  return Uint8Array.of(TAG.enumerated, 1, value);
}

const two = (n: number) => String(n).padStart(2, '0');

function timeDigits(date: Date, fourDigitYear: boolean): Uint8Array {
  if (Number.isNaN(date.getTime())) throw new RangeError('invalid date');
  if (date.getUTCMilliseconds() !== 0) {
    // RFC 5280 §4.1.2.5.2 and §5.1.2.4: no fractional seconds. Callers round first, so that the
    // date they store is the date they sign.
    throw new RangeError('DER times must be whole seconds');
  }
  const year = date.getUTCFullYear();
  const yearText = fourDigitYear ? String(year).padStart(4, '0') : two(year % 100);
  const text =
    yearText +
    two(date.getUTCMonth() + 1) +
    two(date.getUTCDate()) +
    two(date.getUTCHours()) +
    two(date.getUTCMinutes()) +
    two(date.getUTCSeconds()) +
    'Z';
  return Buffer.from(text, 'latin1');
}

/** RFC 5280 §4.1.2.5.2: YYYYMMDDHHMMSSZ. */
export function encodeGeneralizedTime(date: Date): Uint8Array {
  return tlv(TAG.generalizedTime, timeDigits(date, true));
}

/** RFC 5280 Time (§4.1.2.5, §5.1.2.4, §5.1.2.6): UTCTime for 1950 through 2049, GeneralizedTime otherwise. */
export function encodeTime(date: Date): Uint8Array {
  const year = date.getUTCFullYear();
  if (year >= 1950 && year <= 2049) return tlv(TAG.utcTime, timeDigits(date, false));
  return encodeGeneralizedTime(date);
}

/** Drops milliseconds: every time Signet signs is a whole second, and the stored copy must match. */
export function wholeSeconds(date: Date): Date {
  return new Date(Math.floor(date.getTime() / 1000) * 1000);
}

export interface Tlv {
  tag: number;
  /** Offset of the identifier octet. */
  start: number;
  /** Offset of the first contents octet. */
  contentStart: number;
  /** Offset just past the contents. */
  end: number;
}

/**
 * Reads one TLV at `offset` with a single-octet tag and a definite length (all DER allows for the
 * universal and low context tags used here). Throws on truncation, indefinite or overlong lengths.
 */
export function readTlv(bytes: Uint8Array, offset = 0, limit = bytes.byteLength): Tlv {
  if (offset + 2 > limit) throw new RangeError('truncated DER');
  const tag = bytes[offset]!;
  if ((tag & 0x1f) === 0x1f) throw new RangeError('multi-octet DER tags are not supported');
  const first = bytes[offset + 1]!;
  let length: number;
  let contentStart: number;
  if (first < 0x80) {
    length = first;
    contentStart = offset + 2;
  } else {
    const count = first & 0x7f;
    if (count === 0) throw new RangeError('indefinite length is not DER');
    if (count > 4) throw new RangeError('DER length too large');
    if (offset + 2 + count > limit) throw new RangeError('truncated DER');
    length = 0;
    for (let i = 0; i < count; i++) length = length * 256 + bytes[offset + 2 + i]!;
    // X.690 §10.1: the shortest form.
    if (length < 0x80 || bytes[offset + 2] === 0) throw new RangeError('non-minimal DER length');
    contentStart = offset + 2 + count;
  }
  const end = contentStart + length;
  if (end > limit) throw new RangeError('truncated DER');
  return { tag, start: offset, contentStart, end };
}

/** The children of a constructed TLV. */
export function readChildren(bytes: Uint8Array, parent: Tlv): Tlv[] {
  const children: Tlv[] = [];
  for (let offset = parent.contentStart; offset < parent.end; ) {
    const child = readTlv(bytes, offset, parent.end);
    children.push(child);
    offset = child.end;
  }
  return children;
}

export const slice = (bytes: Uint8Array, t: Tlv): Uint8Array => bytes.subarray(t.start, t.end);
export const contents = (bytes: Uint8Array, t: Tlv): Uint8Array => bytes.subarray(t.contentStart, t.end);
