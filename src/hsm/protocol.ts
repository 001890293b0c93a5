import {
  HsmError,
  isHsmReturnValue,
  SIGN_MECHANISMS,
  SIGN_PURPOSES,
  type SignMechanism,
  type SignPurpose,
} from './types.ts';

/**
 * The partition socket protocol, version 1.
 *
 * Framing: each frame is a 4-octet big-endian payload length, then the payload (at most
 * MAX_FRAME octets). Requests carry an id; answers carry the same id and come back as they
 * complete, so many requests may be in flight on one connection (pipelining). Both sides gather
 * the frames produced in one turn of the event loop into one write (batching).
 *
 *   request payload:  kind (1) | id (4, big-endian) | body
 *   answer payload:   status (1: 0 ok, 1 error) | id (4) | body
 *
 * Kinds:
 *   CALL (1)        body = UTF-8 JSON { "op": NAME, "args": {...} }; octets inside are base64.
 *                   The ok answer is JSON. The first frame of a connection must be the call
 *                   `hello` { protocol: "signet-hsm", versions: [1] }, answered with the version
 *                   chosen; every other frame before it is refused.
 *   SIGN (2)        the hot path, binary: mechanism (1, index in SIGN_MECHANISMS) | purpose (1,
 *                   index in SIGN_PURPOSES) | salt length (2, 0xffff = the hash length) |
 *                   key reference kind (1: 0 uri, 1 label, 2 id) | key reference length (1) |
 *                   key reference (UTF-8) | data (the rest). The ok answer is the bare signature.
 *   SIGN_UPDATE (3) handle (4) | chunk (the rest); the ok answer is empty (C_SignUpdate).
 *
 * An error answer's body is JSON { "rv": "CKR_...", "code": "hsm....", "message": "..." }. A frame
 * too broken to carry an id is answered with id 0.
 */
export const PROTOCOL_NAME = 'signet-hsm';
export const PROTOCOL_VERSION = 1;
export const SUPPORTED_VERSIONS = [1] as const;

/** Largest payload, 1 MiB. */
export const MAX_FRAME = 1024 * 1024;
export const KIND = { CALL: 1, SIGN: 2, SIGN_UPDATE: 3 } as const;
export const STATUS = { OK: 0, ERROR: 1 } as const;
const HEADER = 5;
/** Largest chunk one SIGN_UPDATE frame carries. */
export const MAX_UPDATE_CHUNK = MAX_FRAME - HEADER - 4;
export const KEY_REF_KIND = { uri: 0, label: 1, id: 2 } as const;
const NO_SALT = 0xffff;

const mechanismIndex = new Map<string, number>(SIGN_MECHANISMS.map((m, i) => [m, i]));
const purposeIndex = new Map<string, number>(SIGN_PURPOSES.map((p, i) => [p, i]));

const protocolError = (message: string) => new HsmError('CKR_PROTOCOL', message);

/** A whole frame (length prefix included) for a request; the id is filled in when it is sent. */
export function callFrame(op: string, args: unknown): Buffer {
  const json = JSON.stringify(args === undefined ? { op } : { op, args });
  const length = Buffer.byteLength(json);
  const frame = Buffer.allocUnsafe(4 + HEADER + length);
  frame.writeUInt32BE(HEADER + length, 0);
  frame[4] = KIND.CALL;
  frame.writeUInt32BE(0, 5);
  frame.write(json, 4 + HEADER, 'utf8');
  return frame;
}

export interface SignFrameFields {
  mechanism: SignMechanism;
  purpose: SignPurpose;
  saltLength?: number;
  refKind: number;
  ref: string;
  data: Uint8Array;
}

/** The frame of a SIGN request; throws locally for what could never be encoded. */
export function signFrame({ mechanism, purpose, saltLength, refKind, ref, data }: SignFrameFields): Buffer {
  const m = mechanismIndex.get(mechanism);
  if (m === undefined)
    throw new HsmError('CKR_MECHANISM_INVALID', `unknown mechanism '${String(mechanism)}'`);
  const p = purposeIndex.get(purpose);
  if (p === undefined) throw new HsmError('CKR_ARGUMENTS_BAD', `unknown purpose '${String(purpose)}'`);
  if (
    saltLength !== undefined &&
    (!Number.isInteger(saltLength) || saltLength < 0 || saltLength >= NO_SALT)
  ) {
    throw new HsmError('CKR_MECHANISM_PARAM_INVALID', 'salt length is out of range');
  }
  const refLength = Buffer.byteLength(ref);
  if (refLength > 255) throw new HsmError('CKR_ARGUMENTS_BAD', 'key reference is too long');
  const payload = HEADER + 6 + refLength + data.length;
  if (payload > MAX_FRAME) throw new HsmError('CKR_DATA_LEN_RANGE', 'data does not fit one frame');
  const frame = Buffer.allocUnsafe(4 + payload);
  frame.writeUInt32BE(payload, 0);
  frame[4] = KIND.SIGN;
  frame.writeUInt32BE(0, 5);
  frame[9] = m;
  frame[10] = p;
  frame.writeUInt16BE(saltLength ?? NO_SALT, 11);
  frame[13] = refKind;
  frame[14] = refLength;
  frame.write(ref, 15, 'utf8');
  frame.set(data, 15 + refLength);
  return frame;
}

/** Room left for data in a SIGN frame with this key reference. */
export function signDataRoom(ref: string): number {
  return MAX_FRAME - HEADER - 6 - Buffer.byteLength(ref);
}

export interface SignFrame {
  mechanism: SignMechanism;
  purpose: SignPurpose;
  saltLength: number | undefined;
  refKind: number;
  ref: string;
  data: Buffer;
}

/** Reads a SIGN payload (header included); throws CKR_PROTOCOL when it is malformed. */
export function readSignFrame(payload: Buffer): SignFrame {
  if (payload.length < HEADER + 6) throw protocolError('SIGN frame is truncated');
  const mechanism = SIGN_MECHANISMS[payload[5]!];
  if (!mechanism) throw new HsmError('CKR_MECHANISM_INVALID', 'unknown mechanism number');
  const purpose = SIGN_PURPOSES[payload[6]!];
  if (!purpose) throw new HsmError('CKR_ARGUMENTS_BAD', 'unknown purpose number');
  const salt = payload.readUInt16BE(7);
  const refKind = payload[9]!;
  if (refKind > 2) throw protocolError('unknown key reference kind');
  const refEnd = HEADER + 6 + payload[10]!;
  if (refEnd > payload.length) throw protocolError('SIGN frame is truncated');
  return {
    mechanism,
    purpose,
    saltLength: salt === NO_SALT ? undefined : salt,
    refKind,
    ref: payload.toString('utf8', HEADER + 6, refEnd),
    data: payload.subarray(refEnd),
  };
}

export function updateFrame(handle: number, chunk: Uint8Array): Buffer {
  const payload = HEADER + 4 + chunk.length;
  if (payload > MAX_FRAME) throw new HsmError('CKR_DATA_LEN_RANGE', 'chunk does not fit one frame');
  const frame = Buffer.allocUnsafe(4 + payload);
  frame.writeUInt32BE(payload, 0);
  frame[4] = KIND.SIGN_UPDATE;
  frame.writeUInt32BE(0, 5);
  frame.writeUInt32BE(handle, 9);
  frame.set(chunk, 13);
  return frame;
}

export function readUpdateFrame(payload: Buffer): { handle: number; chunk: Buffer } {
  if (payload.length < HEADER + 4) throw protocolError('SIGN_UPDATE frame is truncated');
  return { handle: payload.readUInt32BE(HEADER), chunk: payload.subarray(HEADER + 4) };
}

/** Sets the request id of a frame built by callFrame / signFrame / updateFrame. */
export function setFrameId(frame: Buffer, id: number): void {
  frame.writeUInt32BE(id, 5);
}

/** A whole answer frame. */
export function answerFrame(id: number, status: number, body: Uint8Array | string): Buffer {
  const length = typeof body === 'string' ? Buffer.byteLength(body) : body.length;
  const frame = Buffer.allocUnsafe(4 + HEADER + length);
  frame.writeUInt32BE(HEADER + length, 0);
  frame[4] = status;
  frame.writeUInt32BE(id, 5);
  if (typeof body === 'string') frame.write(body, 4 + HEADER, 'utf8');
  else frame.set(body, 4 + HEADER);
  return frame;
}

export function errorBody(error: HsmError): string {
  return JSON.stringify({ rv: error.rv, code: error.code, message: error.reason });
}

/** Rebuilds the partition's error from an error answer; anything unreadable is a protocol error. */
export function readErrorBody(body: Buffer): HsmError {
  try {
    const parsed = JSON.parse(body.toString('utf8')) as { rv?: unknown; message?: unknown };
    const message = typeof parsed.message === 'string' ? parsed.message : 'the partition refused';
    if (isHsmReturnValue(parsed.rv)) return new HsmError(parsed.rv, message);
    return new HsmError('CKR_DEVICE_ERROR', `unknown reason from the partition: ${message}`);
  } catch {
    return protocolError('unreadable error answer');
  }
}

export const HEADER_LENGTH = HEADER;

/**
 * Splits a byte stream into frame payloads. Frames may span reads and one read may hold many;
 * a frame declared over MAX_FRAME is reported and its payload skipped without being buffered.
 */
export class FrameReader {
  private parts: Buffer[] = [];
  private length = 0;
  /** Octets needed before anything more can be parsed. */
  private needed = 4;
  private skip = 0;
  /** Frames completed so far (the server times each frame from its first octet). */
  completed = 0;

  constructor(private readonly maxFrame = MAX_FRAME) {}

  /** True while a frame has begun but not ended. */
  get partial(): boolean {
    return this.length > 0 || this.skip > 0;
  }

  push(chunk: Buffer, onFrame: (payload: Buffer) => void, onOversized: (declared: number) => void): void {
    if (this.skip > 0) {
      const n = Math.min(this.skip, chunk.length);
      this.skip -= n;
      chunk = chunk.subarray(n);
      if (this.skip === 0) this.completed++;
      if (chunk.length === 0) return;
    }
    this.parts.push(chunk);
    this.length += chunk.length;
    if (this.length < this.needed) return;
    const buffer = this.parts.length === 1 ? this.parts[0]! : Buffer.concat(this.parts, this.length);
    let offset = 0;
    this.needed = 4;
    while (buffer.length - offset >= 4) {
      const declared = buffer.readUInt32BE(offset);
      if (declared > this.maxFrame) {
        onOversized(declared);
        const available = Math.min(declared, buffer.length - offset - 4);
        offset += 4 + available;
        this.skip = declared - available;
        if (this.skip > 0) break;
        this.completed++;
        continue;
      }
      if (buffer.length - offset - 4 < declared) {
        this.needed = 4 + declared;
        break;
      }
      const payload = buffer.subarray(offset + 4, offset + 4 + declared);
      offset += 4 + declared;
      this.completed++;
      onFrame(payload);
    }
    const rest = buffer.subarray(offset);
    this.parts = rest.length > 0 ? [rest] : [];
    this.length = rest.length;
  }
}
