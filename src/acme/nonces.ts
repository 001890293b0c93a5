import { randomBytes } from 'node:crypto';
import type { AcmeRepository } from '../db/acme.repository.ts';
import { createBatcher } from '../lib/batcher.ts';
import type { Clock } from '../lib/clock.ts';

/**
 * Anti-replay nonces (RFC 8555 §6.5). Each is 128 random bits, stored in the database with its
 * expiry so that any node sharing the database accepts it, and deleted as it is used so that it
 * is accepted once. Concurrent requests share one insert and one delete per batch.
 *
 * Every ACME answer carries a new nonce, so a client flooding any ACME URL (newNonce, the
 * directory, garbage POSTs) used to add a row per request, kept for the nonce lifetime (issue
 * #34: 1,371 rows in 6 s from one address). Now each client address keeps at most
 * `maxPerClient` unused nonces: after each batch the oldest beyond that are forgotten. A client
 * whose nonce was forgotten gets badNonce with a fresh nonce and retries (RFC 8555 §6.5); only
 * clients sharing the flooding address (its IPv6 /64) can lose theirs.
 */
export interface NonceService {
  /** A new nonce for Replay-Nonce, issued to `client` (addressKey() of its address). */
  issue(client: string): Promise<string>;
  /** True once for a nonce this service (on any node) issued and that has not expired. */
  consume(nonce: string): Promise<boolean>;
}

/** A base64url nonce of 16 random octets: 22 characters. */
const NONCE = /^[A-Za-z0-9_-]{22}$/;

export function createNonceService({
  repository,
  clock,
  lifetimeMs,
  maxPerClient,
}: {
  repository: Pick<AcmeRepository, 'addNonces' | 'takeNonces' | 'trimNonces'>;
  clock: Clock;
  lifetimeMs: number;
  /** Unused nonces kept per client address (acme.maxNoncesPerAddress); the oldest go first. */
  maxPerClient: number;
}): NonceService {
  if (!Number.isFinite(lifetimeMs) || lifetimeMs <= 0)
    throw new Error('createNonceService: lifetimeMs must be positive');
  if (!Number.isInteger(maxPerClient) || maxPerClient < 1)
    throw new Error('createNonceService: maxPerClient must be a positive integer');
  const inserts = createBatcher<{ nonce: string; expiresAt: Date; client: string }, void>({
    flush: async (items) => {
      await repository.addNonces(items);
      await repository.trimNonces(
        items.map((item) => item.client),
        maxPerClient,
      );
      return items.map(() => undefined);
    },
  });
  const takes = createBatcher<string, boolean>({
    flush: async (items) => {
      const taken = await repository.takeNonces([...new Set(items)]);
      // The same nonce twice in one batch: only the first of them wins.
      const granted = new Set<string>();
      return items.map((nonce) => {
        if (!taken.has(nonce) || granted.has(nonce)) return false;
        granted.add(nonce);
        return true;
      });
    },
  });
  return {
    async issue(client) {
      const nonce = randomBytes(16).toString('base64url');
      await inserts.submit({ nonce, expiresAt: new Date(clock.now().getTime() + lifetimeMs), client });
      return nonce;
    },
    async consume(nonce) {
      if (!NONCE.test(nonce)) return false;
      return takes.submit(nonce);
    },
  };
}
