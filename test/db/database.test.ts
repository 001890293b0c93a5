import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql } from 'drizzle-orm';
import { describe, expect, test } from 'vitest';
import {
  DEFAULT_MIGRATIONS_FOLDER,
  describePostgresUrl,
  embeddedPaths,
  openDatabase,
} from '../../src/db/database.ts';
import { isUniqueViolation, sqlState } from '../../src/db/errors.ts';
import { rowsOf } from '../../src/db/rows.ts';
import { certificates, issuers } from '../../src/db/schema/index.ts';
import { createEmptyPostgresDatabase, describeEachDatabase, postgresAvailable } from '../helpers/database.ts';
import { issuerInput } from './builders.ts';

const migrationCount = JSON.parse(readFileSync(join(DEFAULT_MIGRATIONS_FOLDER, 'meta/_journal.json'), 'utf8'))
  .entries.length as number;

describe('openDatabase with a data folder (PGlite)', () => {
  test('creates DIR/db and DIR/db.lock, applies the migrations, and keeps the data across reopening', async () => {
    const dataDir = join(mkdtempSync(join(tmpdir(), 'signet-fresh-')), 'data');
    try {
      const database = await openDatabase({ dataDir });
      expect(database.dialect).toBe('pglite');
      expect(database.description).toBe(`pglite:${join(dataDir, 'db')}`);
      expect(existsSync(join(dataDir, 'db', 'PG_VERSION'))).toBe(true);
      expect(existsSync(embeddedPaths(dataDir).lockPath)).toBe(true);
      const applied = rowsOf<{ count: number }>(
        await database.db.execute(sql`select count(*)::int as count from drizzle.__drizzle_migrations`),
      );
      expect(applied[0]!.count).toBe(migrationCount);
      await database.db
        .insert(issuers)
        .values({ ...issuerInput(), createdAt: new Date(), updatedAt: new Date() });
      await database.close();
      expect(readdirSync(dataDir).sort()).toEqual(['db']);

      const reopened = await openDatabase({ dataDir });
      try {
        expect(await reopened.db.select({ id: issuers.id }).from(issuers)).toEqual([
          { id: 'dev-intermediate' },
        ]);
        const again = rowsOf<{ count: number }>(
          await reopened.db.execute(sql`select count(*)::int as count from drizzle.__drizzle_migrations`),
        );
        expect(again[0]!.count).toBe(migrationCount);
      } finally {
        await reopened.close();
      }
    } finally {
      rmSync(join(dataDir, '..'), { recursive: true, force: true });
    }
  });
});

describeEachDatabase('a database', (getDatabase) => {
  test('reads bytea back as a plain Uint8Array with the same bytes', async () => {
    const der = Uint8Array.from([0x30, 0x00, 0xff, 0x00, 0x7f]);
    const { db } = getDatabase();
    await db
      .insert(issuers)
      .values({ ...issuerInput({ certificateDer: der }), createdAt: new Date(), updatedAt: new Date() });
    const [row] = await db.select().from(issuers);
    expect(row!.certificateDer.constructor).toBe(Uint8Array);
    expect([...row!.certificateDer]).toEqual([...der]);
  });

  test('reads timestamps back to the millisecond and arrays as arrays', async () => {
    const createdAt = new Date('2026-03-01T12:34:56.789Z');
    const { db } = getDatabase();
    await db.insert(issuers).values({ ...issuerInput(), createdAt, updatedAt: createdAt });
    const [row] = await db.select().from(issuers);
    expect(row!.createdAt).toEqual(createdAt);
    expect(row!.crlUrls).toEqual(['http://ca.example.com/crl/dev-intermediate.crl']);
  });

  test('reports a unique violation as SQLSTATE 23505 on the error or its cause', async () => {
    const { db } = getDatabase();
    const values = { ...issuerInput(), createdAt: new Date(), updatedAt: new Date() };
    await db.insert(issuers).values(values);
    const error = await db
      .insert(issuers)
      .values(values)
      .catch((e: unknown) => e);
    expect(sqlState(error)).toBe('23505');
    expect(isUniqueViolation(error)).toBe(true);
    expect(isUniqueViolation(new Error('other'))).toBe(false);
  });

  test('enforces the schema constraints in the database itself', async () => {
    const { db } = getDatabase();
    const error = await db
      .insert(issuers)
      .values({ ...issuerInput({ id: 'Not A Slug' }), createdAt: new Date(), updatedAt: new Date() })
      .catch((e: unknown) => e);
    expect(sqlState(error)).toBe('23514'); // check_violation
  });

  test.each([
    { serial: '0001', ok: false },
    { serial: '00', ok: false },
    { serial: 'ABCD', ok: false },
    { serial: '0a1', ok: false },
    { serial: '01'.repeat(21), ok: false },
    { serial: '0080', ok: true },
    { serial: '7f', ok: true },
  ])(
    'stores only canonical serials, even bypassing the repository: $serial ($ok)',
    async ({ serial, ok }) => {
      const { db } = getDatabase();
      await db.insert(issuers).values({ ...issuerInput(), createdAt: new Date(), updatedAt: new Date() });
      const now = new Date();
      const insert = db.insert(certificates).values({
        serial,
        issuerId: 'dev-intermediate',
        policy: 'p',
        requester: 'r',
        subject: '',
        notBefore: now,
        notAfter: now,
        status: 'pending',
        tbsSha256: new Uint8Array(32),
        createdAt: now,
        statusChangedAt: now,
      });
      if (ok) await insert;
      else expect(sqlState(await insert.catch((e: unknown) => e))).toBe('23514');
    },
  );

  test('answers ping', async () => {
    await expect(getDatabase().database.ping()).resolves.toBeUndefined();
  });

  test('withAdvisoryLock lets one holder at a time run and others see it taken', async () => {
    const { database } = getDatabase();
    let release!: () => void;
    const holding = new Promise<void>((resolve) => {
      release = resolve;
    });
    const first = database.withAdvisoryLock('crl-writer:dev-intermediate', async () => {
      await holding;
      return 'first';
    });
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(await database.withAdvisoryLock('crl-writer:dev-intermediate', async () => 'second')).toEqual({
      acquired: false,
    });
    expect(await database.withAdvisoryLock('crl-writer:other', async () => 'other')).toEqual({
      acquired: true,
      value: 'other',
    });
    release();
    expect(await first).toEqual({ acquired: true, value: 'first' });
    expect(await database.withAdvisoryLock('crl-writer:dev-intermediate', async () => 'third')).toEqual({
      acquired: true,
      value: 'third',
    });
  });

  test('withAdvisoryLock releases the lock when the work throws', async () => {
    const { database } = getDatabase();
    await expect(
      database.withAdvisoryLock('crl-writer:x', async () => {
        throw new Error('boom');
      }),
    ).rejects.toThrow('boom');
    expect((await database.withAdvisoryLock('crl-writer:x', async () => 1)).acquired).toBe(true);
  });
});

describeEachDatabase('notifications', (getDatabase) => {
  const received = () => {
    const messages: (string | null)[] = [];
    const next = (count: number) =>
      new Promise<void>((resolve, reject) => {
        const deadline = Date.now() + 10_000;
        const poll = () => {
          if (messages.length >= count) resolve();
          else if (Date.now() > deadline) reject(new Error(`got ${JSON.stringify(messages)}`));
          else setTimeout(poll, 10);
        };
        poll();
      });
    return { messages, next, handler: (payload: string | null) => messages.push(payload) };
  };

  test('a listener receives what is notified on its channel only, until it stops listening', async () => {
    const { database } = getDatabase();
    const ocsp = received();
    const other = received();
    const stop = await database.listen('ocsp_invalidate', ocsp.handler);
    await database.listen('other_channel', other.handler);
    await database.notify('ocsp_invalidate', 'dev-intermediate:01a2');
    await ocsp.next(1);
    expect(ocsp.messages).toEqual(['dev-intermediate:01a2']);
    await stop();
    await database.notify('ocsp_invalidate', 'after');
    await database.notify('other_channel', 'marker');
    await other.next(1);
    expect(ocsp.messages).toEqual(['dev-intermediate:01a2']);
  });

  test('a notification sent inside a transaction arrives only after the commit', async () => {
    const { database, db } = getDatabase();
    const got = received();
    await database.listen('tx_channel', got.handler);
    await db.transaction(async (tx) => {
      await tx.execute(sql`select pg_notify('tx_channel', 'in-tx')`);
      await new Promise((resolve) => setTimeout(resolve, 100));
      expect(got.messages).toEqual([]);
    });
    await got.next(1);
    expect(got.messages).toEqual(['in-tx']);
  });

  test.each(['Bad-Channel', 'drop table x; --', ''])('the channel name %j is refused', async (channel) => {
    await expect(getDatabase().database.listen(channel, () => {})).rejects.toBeInstanceOf(TypeError);
    await expect(getDatabase().database.notify(channel, 'x')).rejects.toBeInstanceOf(TypeError);
  });
});

describe.skipIf(!postgresAvailable())('openDatabase with a URL (PostgreSQL)', () => {
  test('a listener whose connection is killed is told to resynchronise and keeps receiving', async () => {
    const { url, drop } = await createEmptyPostgresDatabase();
    const a = await openDatabase({ url });
    const b = await openDatabase({ url });
    try {
      const messages: (string | null)[] = [];
      await a.listen('ocsp_invalidate', (payload) => messages.push(payload));
      await b.notify('ocsp_invalidate', 'first');
      await expect.poll(() => messages, { timeout: 10_000 }).toEqual(['first']);
      await b.db.execute(
        sql`select pg_terminate_backend(pid) from pg_stat_activity where query like 'listen %' and datname = current_database()`,
      );
      await expect.poll(() => messages, { timeout: 15_000 }).toEqual(['first', null]);
      await b.notify('ocsp_invalidate', 'second');
      await expect.poll(() => messages, { timeout: 10_000 }).toEqual(['first', null, 'second']);
    } finally {
      await a.close();
      await b.close();
      await drop();
    }
  });

  test('several nodes starting together on an empty database migrate it exactly once', async () => {
    const { url, drop } = await createEmptyPostgresDatabase();
    try {
      const nodes = await Promise.all(
        Array.from({ length: 6 }, () => openDatabase({ url }, { poolSize: 2 })),
      );
      try {
        expect(nodes.every((n) => n.dialect === 'postgres')).toBe(true);
        const applied = rowsOf<{ count: number }>(
          await nodes[0]!.db.execute(sql`select count(*)::int as count from drizzle.__drizzle_migrations`),
        );
        expect(applied[0]!.count).toBe(migrationCount);
      } finally {
        await Promise.all(nodes.map((n) => n.close()));
      }
    } finally {
      await drop();
    }
  });

  test('two handles on one database exclude each other through the same advisory lock name', async () => {
    const { url, drop } = await createEmptyPostgresDatabase();
    const a = await openDatabase({ url });
    const b = await openDatabase({ url });
    try {
      let release!: () => void;
      const held = a.withAdvisoryLock(
        'crl-writer:dev-intermediate',
        () => new Promise<void>((r) => (release = r)),
      );
      await new Promise((resolve) => setTimeout(resolve, 100));
      expect((await b.withAdvisoryLock('crl-writer:dev-intermediate', async () => 1)).acquired).toBe(false);
      release();
      await held;
      expect((await b.withAdvisoryLock('crl-writer:dev-intermediate', async () => 1)).acquired).toBe(true);
    } finally {
      await a.close();
      await b.close();
      await drop();
    }
  });
});

describe('openDatabase errors', () => {
  test('an unreachable server fails clearly and the message carries no password', async () => {
    const error = (await openDatabase({ url: 'postgres://signet:s3cret-password@127.0.0.1:1/signet' }).catch(
      (e: unknown) => e,
    )) as Error;
    expect(error).toBeInstanceOf(Error);
    expect(error.message).toContain(
      'cannot open the PostgreSQL database postgres://signet@127.0.0.1:1/signet',
    );
    expect(error.message).not.toContain('s3cret-password');
  });

  test('describePostgresUrl drops the password and query', () => {
    expect(describePostgresUrl('postgres://u:pw@db.example.com:5432/signet?sslmode=require')).toBe(
      'postgres://u@db.example.com:5432/signet',
    );
    expect(describePostgresUrl('not a url')).toBe('postgres://(unparseable URL)');
  });
});
