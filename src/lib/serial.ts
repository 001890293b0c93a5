/**
 * Certificate serial numbers as Signet writes and accepts them (DESIGN.md "Serials").
 *
 * The canonical form is the lowercase hexadecimal of the DER INTEGER's content octets, without
 * colons: minimal two's-complement, so a leading `00` appears exactly when the first significant
 * octet has its high bit set (X.690 §8.3.2). On input either case is accepted, with or without
 * colons and with or without a leading `00`. RFC 5280 §4.1.2.2: positive, at most 20 octets.
 */
import { getRandomValues } from 'node:crypto';
import { AppError } from './errors.ts';

/** RFC 5280 §4.1.2.2: conforming CAs MUST NOT use serialNumber values longer than 20 octets. */
export const MAX_SERIAL_OCTETS = 20;

/** Longer input is refused before any work: 20 octets with colons is 59 characters. */
const MAX_INPUT_LENGTH = 128;

const PLAIN_HEX = /^[0-9a-fA-F]+$/;
/** `01:a2:ff`, as openssl prints serials; the first group may be a single digit. */
const COLON_HEX = /^[0-9a-fA-F]{1,2}(?::[0-9a-fA-F]{2})+$/;

export type InvalidSerialReason = 'empty' | 'too_long' | 'not_hex' | 'not_positive';

/** Thrown for input that is not a serial; `code` is stable, `reason` says which rule failed. */
export class InvalidSerialError extends Error {
  readonly code = 'request.serial_invalid';
  constructor(
    readonly reason: InvalidSerialReason,
    message: string,
  ) {
    super(message);
    this.name = 'InvalidSerialError';
  }
}

/** normalizeSerial for a serial a client sent: a bad one is a 400 `request.serial_invalid`. */
export function parseRequestSerial(input: string): string {
  try {
    return normalizeSerial(input);
  } catch (error) {
    if (error instanceof InvalidSerialError)
      throw new AppError(error.code, 'invalid', `Bad serial: ${error.message}.`);
    throw error;
  }
}

/**
 * Turns user input (`00:A1:B2`, `a1b2`, `0x`-less hex in either case) into the canonical form.
 * Throws InvalidSerialError for empty, non-hex, zero or over-long input.
 */
export function normalizeSerial(input: string): string {
  if (typeof input !== 'string') throw new InvalidSerialError('not_hex', 'a serial must be a string');
  const text = input.trim();
  if (text.length === 0) throw new InvalidSerialError('empty', 'the serial is empty');
  if (text.length > MAX_INPUT_LENGTH) {
    throw new InvalidSerialError('too_long', `a serial is at most ${MAX_SERIAL_OCTETS} octets`);
  }
  let hex: string;
  if (PLAIN_HEX.test(text)) hex = text;
  else if (COLON_HEX.test(text)) hex = text.replaceAll(':', '');
  else {
    throw new InvalidSerialError(
      'not_hex',
      'a serial is hexadecimal, optionally with colons between octets (e.g. 01a2ff or 01:a2:ff)',
    );
  }
  const significant = hex.toLowerCase().replace(/^0+/, '');
  if (significant.length === 0) {
    throw new InvalidSerialError('not_positive', 'a serial must be a positive number (RFC 5280 §4.1.2.2)');
  }
  let canonical = significant.length % 2 === 1 ? `0${significant}` : significant;
  // A set high bit would make the INTEGER negative: DER prepends a zero octet (X.690 §8.3.2).
  if (Number.parseInt(canonical[0]!, 16) >= 8) canonical = `00${canonical}`;
  if (canonical.length > MAX_SERIAL_OCTETS * 2) {
    throw new InvalidSerialError(
      'too_long',
      `a serial is at most ${MAX_SERIAL_OCTETS} octets (RFC 5280 §4.1.2.2), including a leading 00`,
    );
  }
  return canonical;
}

/** Whether `value` is already in canonical form (what the database stores). */
export function isCanonicalSerial(value: string): boolean {
  try {
    return normalizeSerial(value) === value;
  } catch {
    return false;
  }
}

/** The DER INTEGER content octets of a serial given in any accepted form. */
export function serialToBytes(serial: string): Uint8Array {
  return Uint8Array.from(Buffer.from(normalizeSerial(serial), 'hex'));
}

/**
 * The canonical form of a serial read from a certificate or CRL (the INTEGER's content octets).
 * Negative or zero values are refused: Signet never issues them.
 */
export function serialFromBytes(contentOctets: Uint8Array): string {
  if (contentOctets.length === 0) throw new InvalidSerialError('empty', 'the serial is empty');
  if ((contentOctets[0]! & 0x80) !== 0) {
    throw new InvalidSerialError('not_positive', 'the serial is negative (RFC 5280 §4.1.2.2)');
  }
  return normalizeSerial(Buffer.from(contentOctets).toString('hex'));
}

/** `01:a2:ff`: the canonical serial with colons between octets, as openssl prints it. */
export function formatSerialWithColons(serial: string): string {
  return normalizeSerial(serial).match(/../g)!.join(':');
}

/**
 * A fresh serial of `randomOctets` CSPRNG octets (default 16, i.e. 128 bits; the CA/Browser Forum
 * Baseline Requirements §7.1 ask for at least 64 bits of CSPRNG output). At most 19 octets so
 * the canonical form, with a possible leading 00, stays within 20 (RFC 5280 §4.1.2.2).
 */
export function generateSerial(randomOctets = 16): string {
  if (!Number.isInteger(randomOctets) || randomOctets < 8 || randomOctets > MAX_SERIAL_OCTETS - 1) {
    throw new RangeError(`randomOctets must be an integer from 8 to ${MAX_SERIAL_OCTETS - 1}`);
  }
  for (;;) {
    const bytes = getRandomValues(new Uint8Array(randomOctets));
    // All-zero output (probability 2^-128 at the default) is not a positive number: draw again.
    if (bytes.some((b) => b !== 0)) return normalizeSerial(Buffer.from(bytes).toString('hex'));
  }
}
