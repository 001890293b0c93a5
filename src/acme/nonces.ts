import { randomBytes } from 'node:crypto';
import type { AcmeRepository } from '../db/acme.repository.ts';
import { createBatcher } from '../lib/batcher.ts';
import type { Clock } from '../lib/clock.ts';

/**
 * Anti-replay nonces (RFC 8555 §6.5). Each is 128 random bits, stored in the database with its
 * expiry so that any node sharing the database accepts it, and deleted as it is used so that it
 * is accepted once. Concurrent requests share one insert and one delete per batch.
 */
export interface NonceService {
  /** A new nonce for Replay-Nonce. */
  issue(): Promise<string>;
  /** True once for a nonce this service (on any node) issued and that has not expired. */
  consume(nonce: string): Promise<boolean>;
}

/** A base64url nonce of 16 random octets: 22 characters. */
const NONCE = /^[A-Za-z0-9_-]{22}$/;

export function createNonceService({
  repository,
  clock,
  lifetimeMs,
}: {
  repository: Pick<AcmeRepository, 'addNonces' | 'takeNonces'>;
  clock: Clock;
  lifetimeMs: number;
}): NonceService {
  if (!Number.isFinite(lifetimeMs) || lifetimeMs <= 0)
    throw new Error('createNonceService: lifetimeMs must be positive');
  const inserts = createBatcher<{ nonce: string; expiresAt: Date }, void>({
    flush: async (items) => {
      await repository.addNonces(items);
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
    async issue() {
      const nonce = randomBytes(16).toString('base64url');
      await inserts.submit({ nonce, expiresAt: new Date(clock.now().getTime() + lifetimeMs) });
      return nonce;
    },
    async consume(nonce) {
      if (!NONCE.test(nonce)) return false;
      return takes.submit(nonce);
    },
  };
}
