/**
 * CRL numbers (RFC 5280 §5.2.3): "a monotonically increasing sequence number for a given CRL
 * scope and CRL issuer", at most 20 octets. Relying parties use it to tell a newer CRL from an
 * older one; a number that repeats with different contents makes two CRLs indistinguishable.
 *
 * A counter kept only in the database repeats after a restore from backup: the CA publishes N+1
 * again with different entries. A number taken only from the clock repeats or goes backwards when
 * the clock is stepped back (NTP correction, a node with a skewed clock) or when two CRLs are made
 * within one tick. So the number is the larger of the two (Boulder's crl-updater uses the
 * thisUpdate in nanoseconds; we add the stored guard):
 *
 *   number = max(stored + 1, milliseconds since the epoch x 1e6)
 *
 * After a restore, the clock has moved past every number issued before (as long as the clock was
 * never far ahead); after a clock step back, the stored number keeps it increasing (as long as the
 * database was not restored at the same moment). Both guards must fail together to repeat a
 * number. Nanosecond units (at millisecond precision) keep the values Boulder-shaped and leave a
 * million numbers per millisecond of headroom for the stored guard; they need 8 octets until the
 * year 2262, far under the 20-octet limit.
 */

import { CRL_NUMBER_MAX } from '../x509/crl-encoder.ts';

export { CRL_NUMBER_MAX };

export function timeDerivedCrlNumber(at: Date): bigint {
  const ms = at.getTime();
  if (!Number.isFinite(ms) || ms < 0) throw new RangeError('a CRL number needs a time after 1970');
  return BigInt(ms) * 1_000_000n;
}

export function nextCrlNumber({ now, previous }: { now: Date; previous?: bigint | undefined }): bigint {
  const fromTime = timeDerivedCrlNumber(now);
  const next = previous !== undefined && previous + 1n > fromTime ? previous + 1n : fromTime;
  if (next > CRL_NUMBER_MAX) throw new RangeError('CRL number exceeds 20 octets');
  return next;
}
