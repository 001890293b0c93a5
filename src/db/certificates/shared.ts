/** What the certificates repositories share: column sets, argument checks and limits. */
import { getTableColumns, sql } from 'drizzle-orm';
import { certificates, type RevocationReason } from '../schema/index.ts';

export const DEFAULT_LIMIT = 50;
export const MAX_LIMIT = 1000;
/** Rows per INSERT/UPDATE statement in batches; keeps parameters far below PostgreSQL's 65535. */
export const BATCH_CHUNK = 500;

const { der: _der, ...columnsWithoutDer } = getTableColumns(certificates);
/** Every column but the DER: what lists return. */
export const summaryColumns = columnsWithoutDer;

export const crlEntryColumns = {
  serial: certificates.serial,
  revokedAt: sql<Date>`${certificates.revokedAt}`.mapWith(certificates.revokedAt),
  reason: sql<RevocationReason>`${certificates.revocationReason}`,
  invalidityDate: certificates.invalidityDate,
  changedAt: certificates.statusChangedAt,
};

export function bySerial(a: { serial: string }, b: { serial: string }): number {
  return a.serial < b.serial ? -1 : a.serial > b.serial ? 1 : 0;
}

export function hex(bytes: Uint8Array | null | undefined): string | null {
  return bytes == null ? null : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
}

export function checkDigest(name: string, value: Uint8Array): void {
  if (!(value instanceof Uint8Array) || value.length !== 32) throw new TypeError(`${name} must be 32 octets`);
}

export function checkDate(name: string, value: Date): void {
  if (!(value instanceof Date) || Number.isNaN(value.getTime()))
    throw new TypeError(`${name} must be a valid Date`);
}

export function checkOneOf<T extends string>(name: string, value: T, allowed: readonly T[]): void {
  if (!allowed.includes(value)) throw new TypeError(`unknown ${name} ${JSON.stringify(value)}`);
}

export function clampLimit(limit: number | undefined, max = MAX_LIMIT): number {
  if (limit === undefined) return DEFAULT_LIMIT;
  if (!Number.isInteger(limit) || limit < 1) throw new TypeError('limit must be a positive integer');
  return Math.min(limit, max);
}
