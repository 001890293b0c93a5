/**
 * A strict DER reader and a small DER writer (ITU-T X.690 §10, §11).
 *
 * asn1js (under @peculiar/asn1-schema and pkijs) decodes BER and so accepts indefinite lengths,
 * non-minimal lengths, constructed strings and non-canonical BOOLEANs that DER forbids. RFC 5280
 * §4.1 and RFC 2986 require DER, and byte-for-byte equality of what was linted and what was signed
 * only means something for a canonical encoding, so untrusted input is first walked here: every
 * violation is reported with a reason the caller maps to its own stable code. The walk yields a
 * tree of offsets into the original bytes, so callers can take exact sub-encodings (the signed
 * CertificationRequestInfo, the SubjectPublicKeyInfo) without re-encoding anything.
 */

export type DerErrorReason = 'malformed' | 'non_der' | 'trailing_data' | 'too_deep';

export class DerError extends Error {
  override readonly name = 'DerError';
  constructor(
    readonly reason: DerErrorReason,
    message: string,
  ) {
    super(message);
  }
}

/** One TLV. `tag` is the identifier octet (only low tag numbers occur in X.509). */
export interface Tlv {
  readonly tag: number;
  readonly constructed: boolean;
  /** Offset of the identifier octet in `bytes`. */
  readonly start: number;
  /** Offset of the first content octet. */
  readonly contentStart: number;
  /** Offset just past the last content octet. */
  readonly end: number;
  readonly children: readonly Tlv[];
  readonly bytes: Uint8Array;
}

export const TAG = {
  BOOLEAN: 0x01,
  INTEGER: 0x02,
  BIT_STRING: 0x03,
  OCTET_STRING: 0x04,
  NULL: 0x05,
  OID: 0x06,
  ENUMERATED: 0x0a,
  UTF8_STRING: 0x0c,
  SEQUENCE: 0x30,
  SET: 0x31,
  NUMERIC_STRING: 0x12,
  PRINTABLE_STRING: 0x13,
  TELETEX_STRING: 0x14,
  IA5_STRING: 0x16,
  UTC_TIME: 0x17,
  GENERALIZED_TIME: 0x18,
  VISIBLE_STRING: 0x1a,
  UNIVERSAL_STRING: 0x1c,
  BMP_STRING: 0x1e,
} as const;

/** Universal types that X.690 §10.2 / §8 allow only in primitive form in DER. */
const PRIMITIVE_ONLY = new Set([
  1, 2, 3, 4, 5, 6, 9, 10, 12, 13, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 30,
]);

export interface ReadDerOptions {
  /** Deepest nesting of constructed values allowed; the structures we read need far less. */
  maxDepth?: number;
}

/**
 * Reads exactly one DER value spanning all of `bytes`. Throws DerError on anything that is not
 * strict DER, on trailing bytes after the value, and on nesting deeper than `maxDepth`.
 */
export function readDer(bytes: Uint8Array, options: ReadDerOptions = {}): Tlv {
  const maxDepth = options.maxDepth ?? 16;
  if (bytes.length === 0) throw new DerError('malformed', 'empty input');
  const root = readTlv(bytes, 0, bytes.length, 1, maxDepth);
  if (root.end !== bytes.length) {
    throw new DerError('trailing_data', `${bytes.length - root.end} bytes follow the DER value`);
  }
  return root;
}

/** Reads the identifier and length octets at `offset`; DER's rules on lengths (X.690 §10.1). */
function readHeader(bytes: Uint8Array, offset: number, limit: number): TlvBounds {
  if (offset + 2 > limit) throw new DerError('malformed', 'truncated TLV header');
  const tag = bytes[offset]!;
  if ((tag & 0x1f) === 0x1f) throw new DerError('malformed', 'high tag numbers are not used in X.509');
  if (tag === 0x00) throw new DerError('non_der', 'end-of-contents octets (indefinite length) in DER');
  const first = bytes[offset + 1]!;
  let length: number;
  let contentStart: number;
  if (first < 0x80) {
    length = first;
    contentStart = offset + 2;
  } else if (first === 0x80) {
    throw new DerError('non_der', 'indefinite length is not DER (X.690 §10.1)');
  } else if (first === 0xff) {
    throw new DerError('malformed', 'reserved length octet');
  } else {
    const count = first & 0x7f;
    if (count > 4) throw new DerError('malformed', 'length too large');
    if (offset + 2 + count > limit) throw new DerError('malformed', 'truncated length');
    if (bytes[offset + 2] === 0)
      throw new DerError('non_der', 'length with leading zero octets (X.690 §10.1)');
    length = 0;
    for (let i = 0; i < count; i++) length = length * 256 + bytes[offset + 2 + i]!;
    if (length < 0x80) throw new DerError('non_der', 'long-form length for a short length (X.690 §10.1)');
    contentStart = offset + 2 + count;
  }
  const end = contentStart + length;
  if (end > limit) throw new DerError('malformed', 'length runs past the enclosing value');
  return { tag, start: offset, contentStart, end };
}

function readTlv(bytes: Uint8Array, offset: number, limit: number, depth: number, maxDepth: number): Tlv {
  const { tag, contentStart, end } = readHeader(bytes, offset, limit);
  const constructed = (tag & 0x20) !== 0;
  const universal = (tag & 0xc0) === 0;

  if (universal) {
    const number = tag & 0x1f;
    if (constructed && PRIMITIVE_ONLY.has(number)) {
      throw new DerError('non_der', `constructed encoding of universal type ${number} (X.690 §10.2)`);
    }
    if (!constructed && (number === 16 || number === 17)) {
      throw new DerError('malformed', 'SEQUENCE or SET in primitive form');
    }
  }

  let children: Tlv[] = [];
  if (constructed) {
    if (depth >= maxDepth) throw new DerError('too_deep', `nesting deeper than ${maxDepth} levels`);
    let position = contentStart;
    while (position < end) {
      const child = readTlv(bytes, position, end, depth + 1, maxDepth);
      children.push(child);
      position = child.end;
    }
    if (tag === TAG.SET) checkSetOrder(bytes, children);
  } else {
    children = [];
    if (universal) checkPrimitive(tag, bytes, contentStart, end);
  }
  return { tag, constructed, start: offset, contentStart, end, children, bytes };
}

// ---- Reading one level at a time -----------------------------------------------------------------

/** Where one TLV sits in its bytes, without its children (a shallow read). */
export interface TlvBounds {
  readonly tag: number;
  readonly start: number;
  readonly contentStart: number;
  readonly end: number;
}

/**
 * Reads one TLV at `offset` without walking into it, with the same length rules as readDer: for
 * large input of which only a few fields are read (an OCSP request's CertIDs, an issuer's subject)
 * and for envelopes around bytes that must not be re-encoded.
 */
export function readTlvAt(bytes: Uint8Array, offset = 0, limit = bytes.byteLength): TlvBounds {
  return readHeader(bytes, offset, limit);
}

/** The children of a constructed TLV, one level down. */
export function readChildrenOf(bytes: Uint8Array, parent: TlvBounds): TlvBounds[] {
  const children: TlvBounds[] = [];
  for (let offset = parent.contentStart; offset < parent.end; ) {
    const child = readHeader(bytes, offset, parent.end);
    children.push(child);
    offset = child.end;
  }
  return children;
}

/** The whole encoding (identifier, length and contents) of a shallow-read TLV. */
export const tlvEncoding = (bytes: Uint8Array, t: TlvBounds): Uint8Array => bytes.subarray(t.start, t.end);
/** The content octets of a shallow-read TLV. */
export const tlvContent = (bytes: Uint8Array, t: TlvBounds): Uint8Array =>
  bytes.subarray(t.contentStart, t.end);

/** X.690 §11.6: the components of a SET OF are in ascending order of their encodings. */
function checkSetOrder(bytes: Uint8Array, children: Tlv[]): void {
  for (let i = 1; i < children.length; i++) {
    const a = children[i - 1]!;
    const b = children[i]!;
    if (compareEncodings(bytes.subarray(a.start, a.end), bytes.subarray(b.start, b.end)) > 0) {
      throw new DerError('non_der', 'SET OF components not in ascending order (X.690 §11.6)');
    }
  }
}

/** Compares as X.690 §11.6 says: octet strings, the shorter padded with trailing zero octets. */
export function compareEncodings(a: Uint8Array, b: Uint8Array): number {
  const n = Math.max(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a[i] ?? 0;
    const y = b[i] ?? 0;
    if (x !== y) return x - y;
  }
  return 0;
}

const PRINTABLE = /^[A-Za-z0-9 '()+,\-./:=?]*$/;
const UTC_TIME = /^\d{12}Z$/;
const GENERALIZED_TIME = /^\d{14}Z$/;
const utf8 = new TextDecoder('utf-8', { fatal: true });

function checkPrimitive(tag: number, bytes: Uint8Array, start: number, end: number): void {
  const length = end - start;
  switch (tag) {
    case TAG.BOOLEAN:
      if (length !== 1) throw new DerError('malformed', 'BOOLEAN of length other than 1');
      if (bytes[start] !== 0x00 && bytes[start] !== 0xff) {
        throw new DerError('non_der', 'BOOLEAN TRUE must be 0xFF in DER (X.690 §11.1)');
      }
      return;
    case TAG.INTEGER:
    case TAG.ENUMERATED:
      if (length === 0) throw new DerError('malformed', 'INTEGER with no content');
      if (length > 1) {
        const a = bytes[start]!;
        const b = bytes[start + 1]!;
        if ((a === 0x00 && b < 0x80) || (a === 0xff && b >= 0x80)) {
          throw new DerError('non_der', 'INTEGER not in minimal form (X.690 §8.3.2)');
        }
      }
      return;
    case TAG.NULL:
      if (length !== 0) throw new DerError('malformed', 'NULL with content');
      return;
    case TAG.BIT_STRING: {
      if (length === 0) throw new DerError('malformed', 'BIT STRING without the unused-bits octet');
      const unused = bytes[start]!;
      if (unused > 7) throw new DerError('malformed', 'BIT STRING with more than 7 unused bits');
      if (length === 1 && unused !== 0) throw new DerError('malformed', 'empty BIT STRING with unused bits');
      if (unused > 0 && (bytes[end - 1]! & ((1 << unused) - 1)) !== 0) {
        throw new DerError('non_der', 'BIT STRING padding bits not zero (X.690 §11.2.1)');
      }
      return;
    }
    case TAG.OID: {
      if (length === 0) throw new DerError('malformed', 'empty OBJECT IDENTIFIER');
      if ((bytes[end - 1]! & 0x80) !== 0) throw new DerError('malformed', 'truncated OBJECT IDENTIFIER');
      let atStart = true;
      for (let i = start; i < end; i++) {
        const byte = bytes[i]!;
        if (atStart && byte === 0x80) throw new DerError('non_der', 'OBJECT IDENTIFIER arc not minimal');
        atStart = (byte & 0x80) === 0;
      }
      return;
    }
    case TAG.UTF8_STRING:
      try {
        utf8.decode(bytes.subarray(start, end));
      } catch {
        throw new DerError('malformed', 'UTF8String is not valid UTF-8');
      }
      return;
    case TAG.PRINTABLE_STRING:
      if (!PRINTABLE.test(latin1(bytes, start, end))) {
        throw new DerError('malformed', 'PrintableString with a character outside its set');
      }
      return;
    case TAG.IA5_STRING:
      for (let i = start; i < end; i++) {
        if (bytes[i]! > 0x7f) throw new DerError('malformed', 'IA5String with a non-ASCII octet');
      }
      return;
    case TAG.UTC_TIME:
      // X.690 §11.8 and RFC 5280 §4.1.2.5.1: YYMMDDHHMMSSZ, seconds present, UTC.
      if (!UTC_TIME.test(latin1(bytes, start, end))) throw new DerError('non_der', 'UTCTime not in DER form');
      return;
    case TAG.GENERALIZED_TIME:
      // X.690 §11.7 and RFC 5280 §4.1.2.5.2: YYYYMMDDHHMMSSZ, no fractional seconds.
      if (!GENERALIZED_TIME.test(latin1(bytes, start, end))) {
        throw new DerError('non_der', 'GeneralizedTime not in the RFC 5280 DER form');
      }
      return;
    case TAG.BMP_STRING:
      if (length % 2 !== 0) throw new DerError('malformed', 'BMPString of odd length');
      return;
    case TAG.UNIVERSAL_STRING:
      if (length % 4 !== 0) throw new DerError('malformed', 'UniversalString length not a multiple of 4');
      return;
    default:
      return;
  }
}

function latin1(bytes: Uint8Array, start: number, end: number): string {
  let text = '';
  for (let i = start; i < end; i++) text += String.fromCharCode(bytes[i]!);
  return text;
}

// ---- Reading helpers over a Tlv tree ------------------------------------------------------------

export function content(tlv: Tlv): Uint8Array {
  return tlv.bytes.subarray(tlv.contentStart, tlv.end);
}

export function encoding(tlv: Tlv): Uint8Array {
  return tlv.bytes.subarray(tlv.start, tlv.end);
}

export function decodeOid(tlv: Tlv): string {
  const bytes = content(tlv);
  const arcs: (number | bigint)[] = [];
  let value = 0n;
  for (const byte of bytes) {
    value = (value << 7n) | BigInt(byte & 0x7f);
    if ((byte & 0x80) === 0) {
      if (arcs.length === 0) {
        const first = value < 40n ? 0n : value < 80n ? 1n : 2n;
        arcs.push(first, value - first * 40n);
      } else {
        arcs.push(value);
      }
      value = 0n;
    }
  }
  return arcs.join('.');
}

/** Decodes a character string of any X.509 string type to a JS string. */
export function decodeString(tlv: Tlv): string {
  const bytes = content(tlv);
  switch (tlv.tag) {
    case TAG.UTF8_STRING:
      return utf8.decode(bytes);
    case TAG.PRINTABLE_STRING:
    case TAG.IA5_STRING:
    case TAG.NUMERIC_STRING:
    case TAG.VISIBLE_STRING:
    case TAG.TELETEX_STRING:
      return latin1(bytes, 0, bytes.length);
    case TAG.BMP_STRING: {
      let text = '';
      for (let i = 0; i + 1 < bytes.length; i += 2)
        text += String.fromCharCode((bytes[i]! << 8) | bytes[i + 1]!);
      return text;
    }
    case TAG.UNIVERSAL_STRING: {
      let text = '';
      for (let i = 0; i + 3 < bytes.length; i += 4) {
        const code = ((bytes[i]! << 24) | (bytes[i + 1]! << 16) | (bytes[i + 2]! << 8) | bytes[i + 3]!) >>> 0;
        if (code > 0x10ffff) throw new DerError('malformed', 'UniversalString code point out of range');
        text += String.fromCodePoint(code);
      }
      return text;
    }
    default:
      throw new DerError('malformed', `tag 0x${tlv.tag.toString(16)} is not a character string`);
  }
}

/** INTEGER to bigint (two's complement). */
export function decodeInteger(tlv: Tlv): bigint {
  const bytes = content(tlv);
  let value = 0n;
  for (const byte of bytes) value = (value << 8n) | BigInt(byte);
  if (bytes.length > 0 && bytes[0]! >= 0x80) value -= 1n << BigInt(bytes.length * 8);
  return value;
}

/** BIT STRING content without the unused-bits octet; the caller checks `unusedBits` when it matters. */
export function bitStringBytes(tlv: Tlv): { bytes: Uint8Array; unusedBits: number } {
  const raw = content(tlv);
  return { bytes: raw.subarray(1), unusedBits: raw[0] ?? 0 };
}

export function decodeTime(tlv: Tlv): Date {
  const text = latin1(tlv.bytes, tlv.contentStart, tlv.end);
  let year: number;
  let rest: string;
  if (tlv.tag === TAG.UTC_TIME) {
    const yy = Number(text.slice(0, 2));
    // RFC 5280 §4.1.2.5.1: YY >= 50 is 19YY, otherwise 20YY.
    year = yy >= 50 ? 1900 + yy : 2000 + yy;
    rest = text.slice(2);
  } else if (tlv.tag === TAG.GENERALIZED_TIME) {
    year = Number(text.slice(0, 4));
    rest = text.slice(4);
  } else {
    throw new DerError('malformed', 'not a Time');
  }
  const month = Number(rest.slice(0, 2));
  const day = Number(rest.slice(2, 4));
  const hour = Number(rest.slice(4, 6));
  const minute = Number(rest.slice(6, 8));
  const second = Number(rest.slice(8, 10));
  const date = new Date(Date.UTC(year, month - 1, day, hour, minute, second));
  if (
    date.getUTCFullYear() !== year ||
    date.getUTCMonth() !== month - 1 ||
    date.getUTCDate() !== day ||
    date.getUTCHours() !== hour ||
    date.getUTCMinutes() !== minute ||
    date.getUTCSeconds() !== second
  ) {
    throw new DerError('malformed', `invalid calendar time ${text}`);
  }
  return date;
}

// ---- Writing ------------------------------------------------------------------------------------

export function concat(parts: readonly Uint8Array[]): Uint8Array {
  let length = 0;
  for (const part of parts) length += part.length;
  const out = new Uint8Array(length);
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

function lengthOctets(length: number): number[] {
  if (!Number.isSafeInteger(length) || length < 0) throw new RangeError(`invalid DER length ${length}`);
  if (length < 0x80) return [length];
  const octets: number[] = [];
  for (let n = length; n > 0; n = Math.floor(n / 256)) octets.unshift(n & 0xff);
  return [0x80 | octets.length, ...octets];
}

/** X.690 §8.1.3: definite length, short form below 128, long form otherwise. */
export function encodeLength(length: number): Uint8Array {
  return Uint8Array.from(lengthOctets(length));
}

/** The identifier and length octets of a TLV whose contents are `length` octets long (for streaming). */
export function header(tag: number, length: number): Uint8Array {
  return Uint8Array.from([tag, ...lengthOctets(length)]);
}

/** A TLV around the given content parts. */
export function tlv(tag: number, ...parts: Uint8Array[]): Uint8Array {
  let length = 0;
  for (const part of parts) length += part.length;
  const header = lengthOctets(length);
  const out = new Uint8Array(1 + header.length + length);
  out[0] = tag;
  out.set(header, 1);
  let offset = 1 + header.length;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

export const sequence = (...parts: Uint8Array[]): Uint8Array => tlv(TAG.SEQUENCE, ...parts);

/** X.690 §11.6: a SET OF with its components sorted by encoding. */
export function setOf(parts: Uint8Array[]): Uint8Array {
  return tlv(TAG.SET, ...[...parts].sort(compareEncodings));
}

/** INTEGER from unsigned big-endian magnitude octets: strips redundant zeros, adds a sign octet. */
export function integerFromUnsigned(magnitude: Uint8Array): Uint8Array {
  let i = 0;
  while (i < magnitude.length - 1 && magnitude[i] === 0) i++;
  const trimmed = magnitude.subarray(i);
  if (trimmed.length === 0) return tlv(TAG.INTEGER, new Uint8Array([0]));
  return trimmed[0]! >= 0x80 ? tlv(TAG.INTEGER, new Uint8Array([0]), trimmed) : tlv(TAG.INTEGER, trimmed);
}

/** DER INTEGER of a non-negative bigint (X.690 §8.3: minimal two's complement). */
export function integerFromBigInt(value: bigint): Uint8Array {
  if (value < 0n) throw new RangeError('negative INTEGER');
  let hex = value.toString(16);
  if (hex.length % 2 === 1) hex = `0${hex}`;
  return integerFromUnsigned(new Uint8Array(Buffer.from(hex, 'hex')));
}

export function enumerated(value: number): Uint8Array {
  if (!Number.isInteger(value) || value < 0 || value > 127) throw new RangeError(`ENUMERATED ${value}`);
  return Uint8Array.of(TAG.ENUMERATED, 1, value);
}

export function integerFromNumber(value: number): Uint8Array {
  if (!Number.isSafeInteger(value) || value < 0) throw new RangeError('non-negative safe integer expected');
  const octets: number[] = [];
  for (let n = value; n > 0; n = Math.floor(n / 256)) octets.unshift(n & 0xff);
  return integerFromUnsigned(new Uint8Array(octets.length === 0 ? [0] : octets));
}

const oidCache = new Map<string, Uint8Array>();

export function oid(dotted: string): Uint8Array {
  const cached = oidCache.get(dotted);
  if (cached) return cached;
  if (!/^[0-2](\.(0|[1-9]\d*))+$/.test(dotted)) throw new RangeError(`not an OID: ${dotted}`);
  const arcs = dotted.split('.').map((arc) => BigInt(arc));
  const first = arcs[0]!;
  const second = arcs[1]!;
  if (first < 2n && second >= 40n) throw new RangeError(`not an OID: ${dotted}`);
  const values = [first * 40n + second, ...arcs.slice(2)];
  const out: number[] = [];
  for (const value of values) {
    const chunk: number[] = [Number(value & 0x7fn)];
    for (let v = value >> 7n; v > 0n; v >>= 7n) chunk.unshift(Number(v & 0x7fn) | 0x80);
    out.push(...chunk);
  }
  const encoded = tlv(TAG.OID, new Uint8Array(out));
  oidCache.set(dotted, encoded);
  return encoded;
}

export const NULL_DER = new Uint8Array([0x05, 0x00]);
export const TRUE_DER = new Uint8Array([0x01, 0x01, 0xff]);

export function octetString(bytes: Uint8Array): Uint8Array {
  return tlv(TAG.OCTET_STRING, bytes);
}

export function bitString(bytes: Uint8Array, unusedBits = 0): Uint8Array {
  return tlv(TAG.BIT_STRING, new Uint8Array([unusedBits]), bytes);
}

const textEncoder = new TextEncoder();

export function utf8String(text: string): Uint8Array {
  return tlv(TAG.UTF8_STRING, textEncoder.encode(text));
}

export function asciiString(tag: number, text: string): Uint8Array {
  const bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code > 0x7f) throw new RangeError('non-ASCII character in an ASCII string type');
    bytes[i] = code;
  }
  return tlv(tag, bytes);
}

const pad = (n: number, width = 2): string => String(n).padStart(width, '0');

function timeRest(date: Date): string {
  return (
    pad(date.getUTCMonth() + 1) +
    pad(date.getUTCDate()) +
    pad(date.getUTCHours()) +
    pad(date.getUTCMinutes()) +
    pad(date.getUTCSeconds()) +
    'Z'
  );
}

/**
 * RFC 5280 §4.1.2.5: UTCTime for 1950 through 2049, GeneralizedTime otherwise, both in whole
 * seconds with Z. Milliseconds are dropped (truncated), never rounded up past the intended instant.
 */
export function time(date: Date): Uint8Array {
  const year = date.getUTCFullYear();
  if (Number.isNaN(year) || year < 0 || year > 9999)
    throw new RangeError('time outside the range X.509 can express');
  return year >= 1950 && year < 2050
    ? asciiString(TAG.UTC_TIME, pad(year % 100) + timeRest(date))
    : asciiString(TAG.GENERALIZED_TIME, pad(year, 4) + timeRest(date));
}

/**
 * GeneralizedTime YYYYMMDDHHMMSSZ (RFC 5280 §4.1.2.5.2, RFC 6960's times). Fractional seconds are
 * refused, not dropped: callers round first, so the date they store is the date they sign.
 */
export function generalizedTime(date: Date): Uint8Array {
  if (Number.isNaN(date.getTime())) throw new RangeError('invalid date');
  if (date.getUTCMilliseconds() !== 0) throw new RangeError('DER times must be whole seconds');
  return asciiString(TAG.GENERALIZED_TIME, pad(date.getUTCFullYear(), 4) + timeRest(date));
}

/** Context-specific tag byte: [n] with the constructed bit as given. */
export const contextTag = (n: number, constructed: boolean): number => 0x80 | (constructed ? 0x20 : 0) | n;

export function toHex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
}

export function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
