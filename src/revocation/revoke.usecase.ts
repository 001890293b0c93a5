import type { Clock } from '../lib/clock.ts';
import { AppError } from '../lib/errors.ts';
import { parseRevocationReason, type RevocationReason } from './reasons.ts';
import { parseRevocationSerial } from './serial.ts';

/**
 * The revoke rule (issue #11), for `POST /v1/certificates/{serial}/revoke`, `signet revoke` and
 * revocation by key possession:
 *
 * - a certificate that is not revoked is revoked now, with the reason and optional invalidityDate;
 * - revoking it again returns the existing revocation unchanged, whatever the reason asked,
 *   except that keyCompromise replaces another reason (CA/B Forum BR §4.9.1.1; RFC 5280 §5.3.1):
 *   the revocation date stays, the compromise date may be given as invalidityDate;
 * - certificateHold and removeFromCRL are refused (reasons.ts).
 *
 * The repository applies the rule atomically (src/db certificates.repository `revoke`, a row lock),
 * so concurrent revocations of one certificate cannot both "win". A change notifies the listeners:
 * the CRL scheduler (a CRL within the debounce delay) and any OCSP cache.
 */

export type RevokeOutcome = 'revoked' | 'unchanged' | 'reason_updated';

export interface RevocationRecord {
  /** Canonical serial. */
  serial: string;
  issuerId: string;
  /** The CRL shard that lists it (0 when unsharded or unknown). */
  crlShard?: number;
  revokedAt: Date;
  reason: RevocationReason;
  invalidityDate: Date | null;
}

export interface RevokeResult {
  outcome: RevokeOutcome;
  revocation: RevocationRecord;
}

/** The certificates repository's `revoke` (src/db/certificates.repository.ts). */
export interface RevocationRepository {
  /** Throws a `certificate.not_found` error for a serial never issued (or a failed reservation). */
  revoke(
    serial: string,
    request: { reason: RevocationReason; revokedAt: Date; invalidityDate?: Date | null },
  ): Promise<RevokeResult>;
}

export interface RevokeInput {
  /** As the user wrote it (DESIGN.md "Serials"). */
  serial: string;
  /** An RFC 5280 reason name. */
  reason: unknown;
  /** RFC 3339 text or a Date; not in the future. */
  invalidityDate?: string | Date | null;
}

export type RevocationListener = (result: RevokeResult) => void | Promise<void>;

export interface RevokeUseCase {
  revoke(input: RevokeInput): Promise<RevokeResult>;
}

/**
 * The earliest invalidityDate accepted. No X.509 validity begins before 1950 (RFC 5280 §4.1.2.5.1
 * UTCTime), so no key of a certificate can have been compromised earlier; and an earlier year,
 * read back from the database, lands in another century (0001 as 2001), which must never be
 * confirmed as stored (issue #19).
 */
export const EARLIEST_INVALIDITY_DATE = new Date('1950-01-01T00:00:00Z');

/** RFC 3339 §5.6 date-time, with an optional fraction and a Z or numeric offset. */
const RFC3339 = /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$/;

/**
 * Parses an invalidityDate (RFC 5280 §5.3.2: when the key is known or suspected to have been
 * compromised) to whole seconds. Throws AppError `revocation.invalidity_date_invalid` (400).
 */
export function parseInvalidityDate(value: unknown, now: Date): Date {
  let date: Date;
  if (value instanceof Date) date = value;
  else if (typeof value === 'string' && RFC3339.test(value)) {
    const [, y, mo, d, h, mi, s] = RFC3339.exec(value)!.map(Number) as number[];
    date = new Date(value);
    // Date accepts 2026-02-30 and 24:00:00 by rolling over; RFC 3339 does not.
    const offsetText = value.slice(19).replace(/^\.\d+/, '');
    const local = new Date(date.getTime() + offsetMinutes(offsetText) * 60_000);
    if (
      local.getUTCFullYear() !== y ||
      local.getUTCMonth() + 1 !== mo ||
      local.getUTCDate() !== d ||
      local.getUTCHours() !== h ||
      local.getUTCMinutes() !== mi ||
      local.getUTCSeconds() !== s
    ) {
      throw invalidDate(`invalidityDate "${value}" is not a valid date and time`);
    }
  } else {
    throw invalidDate('invalidityDate must be an RFC 3339 date-time such as 2026-03-01T12:00:00Z');
  }
  if (Number.isNaN(date.getTime())) throw invalidDate('invalidityDate is not a valid date');
  const whole = new Date(Math.floor(date.getTime() / 1000) * 1000);
  if (whole.getTime() < EARLIEST_INVALIDITY_DATE.getTime()) {
    throw invalidDate('invalidityDate is before 1950-01-01T00:00:00Z, earlier than any certificate');
  }
  if (whole.getTime() > now.getTime()) {
    throw invalidDate(
      'invalidityDate is in the future: it says when the key was compromised, which has happened',
    );
  }
  return whole;
}

function offsetMinutes(text: string): number {
  if (text === 'Z' || text === 'z') return 0;
  const sign = text.startsWith('-') ? -1 : 1;
  const [hours, minutes] = text.slice(1).split(':').map(Number) as [number, number];
  return sign * (hours * 60 + minutes);
}

function invalidDate(message: string): AppError {
  return new AppError('revocation.invalidity_date_invalid', 'invalid', message);
}

export function createRevokeUseCase({
  certificates,
  clock,
  listeners = [],
  onListenerError,
}: {
  certificates: RevocationRepository;
  clock: Clock;
  /** Told of every revocation that changed something (not of `unchanged`). */
  listeners?: RevocationListener[];
  /** A listener failure never undoes a committed revocation; it is reported here. */
  onListenerError?: (error: unknown, result: RevokeResult) => void;
}): RevokeUseCase {
  return {
    async revoke(input) {
      const serial = parseRevocationSerial(input.serial);
      const reason = parseRevocationReason(input.reason);
      const now = clock.now();
      const invalidityDate =
        input.invalidityDate === undefined || input.invalidityDate === null
          ? null
          : parseInvalidityDate(input.invalidityDate, now);
      // Whole seconds: the time stored is the time CRLs and OCSP responses will carry.
      const revokedAt = new Date(Math.floor(now.getTime() / 1000) * 1000);
      const result = await certificates.revoke(serial, { reason, revokedAt, invalidityDate });
      if (result.outcome !== 'unchanged') {
        for (const listener of listeners) {
          try {
            await listener(result);
          } catch (error) {
            onListenerError?.(error, result);
          }
        }
      }
      return result;
    },
  };
}
