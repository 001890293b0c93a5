import type { Clock } from '../lib/clock.ts';

/**
 * How many OCSP responses a client address may have signed on the spot per minute (requests with
 * a nonce or several CertIDs, issue #27: `ocsp.nonceRateLimit.perMinute`). Without it anyone
 * could make the partition sign, and its audit log grow, at will. Fixed one-minute windows per
 * address key (src/api/client-address.ts `addressKey`).
 */
export interface SigningBudget {
  /** True if `client` may have one more response signed now (and counts it). */
  take(client: string): boolean | Promise<boolean>;
}

export function createSigningBudget({
  perMinute,
  clock,
  maxClients = 100_000,
}: {
  perMinute: number;
  clock: Clock;
  /** Addresses remembered at once; beyond, finished windows are dropped first. */
  maxClients?: number;
}): SigningBudget {
  if (!Number.isInteger(perMinute) || perMinute < 1)
    throw new RangeError('perMinute must be a positive integer');
  const windows = new Map<string, { start: number; count: number }>();
  return {
    take(client) {
      const now = clock.now().getTime();
      let window = windows.get(client);
      if (!window || now - window.start >= 60_000) {
        if (!window && windows.size >= maxClients) {
          for (const [key, value] of windows) if (now - value.start >= 60_000) windows.delete(key);
          // Still full: the oldest entries go (Map order is insertion order).
          while (windows.size >= maxClients) windows.delete(windows.keys().next().value!);
        }
        window = { start: now, count: 0 };
        windows.delete(client);
        windows.set(client, window);
      }
      if (window.count >= perMinute) return false;
      window.count += 1;
      return true;
    },
  };
}

/** One token from a bucket shared by every worker and node (src/db/rate-limits.repository.ts). */
export type TakeToken = (
  client: string,
  perMinute: number,
) => Promise<{ granted: number; retryAfterSeconds: number }>;

/**
 * The same budget on PostgreSQL (issue #29): a token bucket per client address in the database,
 * so the limit holds across a node's HTTP workers and across nodes, not once per process. A
 * refusal is remembered here until the bucket refills, so a client over its budget costs no
 * round trip per request. Fails closed: when the database cannot answer, nothing is signed on
 * the spot (the caller answers with the pre-signed response or tryLater).
 */
export function createSharedSigningBudget({
  perMinute,
  clock,
  takeToken,
  onError,
  maxTracked = 100_000,
}: {
  perMinute: number;
  clock: Clock;
  takeToken: TakeToken;
  onError?: (error: unknown) => void;
  maxTracked?: number;
}): SigningBudget {
  if (!Number.isInteger(perMinute) || perMinute < 1)
    throw new RangeError('perMinute must be a positive integer');
  const refusedUntil = new Map<string, number>();
  return {
    async take(client) {
      const now = clock.now().getTime();
      const until = refusedUntil.get(client);
      if (until !== undefined && until > now) return false;
      refusedUntil.delete(client);
      try {
        const taken = await takeToken(client, perMinute);
        if (taken.granted > 0) return true;
        refusedUntil.set(client, now + taken.retryAfterSeconds * 1000);
        if (refusedUntil.size > maxTracked) refusedUntil.delete(refusedUntil.keys().next().value as string);
        return false;
      } catch (error) {
        onError?.(error);
        return false;
      }
    },
  };
}
