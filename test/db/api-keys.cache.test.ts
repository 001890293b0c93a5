import { sql } from 'drizzle-orm';
import { afterEach, beforeEach, expect, test } from 'vitest';
import { type CachedApiKeys, createCachedApiKeysRepository } from '../../src/db/api-keys.cache.ts';
import { createApiKeysRepository, hashApiKeySecret } from '../../src/db/api-keys.repository.ts';
import { openDatabase } from '../../src/db/database.ts';
import { apiKeys } from '../../src/db/schema/index.ts';
import { describeEachDatabase } from '../helpers/database.ts';
import { manualClock } from './builders.ts';

const secret = 'sk-test-0a1b2c3d4e5f60718293a4b5c6d7e8f9';
const hash = hashApiKeySecret(secret);

async function until(condition: () => Promise<boolean>, what: string, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

describeEachDatabase('the API keys cache', (getDatabase) => {
  let clock: ReturnType<typeof manualClock>;
  let caches: CachedApiKeys[] = [];
  const cache = async (database = getDatabase().database) => {
    const made = await createCachedApiKeysRepository({
      repository: createApiKeysRepository({ db: database.db, clock }),
      database,
      clock,
    });
    caches.push(made);
    return made;
  };

  beforeEach(async () => {
    clock = manualClock();
    caches = [];
    await createApiKeysRepository({ db: getDatabase().db, clock }).create({
      id: 'k_1',
      secretSha256: hash,
      roles: ['issuer'],
      policies: ['web-server'],
      expiresAt: new Date(clock.now().getTime() + 60_000),
    });
  });
  afterEach(async () => {
    for (const made of caches) await made.close();
  });

  test('a verified key is answered from memory: the database is not read again', async () => {
    const keys = await cache();
    expect((await keys.verify('k_1', hash)).ok).toBe(true);
    // Changed behind the cache's back (no notification): the cached record still answers.
    await getDatabase()
      .db.update(apiKeys)
      .set({ roles: ['auditor'] });
    const again = await keys.verify('k_1', hash);
    expect(again.ok && again.key.roles).toEqual(['issuer']);
  });

  test('a wrong secret is refused from the cache as from the database', async () => {
    const keys = await cache();
    await keys.verify('k_1', hash);
    expect(await keys.verify('k_1', hashApiKeySecret('another'))).toEqual({ ok: false, reason: 'mismatch' });
    expect(await keys.verify('k_2', hash)).toEqual({ ok: false, reason: 'unknown' });
  });

  test('a cached key expires on time, without the database', async () => {
    const keys = await cache();
    expect((await keys.verify('k_1', hash)).ok).toBe(true);
    clock.advance(60_000);
    expect(await keys.verify('k_1', hash)).toEqual({ ok: false, reason: 'expired' });
  });

  test('a key revoked through one cache is refused by it at once', async () => {
    const keys = await cache();
    await keys.verify('k_1', hash);
    expect(await keys.revoke('k_1')).toBe(true);
    expect(await keys.verify('k_1', hash)).toEqual({ ok: false, reason: 'revoked' });
  });

  test('a key revoked through one cache is dropped by another (another worker or node)', async () => {
    const { kind, target } = getDatabase();
    // On PostgreSQL the other cache has its own database handle, as another process would.
    const other =
      kind === 'postgres' ? await openDatabase(target, { migrate: false }) : getDatabase().database;
    try {
      const here = await cache();
      const there = await cache(other);
      expect((await there.verify('k_1', hash)).ok).toBe(true);
      await here.revoke('k_1');
      await until(async () => !(await there.verify('k_1', hash)).ok, 'the other cache to refuse the key');
      expect(await there.verify('k_1', hash)).toEqual({ ok: false, reason: 'revoked' });
    } finally {
      for (const made of caches.splice(0)) await made.close();
      if (other !== getDatabase().database) await other.close();
    }
  });

  test('while the listening connection is lost the cache is bypassed, and used again once back', async (ctx) => {
    const { kind, target } = getDatabase();
    // PGlite notifies in-process: its listener cannot be lost.
    if (kind !== 'postgres') ctx.skip();
    const database = await openDatabase(target, { migrate: false });
    try {
      const keys = await cache(database);
      await keys.verify('k_1', hash);
      expect(keys.caching).toBe(true);
      await getDatabase().db.execute(
        sql`select pg_terminate_backend(pid) from pg_stat_activity where query ilike 'listen%' and pid <> pg_backend_pid()`,
      );
      await until(async () => !keys.caching, 'the cache to notice the lost connection');
      // Revoked behind its back with no notification: a bypassed cache reads the database.
      await getDatabase().db.update(apiKeys).set({ revokedAt: clock.now() });
      expect(await keys.verify('k_1', hash)).toEqual({ ok: false, reason: 'revoked' });
      await until(async () => keys.caching, 'the listening connection to come back');
    } finally {
      for (const made of caches.splice(0)) await made.close();
      await database.close();
    }
  });
});
