/**
 * Opens Signet's database: embedded PGlite in the data folder (the default), or PostgreSQL when a
 * URL is given (DATABASE_URL). Migrations from migrations/ are applied on every open, under a
 * PostgreSQL advisory lock so that several nodes starting together migrate once.
 */
import { chmod, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { PGlite } from '@electric-sql/pglite';
import { type SQL, sql } from 'drizzle-orm';
import { drizzle as drizzleNodePg, NodePgSession, NodePgTransaction } from 'drizzle-orm/node-postgres';
import { migrate as migrateNodePg } from 'drizzle-orm/node-postgres/migrator';
import type { PgDatabase, PgQueryResultHKT } from 'drizzle-orm/pg-core';
import { drizzle as drizzlePglite } from 'drizzle-orm/pglite';
import { migrate as migratePglite } from 'drizzle-orm/pglite/migrator';
import pg from 'pg';
import { isConnectionFailure } from '../lib/errors.ts';
import { createEmbeddedInstances, createPostgresInstances, type InstanceRegistry } from './instances.ts';
import { acquireLockFile, type LockFile } from './lock-file.ts';
import { PgliteThreadClient } from './pglite-client.ts';
import * as schema from './schema/index.ts';

export type Schema = typeof schema;
/**
 * A database handle or a transaction on one: repositories accept either, so work that must commit
 * together builds its repositories over the transaction (`db.transaction(async (tx) =>
 * createAuditRepository({ db: tx, ... }))`). Inside a transaction, use only the transaction: on
 * PGlite (one connection) a query on the outer handle waits for the transaction to end, forever.
 */
export type Db = PgDatabase<PgQueryResultHKT, Schema>;
export type Dialect = 'pglite' | 'postgres';

export type DatabaseTarget = { dataDir: string } | { url: string };

export interface OpenDatabaseOptions {
  /** Apply pending migrations (default true). */
  migrate?: boolean;
  /** PostgreSQL only: the pool size (default 10). */
  poolSize?: number;
  /** PostgreSQL only: errors of idle pooled connections (the pool drops them either way). */
  onPoolError?: (error: Error) => void;
  /** Where the migrations are (default: the repository's migrations/). */
  migrationsFolder?: string;
  /**
   * Called once this process may use the database, before the slow part of opening it: at once
   * for PostgreSQL, once the lock file is held for the embedded database. Work that must not run
   * beside another process on the same data folder (spawning its partition) starts here.
   */
  whileOpening?: () => void;
  /**
   * Embedded database only: its thread died (src/db/pglite-client.ts). Every statement in flight
   * and every later one fails with `error`. By default the error is thrown out of the event loop:
   * the process ends, loudly, rather than serving on without its database.
   */
  onFatal?: (error: Error) => void;
}

function failLoudly(error: Error): void {
  process.nextTick(() => {
    throw error;
  });
}

export interface Database {
  readonly db: Db;
  readonly dialect: Dialect;
  /** Where it lives, without credentials: `pglite:/data/db` or `postgres://host:port/name`. */
  readonly description: string;
  /**
   * This server instance's id and whether other instances are alive (src/db/instances.ts): work
   * in flight is recorded under an instance and recovered at once when that instance is gone.
   */
  readonly instances: InstanceRegistry;
  /** A cheap round trip, for readiness probes. */
  ping(): Promise<void>;
  /**
   * Runs `fn` while holding the named advisory lock (e.g. `crl-writer:dev-intermediate`), which
   * excludes every other holder of that name on every node sharing the database. With
   * `wait: false` (the default) it returns `{ acquired: false }` at once if someone holds it.
   */
  withAdvisoryLock<T>(
    name: string,
    fn: () => Promise<T>,
    options?: { wait?: boolean },
  ): Promise<{ acquired: true; value: T } | { acquired: false }>;
  /**
   * Sends `payload` to every listener of `channel` on every node (PostgreSQL NOTIFY), after the
   * surrounding transaction commits. For cache invalidation (e.g. an OCSP response after a
   * revocation). Payloads are at most 7999 bytes.
   */
  notify(channel: string, payload: string): Promise<void>;
  /**
   * Calls `handler(payload)` for each notification on `channel`. After the listening connection
   * was lost and re-established, `handler(null)` says that notifications may have been missed:
   * drop whatever they would have invalidated. `onLost` is called as soon as the listening
   * connection is lost (a cache stops trusting itself until `handler(null)`). Returns a function
   * that stops listening.
   */
  // OCSP (issue #27) listens on OCSP_INVALIDATION_CHANNEL (src/db/ocsp-responses.repository.ts),
  // whose revocations notify inside their own transaction (pg_notify, delivered at commit).
  listen(
    channel: string,
    handler: (payload: string | null) => void,
    options?: ListenOptions,
  ): Promise<() => Promise<void>>;
  close(): Promise<void>;
}

export interface ListenOptions {
  /** The listening connection was lost: notifications may be missed until `handler(null)`. */
  onLost?: () => void;
}

/** Channel names are SQL identifiers: keep them plain so they never need quoting. */
const CHANNEL = /^[a-z_][a-z0-9_]{0,62}$/;

function checkChannel(channel: string): void {
  if (!CHANNEL.test(channel)) throw new TypeError(`channel ${JSON.stringify(channel)} must match ${CHANNEL}`);
}

/** PostgreSQL refuses NOTIFY payloads of 8000 bytes or more. */
function checkPayload(payload: string): void {
  if (typeof payload !== 'string' || Buffer.byteLength(payload) >= 8000) {
    throw new TypeError('a notification payload is a string under 8000 bytes');
  }
}

export const DEFAULT_MIGRATIONS_FOLDER = fileURLToPath(new URL('../../migrations', import.meta.url));

/** The name under which migrations are serialised across nodes. */
const MIGRATION_LOCK = 'signet:migrations';
/** How long a node waits for another node's migrations before giving up with an error. */
const MIGRATION_LOCK_TIMEOUT = '120s';

/** The PGlite folder and its lock file inside a Signet data folder (DESIGN.md "Data folder"). */
export function embeddedPaths(dataDir: string): { dbDir: string; lockPath: string } {
  return { dbDir: join(dataDir, 'db'), lockPath: join(dataDir, 'db.lock') };
}

export async function openDatabase(
  target: DatabaseTarget,
  options: OpenDatabaseOptions = {},
): Promise<Database> {
  if ('url' in target) {
    options.whileOpening?.();
    return openPostgres(target.url, options);
  }
  return openPglite(target.dataDir, options);
}

async function openPglite(dataDir: string, options: OpenDatabaseOptions): Promise<Database> {
  const { dbDir, lockPath } = embeddedPaths(dataDir);
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  const lock: LockFile = await acquireLockFile(lockPath);
  let client: PgliteThreadClient | undefined;
  try {
    options.whileOpening?.();
    // The database holds API key hashes and every certificate: only its owner may enter the
    // folder, whatever the files inside are created with (issue #17).
    await mkdir(dbDir, { recursive: true, mode: 0o700 });
    await chmod(dbDir, 0o700);
    // PGlite touches all of shared_buffers when it opens: PostgreSQL's default 128 MB was about
    // 110 MB of the server's resident memory before a single query (issue #24). The embedded
    // default serves a team's few thousand certificates, which fit in 16 MB; beyond that pages
    // come from the operating system's file cache.
    // PGlite runs on a thread of its own (issue #24), so the event loop never waits for it.
    client = await PgliteThreadClient.start(dbDir, {
      postgresqlconf: ['shared_buffers=16MB'],
      onFatal: options.onFatal ?? failLoudly,
    });
    // The thread's client has the part of PGlite's interface that drizzle's session calls.
    const db = drizzlePglite({ client: client as unknown as PGlite, schema }) as unknown as Db;
    if (options.migrate !== false) {
      await withPgliteAdvisoryLock(db, MIGRATION_LOCK, () =>
        migratePglite(db as never, {
          migrationsFolder: options.migrationsFolder ?? DEFAULT_MIGRATIONS_FOLDER,
        }),
      );
    }
    const pglite = client;
    // One process and one connection: in-process callers are serialised by this map, and the
    // lock file keeps other processes out, so advisory locks reduce to an in-process mutex.
    const held = new Set<string>();
    let closed = false;
    return {
      db,
      dialect: 'pglite',
      description: `pglite:${dbDir}`,
      instances: createEmbeddedInstances(),
      async ping() {
        await db.execute(sql`select 1`);
      },
      async withAdvisoryLock(name, fn, { wait = false } = {}) {
        while (held.has(name)) {
          if (!wait) return { acquired: false };
          await new Promise((resolve) => setTimeout(resolve, 10));
        }
        held.add(name);
        try {
          return { acquired: true, value: await fn() };
        } finally {
          held.delete(name);
        }
      },
      async notify(channel, payload) {
        checkChannel(channel);
        checkPayload(payload);
        await db.execute(sql`select pg_notify(${channel}, ${payload})`);
      },
      async listen(channel, handler) {
        checkChannel(channel);
        // One process holds the database, so the connection cannot be lost: no resync signal.
        const unlisten = await pglite.listen(channel, (payload) => handler(payload));
        return async () => {
          if (!closed) await unlisten();
        };
      },
      async close() {
        if (closed) return;
        closed = true;
        try {
          await pglite.close();
        } finally {
          await lock.release();
        }
      },
    };
  } catch (error) {
    await client?.close().catch(() => {});
    await lock.release();
    throw new Error(`cannot open the embedded database in ${dbDir}: ${(error as Error).message}`, {
      cause: error,
    });
  }
}

async function withPgliteAdvisoryLock<T>(db: Db, name: string, fn: () => Promise<T>): Promise<T> {
  await db.execute(sql`select pg_advisory_lock(hashtextextended(${name}, 0))`);
  try {
    return await fn();
  } finally {
    await db.execute(sql`select pg_advisory_unlock(hashtextextended(${name}, 0))`);
  }
}

/** `postgres://user@host:port/name` without the password, for messages and logs. */
export function describePostgresUrl(url: string): string {
  try {
    const parsed = new URL(url);
    parsed.password = '';
    parsed.search = '';
    return parsed.toString();
  } catch {
    return 'postgres://(unparseable URL)';
  }
}

async function openPostgres(url: string, options: OpenDatabaseOptions): Promise<Database> {
  const description = describePostgresUrl(url);
  const pool = new pg.Pool({
    connectionString: url,
    max: options.poolSize ?? 10,
    connectionTimeoutMillis: 10_000,
  });
  // Without a listener, an idle connection dropped by the server would crash the process.
  pool.on('error', (error) => options.onPoolError?.(error));
  // The pool listens for errors only on idle connections. A connection that is checked out but
  // between queries (a transaction awaiting the partition, the CRL writer's advisory lock held
  // while the CRL is made) emits 'error' with no listener when the server goes away, which
  // killed the process on a PostgreSQL restart (issue #29). Its queries fail on their own, and
  // a connection released dead is dropped by the pool; the event is only reported.
  pool.on('connect', (client) => client.on('error', (error) => options.onPoolError?.(error)));
  const db = drizzleNodePg({ client: pool, schema }) as unknown as Db;
  releaseOnFailedBegin(db, pool);
  try {
    if (options.migrate !== false) {
      await withPostgresAdvisoryLock(
        pool,
        MIGRATION_LOCK,
        async (client) => {
          await migrateNodePg(drizzleNodePg({ client }), {
            migrationsFolder: options.migrationsFolder ?? DEFAULT_MIGRATIONS_FOLDER,
          });
        },
        { wait: true, lockTimeout: MIGRATION_LOCK_TIMEOUT },
      );
    } else {
      await pool.query('select 1');
    }
  } catch (error) {
    await pool.end().catch(() => {});
    throw new Error(`cannot open the PostgreSQL database ${description}: ${(error as Error).message}`, {
      cause: error,
    });
  }
  let closed = false;
  const listener = createPostgresListener(url, options.onPoolError);
  const instances = createPostgresInstances({
    url,
    tryLock: async (name) =>
      (await withPostgresAdvisoryLock(pool, name, async () => {}, { wait: false })).acquired,
    ...(options.onPoolError ? { onError: options.onPoolError } : {}),
  });
  return {
    db,
    dialect: 'postgres',
    description,
    instances,
    async ping() {
      await pool.query('select 1');
    },
    async withAdvisoryLock(name, fn, { wait = false } = {}) {
      return withPostgresAdvisoryLock(pool, name, () => fn(), { wait });
    },
    async notify(channel, payload) {
      checkChannel(channel);
      checkPayload(payload);
      await pool.query('select pg_notify($1, $2)', [channel, payload]);
    },
    async listen(channel, handler, listenOptions) {
      checkChannel(channel);
      return listener.add(channel, handler, listenOptions?.onLost);
    },
    async close() {
      if (closed) return;
      closed = true;
      await instances.close();
      await listener.close();
      await pool.end();
    },
  };
}

/**
 * drizzle-orm 0.45's node-postgres transaction sends `begin` before its try/finally: when
 * `begin` fails (the server restarted, the connection died in the pool) the pooled connection is
 * never released, and `pool.end()` then waits for it forever, so the node could not stop after a
 * PostgreSQL restart (issue #29). The same transaction, with the connection released on every
 * path; and a failed rollback no longer hides the error that caused it.
 */
function releaseOnFailedBegin(db: Db, pool: pg.Pool): void {
  type Session = { dialect: unknown; schema: unknown; options: unknown; transaction: unknown };
  const session = (db as unknown as { session: Session }).session;
  const Tx = NodePgTransaction as unknown as new (
    dialect: unknown,
    session: unknown,
    schema: unknown,
  ) => { execute(query: SQL): Promise<unknown>; getTransactionConfigSQL(config: unknown): SQL };
  const Session = NodePgSession as unknown as new (...args: unknown[]) => unknown;
  session.transaction = async (transaction: (tx: unknown) => Promise<unknown>, config?: unknown) => {
    const client = await pool.connect();
    let failure: Error | undefined;
    try {
      const tx = new Tx(
        session.dialect,
        new Session(client, session.dialect, session.schema, session.options),
        session.schema,
      );
      await tx.execute(sql`begin${config ? sql` ${tx.getTransactionConfigSQL(config)}` : undefined}`);
      try {
        const result = await transaction(tx);
        await tx.execute(sql`commit`);
        return result;
      } catch (error) {
        await tx.execute(sql`rollback`).catch((rollback: Error) => {
          failure = rollback;
        });
        throw error;
      }
    } catch (error) {
      failure ??= error as Error;
      throw error;
    } finally {
      // A connection whose statement failed for want of a server is dropped, not pooled again.
      client.release(failure && isConnectionFailure(failure) ? failure : undefined);
    }
  };
}

/**
 * LISTEN needs a connection of its own that stays open. One per database handle, opened on the
 * first listen; if it drops, it is reopened with backoff, every channel is listened to again, and
 * handlers get `null` because notifications sent meanwhile are lost.
 */
function createPostgresListener(url: string, onError: ((error: Error) => void) | undefined) {
  const handlers = new Map<string, Set<(payload: string | null) => void>>();
  const onLost = new Set<() => void>();
  let client: pg.Client | undefined;
  let connecting: Promise<pg.Client> | undefined;
  let closed = false;
  let retryMs = 250;
  let retryTimer: NodeJS.Timeout | undefined;

  const dispatch = (channel: string, payload: string | null) => {
    for (const handler of handlers.get(channel) ?? []) {
      try {
        handler(payload);
      } catch (error) {
        onError?.(error as Error);
      }
    }
  };

  function connect(): Promise<pg.Client> {
    connecting ??= (async () => {
      const next = new pg.Client({ connectionString: url, connectionTimeoutMillis: 10_000 });
      next.on('notification', (message) => dispatch(message.channel, message.payload ?? ''));
      next.on('error', (error) => {
        onError?.(error);
        lost(next);
      });
      next.on('end', () => lost(next));
      await next.connect();
      for (const channel of handlers.keys()) await next.query(`listen ${channel}`);
      client = next;
      retryMs = 250;
      return next;
    })().finally(() => {
      connecting = undefined;
    });
    return connecting;
  }

  function lost(which: pg.Client): void {
    if (client !== which || closed) return;
    client = undefined;
    which.end().catch(() => {});
    for (const notice of onLost) notice();
    const reconnect = () => {
      retryTimer = undefined;
      if (closed || handlers.size === 0) return;
      connect().then(
        () => {
          for (const channel of handlers.keys()) dispatch(channel, null);
        },
        (error: Error) => {
          onError?.(error);
          retryMs = Math.min(retryMs * 2, 30_000);
          retryTimer = setTimeout(reconnect, retryMs);
          retryTimer.unref();
        },
      );
    };
    retryTimer = setTimeout(reconnect, retryMs);
    retryTimer.unref();
  }

  return {
    async add(
      channel: string,
      handler: (payload: string | null) => void,
      lostNotice?: () => void,
    ): Promise<() => Promise<void>> {
      if (closed) throw new Error('the database is closed');
      if (lostNotice) onLost.add(lostNotice);
      const isNew = !handlers.has(channel);
      const set = handlers.get(channel) ?? new Set();
      set.add(handler);
      handlers.set(channel, set);
      const current = client ?? (await connect());
      if (isNew && current === client) await current.query(`listen ${channel}`);
      return async () => {
        if (lostNotice) onLost.delete(lostNotice);
        set.delete(handler);
        if (set.size === 0 && handlers.get(channel) === set) {
          handlers.delete(channel);
          await client?.query(`unlisten ${channel}`).catch(() => {});
        }
      };
    },
    async close() {
      closed = true;
      if (retryTimer) clearTimeout(retryTimer);
      handlers.clear();
      const current = client ?? (await connecting?.catch(() => undefined));
      client = undefined;
      await current?.end().catch(() => {});
    },
  };
}

/**
 * Session-level advisory locks live on one connection: take a dedicated client from the pool,
 * lock on it, run `fn`, unlock. If the connection dies, PostgreSQL drops the lock with it.
 */
async function withPostgresAdvisoryLock<T>(
  pool: pg.Pool,
  name: string,
  fn: (client: pg.PoolClient) => Promise<T>,
  { wait, lockTimeout }: { wait: boolean; lockTimeout?: string },
): Promise<{ acquired: true; value: T } | { acquired: false }> {
  const client = await pool.connect();
  // A connection in an unknown state (a lock statement failed, or the unlock did) is closed, not
  // returned to the pool, so that a lock can never linger on a pooled connection.
  let reusable = true;
  try {
    try {
      if (wait) {
        if (lockTimeout) await client.query(`set lock_timeout = '${lockTimeout}'`);
        await client.query('select pg_advisory_lock(hashtextextended($1, 0))', [name]);
        if (lockTimeout) await client.query('reset lock_timeout');
      } else {
        const { rows } = await client.query<{ locked: boolean }>(
          'select pg_try_advisory_lock(hashtextextended($1, 0)) as locked',
          [name],
        );
        if (!rows[0]?.locked) return { acquired: false };
      }
    } catch (error) {
      reusable = false;
      throw error;
    }
    try {
      return { acquired: true, value: await fn(client) };
    } finally {
      await client.query('select pg_advisory_unlock(hashtextextended($1, 0))', [name]).catch(() => {
        reusable = false;
      });
    }
  } finally {
    client.release(!reusable);
  }
}
