/**
 * API key records held in memory (issue #24): verifying a key on every request was one database
 * round trip per request, the largest single cost of the HTTP path after issuance itself. The
 * secret is still compared in constant time against the stored SHA-256, and revocation and
 * expiry are still checked on every request, against the cached record:
 *
 * - expiry: the record carries `expiresAt`, checked against the clock at each use;
 * - revocation on this process: `revoke` drops the entry before it answers;
 * - revocation on another process or node: `revoke` sends a notification (PostgreSQL NOTIFY, or
 *   PGlite's in-process one) naming the key; every cache listening drops it. While the listening
 *   connection is down, notifications may be lost: the cache is emptied and bypassed (every
 *   request reads the database, as before) until the connection is back, so a revocation is never
 *   missed, only slower to read.
 *
 * Unknown ids are not cached (nothing to remember an attacker's guesses by); a key created after
 * a miss is read on its first use.
 */

import type { Clock } from '../lib/clock.ts';
import type { ApiKeyRecord, ApiKeysRepository } from './api-keys.repository.ts';
import { verifyRecord } from './api-keys.repository.ts';
import type { Database } from './database.ts';

/** The channel on which revocations of API keys are announced to every process and node. */
export const API_KEY_CHANNEL = 'signet_api_keys';

export interface CachedApiKeys extends ApiKeysRepository {
  /** Whether records are served from memory now (false until listening, and while the link is down). */
  readonly caching: boolean;
  /** Forgets one key (another process of this node revoked it). */
  drop(id: string): void;
  close(): Promise<void>;
}

export async function createCachedApiKeysRepository({
  repository,
  database,
  clock,
  announce,
  maxEntries = 10_000,
}: {
  repository: ApiKeysRepository;
  clock: Clock;
  /**
   * Tells the other processes of this node (HTTP workers) and resolves once they have dropped the
   * key, so a revocation is answered only when no worker of the node still accepts the key. Other
   * nodes learn it from the notification.
   */
  announce?: (id: string) => Promise<void>;
  database: Pick<Database, 'notify' | 'listen'>;
  maxEntries?: number;
}): Promise<CachedApiKeys> {
  const records = new Map<string, ApiKeyRecord>();
  let listening = false;
  // Bumped on every invalidation, so a read that started before one does not refill the cache.
  let generation = 0;
  const forget = (id: string | null) => {
    generation += 1;
    if (id === null) records.clear();
    else records.delete(id);
  };
  const unlisten = await database.listen(
    API_KEY_CHANNEL,
    (payload) => {
      // null: the link was re-established and notifications may have been missed meanwhile.
      forget(payload || null);
      listening = true;
    },
    {
      onLost: () => {
        listening = false;
        forget(null);
      },
    },
  );
  listening = true;

  async function lookup(id: string): Promise<ApiKeyRecord | null> {
    const cached = listening ? records.get(id) : undefined;
    if (cached) return cached;
    const before = generation;
    const record = await repository.findById(id);
    if (record && listening && generation === before) {
      if (records.size >= maxEntries) records.delete(records.keys().next().value as string);
      records.set(id, record);
    }
    return record;
  }

  return {
    get caching() {
      return listening;
    },
    create: (input) => repository.create(input),
    findById: (id) => repository.findById(id),
    list: (options) => repository.list(options),
    async revoke(id) {
      forget(id);
      const revoked = await repository.revoke(id);
      forget(id);
      if (revoked) {
        await database.notify(API_KEY_CHANNEL, id);
        await announce?.(id);
      }
      return revoked;
    },
    drop: (id) => forget(id),
    async verify(id, secretSha256) {
      return verifyRecord(await lookup(id), secretSha256, clock.now());
    },
    async close() {
      await unlisten();
      records.clear();
    },
  };
}
