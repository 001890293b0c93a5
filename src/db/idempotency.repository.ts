/**
 * Idempotency-Key records (IETF httpapi draft "The Idempotency-Key HTTP Header Field"): the first
 * request with a key runs, its response is kept for 24 hours, and a retry with the same key gets
 * that response again. A retry with another body is refused (422), and one that arrives while
 * the first is still running is refused (409). Keys are scoped to the credential that sent them.
 *
 * Crashes (issue #17): an in-flight record names the server instance running it (Database
 * instances), and an issuance links the record to its certificate in the transaction that stores
 * the certificate. A retry whose record's instance is gone recovers the record at once, on any
 * node: it answers with the linked certificate if one was stored, and runs the request again if
 * none was. So a retry after a crash never waits, and never issues a second certificate.
 */
import { and, eq, isNull, lte, sql } from 'drizzle-orm';
import { type Clock, systemClock } from '../lib/clock.ts';
import type { Db } from './database.ts';
import type { InstanceRegistry } from './instances.ts';
import { idempotencyRecords } from './schema/index.ts';
import { checkStorableText } from './text.ts';

export const IDEMPOTENCY_TTL_MS = 24 * 60 * 60 * 1000;
/**
 * An in-flight record older than this is taken over even if its instance still runs (a request
 * that takes this long has long timed out at the client), and records written before owners were
 * recorded are taken over after it.
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
  | { outcome: 'completed'; response: StoredResponse }
  /**
   * The request that held the key died with its instance, and this one holds the key now (then
   * complete() or release() as for 'started'). `certificateSerial` names the certificate it
   * stored: answer with it. Null: nothing was stored, run the request again.
   */
  | { outcome: 'recovered'; certificateSerial: string | null };

/** A stored certificate and the idempotent request it answers. */
export interface IdempotencyLink {
  credentialId: string;
  key: string;
  serial: string;
}

export interface IdempotencyRepository {
  begin(input: { credentialId: string; key: string; requestHash: Uint8Array }): Promise<IdempotencyBegin>;
  /** Stores the response of a started request. False if the record is gone or not in flight. */
  complete(input: { credentialId: string; key: string; response: StoredResponse }): Promise<boolean>;
  /** Forgets an in-flight record of this instance (the request failed before any effect), so a retry runs anew. */
  release(input: { credentialId: string; key: string }): Promise<void>;
  /**
   * Inside the transaction that stores certificates: links each to the in-flight record of the
   * request that asked for it (when this instance still holds that record).
   */
  linkWithin(tx: Db, links: IdempotencyLink[]): Promise<void>;
  /** Deletes expired records; returns how many. */
  purgeExpired(): Promise<number>;
}

const MAX_KEY_LENGTH = 255;

// biome-ignore lint/complexity/noExcessiveLinesPerFunction: a repository factory: one short method per query over the same handle
export function createIdempotencyRepository({
  db,
  instances,
  clock = systemClock,
  ttlMs = IDEMPOTENCY_TTL_MS,
  inFlightTimeoutMs = IDEMPOTENCY_IN_FLIGHT_TIMEOUT_MS,
}: {
  db: Db;
  /** Database.instances: who runs an in-flight request, and whether it still runs. */
  instances: Pick<InstanceRegistry, 'self' | 'isAlive'>;
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
      const owner = await instances.self();
      const now = clock.now();
      const fresh = {
        credentialId,
        key,
        requestHash,
        state: 'in_flight' as const,
        responseStatus: null,
        responseHeaders: null,
        responseBody: null,
        owner,
        certificateSerial: null,
        createdAt: now,
        expiresAt: new Date(now.getTime() + ttlMs),
      };
      type Seen = IdempotencyBegin | { outcome: 'held'; owner: string | null; createdAt: Date };
      const seen = await db.transaction(async (tx): Promise<Seen> => {
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
        if (existing.expiresAt.getTime() <= now.getTime()) {
          await tx.update(idempotencyRecords).set(fresh).where(where(credentialId, key));
          return { outcome: 'started' };
        }
        if (!Buffer.from(existing.requestHash).equals(requestHash)) return { outcome: 'mismatch' };
        if (existing.state === 'done') {
          return {
            outcome: 'completed',
            response: {
              status: existing.responseStatus!,
              headers: existing.responseHeaders ?? {},
              body: existing.responseBody!,
            },
          };
        }
        return { outcome: 'held', owner: existing.owner, createdAt: existing.createdAt };
      });
      if (seen.outcome !== 'held') return seen;

      // In flight. Its instance is asked outside the transaction: a PostgreSQL liveness probe
      // takes a pooled connection, which must not wait while this one holds a row lock.
      const timedOut = now.getTime() - seen.createdAt.getTime() >= inFlightTimeoutMs;
      if (!timedOut && (seen.owner === null || (await instances.isAlive(seen.owner)))) {
        return { outcome: 'in_flight' };
      }
      // Take it over unless another retry did first (the owner and start it had are the token).
      const taken = await db
        .update(idempotencyRecords)
        .set({ owner, createdAt: now })
        .where(
          and(
            where(credentialId, key),
            eq(idempotencyRecords.state, 'in_flight'),
            seen.owner === null ? isNull(idempotencyRecords.owner) : eq(idempotencyRecords.owner, seen.owner),
            eq(idempotencyRecords.createdAt, seen.createdAt),
          ),
        )
        .returning({ certificateSerial: idempotencyRecords.certificateSerial });
      if (taken.length !== 1) return { outcome: 'in_flight' };
      return { outcome: 'recovered', certificateSerial: taken[0]!.certificateSerial };
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
      // Only this instance's record: one taken over meanwhile belongs to the retry that took it.
      const owner = await instances.self();
      await db
        .delete(idempotencyRecords)
        .where(
          and(
            where(credentialId, key),
            eq(idempotencyRecords.state, 'in_flight'),
            eq(idempotencyRecords.owner, owner),
          ),
        );
    },

    async linkWithin(tx, links) {
      if (links.length === 0) return;
      const owner = await instances.self();
      const column = (pick: (link: IdempotencyLink) => string) => sql.param(links.map(pick));
      await tx.execute(sql`
        update ${idempotencyRecords} as r
        set certificate_serial = v.serial
        from unnest(
          ${column((link) => link.credentialId)}::text[],
          ${column((link) => link.key)}::text[],
          ${column((link) => link.serial)}::text[]
        ) as v(credential_id, key, serial)
        where r.credential_id = v.credential_id and r.key = v.key
          and r.state = 'in_flight' and r.owner = ${owner}`);
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
