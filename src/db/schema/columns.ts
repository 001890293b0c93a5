/**
 * Column types shared by the tables. Both drivers must read back exactly what was written:
 * bytea comes back as Uint8Array from PGlite and as Buffer from pg (NOTES.md "Storage"), so it
 * is normalised to a plain Uint8Array; timestamps are kept to milliseconds, the precision of a
 * JavaScript Date, so a value read back compares equal to the one written (keyset cursors and
 * the audit hash chain depend on that).
 */
import { customType, timestamp } from 'drizzle-orm/pg-core';

/** Parses the text form `\x0a1b...` that a driver without a bytea parser hands back. */
function byteaFromText(text: string): Uint8Array {
  if (!text.startsWith('\\x')) throw new Error('unexpected bytea text format (expected hex output)');
  return Uint8Array.from(Buffer.from(text.slice(2), 'hex'));
}

export function toUint8Array(value: Uint8Array | string): Uint8Array {
  if (typeof value === 'string') return byteaFromText(value);
  // A Buffer is a Uint8Array subclass that may share a pooled ArrayBuffer: copy it out.
  if (value.constructor === Uint8Array) return value;
  // The typed-array constructor copies in one block (Uint8Array.from iterates: slow for a CRL of MiBs).
  return new Uint8Array(value);
}

export const bytea = customType<{ data: Uint8Array; driverData: Uint8Array | string }>({
  dataType() {
    return 'bytea';
  },
  toDriver(value) {
    return value;
  },
  fromDriver(value) {
    return toUint8Array(value);
  },
});

/** timestamptz(3): milliseconds, like a JavaScript Date. */
export const timestamptz = (name: string) =>
  timestamp(name, { withTimezone: true, precision: 3, mode: 'date' });
