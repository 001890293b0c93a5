/**
 * Idempotency-Key records (IETF httpapi draft "The Idempotency-Key HTTP Header Field"): the first
 * request with a key runs, its response is kept for 24 hours, and a retry with the same key gets
 * that response again. A retry with another body is refused (422), and one that arrives while
 * the first is still running is refused (409). Keys are scoped to the credential that sent them.
 */
import { and, eq, lte } from 'drizzle-orm';
import { type Clock, systemClock } from '../lib/clock.ts';
import type { Db } from './database.ts';
import { idempotencyRecords } from './schema/index.ts';
import { checkStorableText } from './text.ts';

export const IDEMPOTENCY_TTL_MS = 24 * 60 * 60 * 1000;
/**
 * An in-flight record older than this belongs to a request whose process died (a request that
 * takes this long has long timed out at the client), so a retry may take it over.
 */
export const IDEMPOTENCY_IN_FLIGHT_TIMEOUT_MS = 5 * 60 * 1000;

export interface StoredResponse {
  status: number;
  headers: Record<string, string>;
  body: Uint8Array;
}

export type IdempotencyBegin =
  /** Go ahead, then call complete() or release(). */
  | { outcome: 'started' }
  /** The first request with this key is still running (409). */
  | { outcome: 'in_flight' }
  /** The key was used with another request (422). */
  | { outcome: 'mismatch' }
  /** Answer with the stored response. */
  | { outcome: 'completed'; response: StoredResponse };

export interface IdempotencyRepository {
  begin(input: { credentialId: string; key: string; requestHash: Uint8Array }): Promise<IdempotencyBegin>;
  /** Stores the response of a started request. False if the record is gone or not in flight. */
  complete(input: { credentialId: string; key: string; response: StoredResponse }): Promise<boolean>;
  /** Forgets an in-flight record (the request failed before any effect), so a retry runs anew. */
  release(input: { credentialId: string; key: string }): Promise<void>;
  /** Deletes expired records; returns how many. */
  purgeExpired(): Promise<number>;
}

const MAX_KEY_LENGTH = 255;

export function createIdempotencyRepository({
  db,
  clock = systemClock,
  ttlMs = IDEMPOTENCY_TTL_MS,
  inFlightTimeoutMs = IDEMPOTENCY_IN_FLIGHT_TIMEOUT_MS,
}: {
  db: Db;
  clock?: Clock;
  ttlMs?: number;
  inFlightTimeoutMs?: number;
}) {
  const where = (credentialId: string, key: string) =>
    and(eq(idempotencyRecords.credentialId, credentialId), eq(idempotencyRecords.key, key));

  const repository: IdempotencyRepository = {
    async begin({ credentialId, key, requestHash }) {
      checkStorableText('credentialId', credentialId);
      checkStorableText('idempotency key', key, MAX_KEY_LENGTH);
      if (key.length === 0) throw new TypeError('an idempotency key must not be empty');
      if (!(requestHash instanceof Uint8Array)) throw new TypeError('requestHash must be bytes');
      const now = clock.now();
      const fresh = {
        credentialId,
        key,
        requestHash,
        state: 'in_flight' as const,
        responseStatus: null,
        responseHeaders: null,
        responseBody: null,
        createdAt: now,
        expiresAt: new Date(now.getTime() + ttlMs),
      };
      return db.transaction(async (tx): Promise<IdempotencyBegin> => {
        const inserted = await tx
          .insert(idempotencyRecords)
          .values(fresh)
          .onConflictDoNothing()
          .returning({ key: idempotencyRecords.key });
        if (inserted.length === 1) return { outcome: 'started' };
        // Someone holds the key: lock the record so that only one retry can take it over.
        const [existing] = await tx
          .select()
          .from(idempotencyRecords)
          .where(where(credentialId, key))
          .for('update');
        if (!existing) return { outcome: 'in_flight' }; // deleted under us: the caller may retry
        const expired = existing.expiresAt.getTime() <= now.getTime();
        const abandoned =
          existing.state === 'in_flight' && now.getTime() - existing.createdAt.getTime() >= inFlightTimeoutMs;
        if (expired || (abandoned && Buffer.from(existing.requestHash).equals(requestHash))) {
          await tx.update(idempotencyRecords).set(fresh).where(where(credentialId, key));
          return { outcome: 'started' };
        }
        if (!Buffer.from(existing.requestHash).equals(requestHash)) return { outcome: 'mismatch' };
        if (existing.state === 'in_flight') return { outcome: 'in_flight' };
        return {
          outcome: 'completed',
          response: {
            status: existing.responseStatus!,
            headers: existing.responseHeaders ?? {},
            body: existing.responseBody!,
          },
        };
      });
    },

    async complete({ credentialId, key, response }) {
      const rows = await db
        .update(idempotencyRecords)
        .set({
          state: 'done',
          responseStatus: response.status,
          responseHeaders: response.headers,
          responseBody: response.body,
        })
        .where(and(where(credentialId, key), eq(idempotencyRecords.state, 'in_flight')))
        .returning({ key: idempotencyRecords.key });
      return rows.length === 1;
    },

    async release({ credentialId, key }) {
      await db
        .delete(idempotencyRecords)
        .where(and(where(credentialId, key), eq(idempotencyRecords.state, 'in_flight')));
    },

    async purgeExpired() {
      const rows = await db
        .delete(idempotencyRecords)
        .where(lte(idempotencyRecords.expiresAt, clock.now()))
        .returning({ key: idempotencyRecords.key });
      return rows.length;
    },
  };
  return repository;
}
