import { randomBytes, scrypt, timingSafeEqual } from 'node:crypto';
import type { UserRecord } from '../store.ts';
import { HsmError } from '../types.ts';
import { fromBase64 } from './codec.ts';

/**
 * PIN hashes are scrypt (RFC 7914) in the PHC string format, so every record names its own
 * parameters and salt and old records keep verifying after the defaults change:
 * `$scrypt$ln=15,r=8,p=1$<salt>$<hash>` (base64, no padding). ln=15 (N = 32768, 32 MiB) costs
 * about 130 ms here, which with the lockout after a handful of failures makes guessing useless.
 */
export interface PinHashParams {
  /** log2 of scrypt's cost N. */
  ln: number;
  r: number;
  p: number;
}

export const DEFAULT_PIN_HASH: PinHashParams = { ln: 15, r: 8, p: 1 };
export const MIN_PIN_LENGTH = 8;
/** In octets of UTF-8, as the partition's login bounds it. */
export const MAX_PIN_OCTETS = 256;
const SALT_BYTES = 16;
const HASH_BYTES = 32;

function derive(pin: Uint8Array, salt: Uint8Array, { ln, r, p }: PinHashParams): Promise<Buffer> {
  const N = 2 ** ln;
  return new Promise((resolve, reject) => {
    scrypt(pin, salt, HASH_BYTES, { N, r, p, maxmem: 256 * N * r + 1024 * 1024 }, (error, key) =>
      error ? reject(error) : resolve(key),
    );
  });
}

function pinBytes(pin: string | Uint8Array): Buffer {
  return typeof pin === 'string' ? Buffer.from(pin.normalize('NFC'), 'utf8') : Buffer.from(pin);
}

/** PKCS#11's CKR_PIN_LEN_RANGE: a PIN has at least 8 characters and at most 256 octets. */
export function checkPinPolicy(pin: string | Uint8Array): void {
  const characters = typeof pin === 'string' ? [...pin.normalize('NFC')].length : pin.length;
  const octets = typeof pin === 'string' ? Buffer.byteLength(pin.normalize('NFC')) : pin.length;
  if (characters < MIN_PIN_LENGTH || octets > MAX_PIN_OCTETS) {
    throw new HsmError('CKR_PIN_LEN_RANGE', `a PIN has ${MIN_PIN_LENGTH} to ${MAX_PIN_OCTETS} characters`);
  }
}

export async function hashPin(
  pin: string | Uint8Array,
  params: PinHashParams = DEFAULT_PIN_HASH,
): Promise<string> {
  checkPinPolicy(pin);
  const salt = randomBytes(SALT_BYTES);
  const hash = await derive(pinBytes(pin), salt, params);
  const b64 = (bytes: Buffer) => bytes.toString('base64').replace(/=+$/, '');
  return `$scrypt$ln=${params.ln},r=${params.r},p=${params.p}$${b64(salt)}$${b64(hash)}`;
}

interface ParsedHash {
  params: PinHashParams;
  salt: Buffer;
  hash: Buffer;
}

function unpadded(text: string): Buffer {
  return fromBase64(text + '='.repeat((4 - (text.length % 4)) % 4), 'PIN hash');
}

/** Parses a PHC scrypt string with bounded parameters (a tampered record must not cost minutes). */
export function parsePinHash(encoded: string): ParsedHash | undefined {
  const match = /^\$scrypt\$ln=(\d{1,2}),r=(\d{1,2}),p=(\d{1,2})\$([A-Za-z0-9+/]+)\$([A-Za-z0-9+/]+)$/.exec(
    encoded,
  );
  if (!match) return undefined;
  const params = { ln: Number(match[1]), r: Number(match[2]), p: Number(match[3]) };
  // scrypt needs 128 * N * r octets (RFC 7914 §6): refuse anything above 256 MiB.
  if (
    params.ln < 1 ||
    params.r < 1 ||
    params.p < 1 ||
    params.p > 4 ||
    128 * 2 ** params.ln * params.r > 2 ** 28
  ) {
    return undefined;
  }
  try {
    const salt = unpadded(match[4]!);
    const hash = unpadded(match[5]!);
    if (salt.length < 8 || hash.length !== HASH_BYTES) return undefined;
    return { params, salt, hash };
  } catch {
    return undefined;
  }
}

// Verified against when the user is unknown or has no PIN, so that a refusal takes as long as a
// real check and the time taken does not say whether a user exists.
let decoy: Promise<string> | undefined;

/**
 * True when `pin` matches the user's PIN hash. The comparison is constant-time; a user without
 * a PIN (pinHash '') never matches, after the same work as a real check.
 */
export async function verifyPin(
  user: Pick<UserRecord, 'pinHash'> | undefined,
  pin: string | Uint8Array,
): Promise<boolean> {
  const parsed = user ? parsePinHash(user.pinHash) : undefined;
  if (!parsed) {
    decoy ??= hashPin('signet-decoy-pin');
    const fake = parsePinHash(await decoy)!;
    await derive(pinBytes(pin), fake.salt, fake.params);
    return false;
  }
  const candidate = await derive(pinBytes(pin), parsed.salt, parsed.params);
  return timingSafeEqual(candidate, parsed.hash);
}
