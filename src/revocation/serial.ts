import { AppError } from '../lib/errors.ts';
import { InvalidSerialError, normalizeSerial, serialFromBytes } from '../lib/serial.ts';

/**
 * Serials as revocation reads them, over src/lib/serial.ts (DESIGN.md "Serials": lowercase hex of
 * the INTEGER's content octets; either case, colons and a leading 00 accepted on input).
 */

/**
 * A serial as a revocation request wrote it: src/lib's normalizeSerial, its refusal turned into
 * AppError `revocation.serial_invalid` (400) saying why.
 */
export function parseRevocationSerial(input: unknown): string {
  try {
    return normalizeSerial(input as string);
  } catch (error) {
    if (error instanceof InvalidSerialError) {
      throw new AppError('revocation.serial_invalid', 'invalid', error.message, undefined, { cause: error });
    }
    throw error;
  }
}

/**
 * The canonical serial of an INTEGER's content octets as received in an OCSP CertID, or
 * undefined when that INTEGER is zero, negative or longer than 20 octets: no certificate of
 * Signet's can have it, so such a CertID is answered `unknown` without a lookup.
 */
export function serialFromIntegerContent(content: Uint8Array): string | undefined {
  try {
    return serialFromBytes(content);
  } catch (error) {
    if (error instanceof InvalidSerialError) return undefined;
    throw error;
  }
}
