/**
 * Opaque keyset cursors: base64url of a small JSON array. Decoding checks the shape strictly, so
 * a damaged or invented cursor is a clear client error, never a query error.
 */
import { InvalidCursorError } from './errors.ts';

const VERSION = 1;

export function encodeCursor(values: (string | number)[]): string {
  return Buffer.from(JSON.stringify([VERSION, ...values]), 'utf8').toString('base64url');
}

/** Decodes a cursor whose values must match `kinds` ('string' | 'number'), else InvalidCursorError. */
export function decodeCursor<const K extends readonly ('string' | 'number')[]>(
  cursor: string,
  kinds: K,
): { [I in keyof K]: K[I] extends 'string' ? string : number } {
  if (
    typeof cursor !== 'string' ||
    cursor.length === 0 ||
    cursor.length > 512 ||
    !/^[A-Za-z0-9_-]+$/.test(cursor)
  ) {
    throw new InvalidCursorError();
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    throw new InvalidCursorError();
  }
  if (!Array.isArray(parsed) || parsed[0] !== VERSION || parsed.length !== kinds.length + 1) {
    throw new InvalidCursorError();
  }
  const values = parsed.slice(1);
  for (const [i, kind] of kinds.entries()) {
    const value = values[i];
    if (kind === 'number' ? !Number.isSafeInteger(value) : typeof value !== 'string' || value.length > 256) {
      throw new InvalidCursorError();
    }
  }
  return values as { [I in keyof K]: K[I] extends 'string' ? string : number };
}
