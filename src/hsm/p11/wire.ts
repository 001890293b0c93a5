import { CKA, CKM } from './pkcs11.ts';

/**
 * p11-kit's RPC encoding (p11-kit 0.24.1, `p11-kit/rpc-message.c`), written from its description:
 * everything big-endian; CK_ULONG always as 8 octets; counts, lengths, attribute and mechanism
 * types as 4; a byte array as a 4-octet length (0xffffffff for none) and its octets. A message is
 * `u32 call id`, the call's signature string as a byte array, then the arguments in the order the
 * signature names them (calls.ts).
 *
 * An attribute travels as `u32 type, byte valid, u32 native length, value`, the value encoded by
 * the attribute's type: one octet for CK_BBOOL ones, 8 for CK_ULONG ones, a byte array for the
 * rest (`map_attribute_to_value_type` in rpc-message.c). Both sides must agree on that table, so
 * it is mirrored exactly below.
 */

/** Anything that makes a message unreadable: the server closes that connection. */
export class ProtocolError extends Error {
  override readonly name = 'ProtocolError';
}

export type ValueKind = 'byte' | 'ulong' | 'bytes' | 'date' | 'mechanisms' | 'attributes';

const BYTE_ATTRIBUTES = new Set<number>([
  CKA.TOKEN,
  CKA.PRIVATE,
  CKA.TRUSTED,
  CKA.SENSITIVE,
  CKA.ENCRYPT,
  CKA.DECRYPT,
  CKA.WRAP,
  CKA.UNWRAP,
  CKA.SIGN,
  CKA.SIGN_RECOVER,
  CKA.VERIFY,
  CKA.VERIFY_RECOVER,
  CKA.DERIVE,
  CKA.EXTRACTABLE,
  CKA.LOCAL,
  CKA.NEVER_EXTRACTABLE,
  CKA.ALWAYS_SENSITIVE,
  CKA.MODIFIABLE,
  CKA.COPYABLE,
  0x200, // CKA_SECONDARY_AUTH
  CKA.ALWAYS_AUTHENTICATE,
  CKA.WRAP_WITH_TRUSTED,
  0x301, // CKA_RESET_ON_INIT
  0x302, // CKA_HAS_RESET
  0x405, // CKA_COLOR
]);

const ULONG_ATTRIBUTES = new Set<number>([
  CKA.CLASS,
  CKA.CERTIFICATE_TYPE,
  CKA.CERTIFICATE_CATEGORY,
  CKA.JAVA_MIDP_SECURITY_DOMAIN,
  CKA.KEY_TYPE,
  CKA.MODULUS_BITS,
  0x133, // CKA_PRIME_BITS
  0x134, // CKA_SUB_PRIME_BITS
  0x160, // CKA_VALUE_BITS
  0x161, // CKA_VALUE_LEN
  CKA.KEY_GEN_MECHANISM,
  0x201, // CKA_AUTH_PIN_FLAGS
  0x300, // CKA_HW_FEATURE_TYPE
  0x400, // CKA_PIXEL_X
  0x401, // CKA_PIXEL_Y
  0x402, // CKA_RESOLUTION
  0x403, // CKA_CHAR_ROWS
  0x404, // CKA_CHAR_COLUMNS
  0x406, // CKA_BITS_PER_PIXEL
  0x500, // CKA_MECHANISM_TYPE
]);

/** How p11-kit encodes the value of an attribute of this type. */
export function valueKind(type: number): ValueKind {
  if (BYTE_ATTRIBUTES.has(type)) return 'byte';
  if (ULONG_ATTRIBUTES.has(type)) return 'ulong';
  if (type === CKA.WRAP_TEMPLATE || type === CKA.UNWRAP_TEMPLATE) return 'attributes';
  if (type === CKA.ALLOWED_MECHANISMS) return 'mechanisms';
  if (type === CKA.START_DATE || type === CKA.END_DATE) return 'date';
  return 'bytes';
}

/**
 * An attribute value in a canonical form that compares by octets: a byte as one octet, a ulong
 * as 8 big-endian octets, arrays and dates as their octets; mechanism lists as 8 octets each.
 * Nested templates (CKA_WRAP_TEMPLATE) are read but never equal anything (`nested`).
 */
export interface Attribute {
  type: number;
  /** Undefined for an attribute sent as invalid (ulValueLen = -1). */
  value?: Buffer;
  nested?: true;
}

/** An entry of a "fA" buffer: the type and how many octets the caller has room for (0: size query). */
export interface AttributeRequest {
  type: number;
  length: number;
}

export interface Mechanism {
  type: number;
  /** CKM_RSA_PKCS_PSS parameters (CK_RSA_PKCS_PSS_PARAMS). */
  pss?: { hashAlg: number; mgf: number; saltLength: number };
  /** Any other mechanism's parameter octets; undefined when none were sent. */
  parameter?: Buffer;
}

const NONE = 0xffff_ffff;
/** A nested template inside a template is as deep as p11-kit goes (it refuses deeper ones). */
const MAX_NESTING = 1;

export class RpcReader {
  private offset = 0;

  constructor(private readonly buffer: Buffer) {}

  get done(): boolean {
    return this.offset === this.buffer.length;
  }

  private need(n: number): void {
    if (this.buffer.length - this.offset < n) throw new ProtocolError('message is truncated');
  }

  u8(): number {
    this.need(1);
    return this.buffer[this.offset++]!;
  }

  u32(): number {
    this.need(4);
    const value = this.buffer.readUInt32BE(this.offset);
    this.offset += 4;
    return value;
  }

  /** A CK_ULONG. Values past 2^53 lose precision, which only ever makes them invalid handles or sizes. */
  ulong(): number {
    this.need(8);
    const value = this.buffer.readBigUInt64BE(this.offset);
    this.offset += 8;
    return Number(value);
  }

  private ulongOctets(): Buffer {
    this.need(8);
    const octets = this.buffer.subarray(this.offset, this.offset + 8);
    this.offset += 8;
    return Buffer.from(octets);
  }

  /** A length-prefixed byte array; undefined for the 0xffffffff "none" length. */
  rawArray(): Buffer | undefined {
    const length = this.u32();
    if (length === NONE) return undefined;
    if (length >= 0x7fff_ffff) throw new ProtocolError('byte array length is out of range');
    this.need(length);
    const value = this.buffer.subarray(this.offset, this.offset + length);
    this.offset += length;
    return value;
  }

  /** "ay": a presence octet, then the array (or, when absent, only the length the caller has). */
  byteArray(): Buffer | undefined {
    const present = this.u8();
    if (present === 0) {
      this.u32();
      return undefined;
    }
    return this.rawArray() ?? Buffer.alloc(0);
  }

  /** "fy" and "fu": how much room the caller has (0: it only asks for the size). */
  bufferLength(): number {
    return this.u32();
  }

  /** "z": a string without its terminating NUL. */
  zeroString(): Buffer {
    return this.rawArray() ?? Buffer.alloc(0);
  }

  /** "fA": the attribute types asked for, with the room the caller has for each. */
  attributeBuffer(): AttributeRequest[] {
    const count = this.u32();
    const out: AttributeRequest[] = [];
    for (let i = 0; i < count; i++) out.push({ type: this.u32(), length: this.u32() });
    return out;
  }

  /** "aA": a template. */
  attributeArray(depth = 0): Attribute[] {
    const count = this.u32();
    const out: Attribute[] = [];
    for (let i = 0; i < count; i++) out.push(this.attribute(depth));
    return out;
  }

  private attribute(depth: number): Attribute {
    const type = this.u32();
    if (this.u8() === 0) return { type };
    this.u32(); // the sender's native length; the value's own encoding says how much follows
    switch (valueKind(type)) {
      case 'byte':
        return { type, value: Buffer.from([this.u8()]) };
      case 'ulong':
        return { type, value: this.ulongOctets() };
      case 'mechanisms': {
        const count = this.u32();
        const parts: Buffer[] = [];
        for (let i = 0; i < count; i++) parts.push(this.ulongOctets());
        return { type, value: Buffer.concat(parts) };
      }
      case 'attributes':
        if (depth >= MAX_NESTING) throw new ProtocolError('templates nest too deep');
        this.attributeArray(depth + 1);
        return { type, nested: true };
      case 'date': {
        const value = this.rawArray() ?? Buffer.alloc(0);
        if (value.length !== 0 && value.length !== 8) throw new ProtocolError('a CK_DATE is 8 octets');
        return { type, value: Buffer.from(value) };
      }
      default:
        return { type, value: Buffer.from(this.rawArray() ?? Buffer.alloc(0)) };
    }
  }

  /** "M": a mechanism type and its parameter, encoded as p11-kit does for that type. */
  mechanism(): Mechanism {
    const type = this.u32();
    if (type === CKM.RSA_PKCS_PSS) {
      return { type, pss: { hashAlg: this.ulong(), mgf: this.ulong(), saltLength: this.ulong() } };
    }
    if (type === 0x9) {
      // CKM_RSA_PKCS_OAEP: hash, mgf, source, then the source data. Read and dropped: never supported here.
      this.ulong();
      this.ulong();
      this.ulong();
      this.rawArray();
      return { type, parameter: Buffer.alloc(0) };
    }
    const parameter = this.rawArray();
    return parameter === undefined ? { type } : { type, parameter: Buffer.from(parameter) };
  }
}

export class RpcWriter {
  private buffer = Buffer.allocUnsafe(256);
  private length = 0;

  private room(n: number): void {
    if (this.length + n <= this.buffer.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.buffer.length * 2, this.length + n));
    this.buffer.copy(next, 0, 0, this.length);
    this.buffer = next;
  }

  u8(value: number): this {
    this.room(1);
    this.buffer[this.length++] = value;
    return this;
  }

  u32(value: number): this {
    this.room(4);
    this.buffer.writeUInt32BE(value >>> 0, this.length);
    this.length += 4;
    return this;
  }

  ulong(value: number | bigint): this {
    this.room(8);
    this.buffer.writeBigUInt64BE(BigInt(value), this.length);
    this.length += 8;
    return this;
  }

  octets(value: Uint8Array): this {
    this.room(value.length);
    this.buffer.set(value, this.length);
    this.length += value.length;
    return this;
  }

  rawArray(value: Uint8Array | undefined): this {
    if (value === undefined) return this.u32(NONE);
    return this.u32(value.length).octets(value);
  }

  /** "ay" answered with octets. */
  byteArray(value: Uint8Array): this {
    return this.u8(1).rawArray(value);
  }

  /** "ay" answered with only a length: the caller asked for the size, or has too little room. */
  byteArrayLength(length: number): this {
    return this.u8(0).u32(length);
  }

  /** "au" answered with values. */
  ulongArray(values: readonly (number | bigint)[]): this {
    this.u8(1).u32(values.length);
    for (const value of values) this.ulong(value);
    return this;
  }

  /** "au" answered with only a count. */
  ulongArrayLength(count: number): this {
    return this.u8(0).u32(count);
  }

  /** "s": a space-padded fixed-width string (CK_UTF8CHAR[width]). */
  spaceString(text: string, width: number): this {
    const padded = Buffer.alloc(width, 0x20);
    // Cut on a character boundary so the field stays valid UTF-8.
    const chars = [...text];
    while (Buffer.byteLength(chars.join('')) > width) chars.pop();
    Buffer.from(chars.join(''), 'utf8').copy(padded);
    return this.rawArray(padded);
  }

  /** "v": a CK_VERSION. */
  version(major: number, minor: number): this {
    return this.u8(major).u8(minor);
  }

  /** One attribute of an answer; `undefined` value is "not available" (ulValueLen = -1). */
  attribute(type: number, value: Buffer | undefined, sizeOnly = false): this {
    this.u32(type);
    if (value === undefined) return this.u8(0);
    const kind = valueKind(type);
    this.u8(1);
    switch (kind) {
      case 'byte':
        return this.u32(1).u8(sizeOnly ? 0 : value[0]!);
      case 'ulong':
        return this.u32(8).octets(sizeOnly ? Buffer.alloc(8) : value);
      case 'mechanisms':
        // Always with the values: p11-kit's reader reads `count` of them even for a size answer.
        return this.u32(value.length)
          .u32(value.length / 8)
          .octets(value);
      default:
        // A size answer carries the length and no octets, as p11-kit's own server sends it.
        return this.u32(value.length).rawArray(sizeOnly ? undefined : value);
    }
  }

  finish(): Buffer {
    return this.buffer.subarray(0, this.length);
  }
}

/** A CK_ULONG attribute value in canonical form. */
export function ulongValue(value: number | bigint): Buffer {
  const out = Buffer.alloc(8);
  out.writeBigUInt64BE(BigInt(value));
  return out;
}

export const boolValue = (value: boolean): Buffer => Buffer.from([value ? 1 : 0]);

/** Reads a canonical CK_ULONG attribute value back; NaN when it is not 8 octets. */
export function readUlongValue(value: Buffer | undefined): number {
  return value?.length === 8 ? Number(value.readBigUInt64BE(0)) : Number.NaN;
}
