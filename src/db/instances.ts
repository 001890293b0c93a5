/**
 * Which server instances are alive (issue #17). Work in flight is recorded with the id of the
 * instance doing it (an idempotency record, later other claims); when that instance is gone, the
 * work can be recovered at once instead of after a timeout.
 *
 * - PostgreSQL: an instance holds a session advisory lock named after its id on a connection of
 *   its own for as long as it runs. PostgreSQL drops the lock with the session, so a killed
 *   process, a lost machine or a closed database frees it; another node that can take the lock
 *   (and releases it at once) knows the instance is gone. Any number of nodes share one database.
 * - PGlite: one process holds the data folder (the lock file), so every instance other than the
 *   current one is an earlier process that has ended.
 */
import { randomUUID } from 'node:crypto';
import pg from 'pg';

export interface InstanceRegistry {
  /**
   * This instance's id. Resolves once the instance is known to be alive to every other node
   * (PostgreSQL: its lock is held); record work under it only after that.
   */
  self(): Promise<string>;
  /** Whether the instance that recorded `id` still runs. */
  isAlive(id: string): Promise<boolean>;
  close(): Promise<void>;
}

const lockName = (id: string) => `signet:instance:${id}`;

/** PGlite: the process holding the data folder is the only live instance. */
export function createEmbeddedInstances(): InstanceRegistry {
  const id = randomUUID();
  return {
    self: async () => id,
    isAlive: async (other) => other === id,
    close: async () => {},
  };
}

export interface PostgresInstanceOptions {
  /** The connection string; the lock lives on a connection of its own, outside the pool. */
  url: string;
  /** Tries the lock of another instance (and releases it at once): Database.withAdvisoryLock. */
  tryLock: (name: string) => Promise<boolean>;
  onError?: (error: Error) => void;
}

/**
 * PostgreSQL: the lock is taken on the first `self()`, so commands that never record work in
 * flight open no extra connection. If the connection drops, the next `self()` takes the lock
 * again (waiting out another node's brief probe of it).
 */
export function createPostgresInstances({
  url,
  tryLock,
  onError,
}: PostgresInstanceOptions): InstanceRegistry {
  const id = randomUUID();
  let held: Promise<pg.Client> | undefined;
  let closed = false;

  async function lock(): Promise<pg.Client> {
    const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 10_000 });
    const attempt = held;
    // A lost connection lost the lock: the next self() takes it again.
    const lost = () => {
      if (held === attempt) held = undefined;
      client.end().catch(() => {});
    };
    client.on('error', (error) => {
      onError?.(error);
      lost();
    });
    client.on('end', lost);
    try {
      await client.connect();
      await client.query('select pg_advisory_lock(hashtextextended($1, 0))', [lockName(id)]);
    } catch (error) {
      lost();
      throw error;
    }
    return client;
  }

  function hold(): Promise<pg.Client> {
    if (!held) {
      held = Promise.resolve().then(lock);
    }
    return held;
  }

  return {
    async self() {
      if (closed) throw new Error('the database is closed');
      await hold();
      return id;
    },
    async isAlive(other) {
      if (other === id) return true;
      // Taking the lock means nobody holds it: the instance is gone. withAdvisoryLock releases it.
      return !(await tryLock(lockName(other)));
    },
    async close() {
      closed = true;
      const client = await held?.catch(() => undefined);
      held = undefined;
      await client?.end().catch(() => {});
    },
  };
}
