import { AppError } from '../lib/errors.ts';

/** RFC 5280 §4.1.2.2: serial numbers are positive and at most 20 octets. */
export const SERIAL_MAX_OCTETS = 20;

/**
 * A serial as users write it (DESIGN.md "Serials": either case, with or without colons and a
 * leading 00) in its canonical form: lowercase hex of the DER INTEGER's content octets, so a
 * serial whose first octet has the high bit set keeps its leading `00`. Throws AppError
 * `revocation.serial_invalid` (400).
 */
export function normalizeSerial(input: unknown): string {
  if (typeof input !== 'string' || input.length === 0 || input.length > 128) {
    throw invalid('a serial number is lowercase or uppercase hexadecimal, at most 20 octets');
  }
  const hex = input.replaceAll(':', '').toLowerCase();
  if (!/^[0-9a-f]+$/.test(hex)) {
    throw invalid(`serial number "${input.slice(0, 64)}" is not hexadecimal`);
  }
  const canonical = canonicalFromMagnitude(hex);
  if (canonical === undefined) throw invalid('a serial number must be positive (RFC 5280 §4.1.2.2)');
  if (canonical.length / 2 > SERIAL_MAX_OCTETS) {
    throw invalid(`serial number is longer than ${SERIAL_MAX_OCTETS} octets (RFC 5280 §4.1.2.2)`);
  }
  return canonical;
}

/**
 * The canonical serial of an INTEGER's content octets as received in a CertID, or undefined when
 * that INTEGER is zero, negative or longer than 20 octets: no certificate of Signet's can have it,
 * so such a CertID is answered `unknown` without a lookup.
 */
export function serialFromIntegerContent(content: Uint8Array): string | undefined {
  if (content.byteLength === 0 || content[0]! >= 0x80) return undefined;
  const canonical = canonicalFromMagnitude(Buffer.from(content).toString('hex'));
  if (canonical === undefined || canonical.length / 2 > SERIAL_MAX_OCTETS) return undefined;
  return canonical;
}

/** The content octets of a canonical serial (the bytes a DER INTEGER carries). */
export function serialToBytes(serial: string): Uint8Array {
  return Buffer.from(normalizeSerial(serial), 'hex');
}

function canonicalFromMagnitude(hex: string): string | undefined {
  let digits = hex.replace(/^0+/, '');
  if (digits.length === 0) return undefined;
  if (digits.length % 2 === 1) digits = `0${digits}`;
  return Number.parseInt(digits.slice(0, 2), 16) >= 0x80 ? `00${digits}` : digits;
}

function invalid(message: string): AppError {
  return new AppError('revocation.serial_invalid', 'invalid', message);
}
