/**
 * The embedded database on its own thread (issue #24, src/db/pglite-client.ts): the proxy keeps
 * PGlite's semantics across the thread. Real PGlite in a copy of the migrated template; drizzle
 * over the proxy where its behaviour (savepoints, error causes) is the point.
 */
import { spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { sql } from 'drizzle-orm';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test } from 'vitest';
import { embeddedPaths, openDatabase } from '../../src/db/database.ts';
import { isUniqueViolation } from '../../src/db/errors.ts';
import { PgliteThreadClient } from '../../src/db/pglite-client.ts';
import { issuers } from '../../src/db/schema/index.ts';
import { createPgliteDataDir } from '../helpers/database.ts';
import { issuerInput } from './builders.ts';

const FIXTURES = join(import.meta.dirname, 'fixtures');

describe('PGlite on its own thread', () => {
  let dataDir: string;
  let client: PgliteThreadClient;
  const fatal: Error[] = [];

  beforeAll(async () => {
    dataDir = await createPgliteDataDir();
    client = await PgliteThreadClient.start(embeddedPaths(dataDir).dbDir, {
      onFatal: (error) => fatal.push(error),
    });
    await client.exec('create table t (id serial primary key, k text unique, b bytea)');
  });
  afterAll(async () => {
    await client?.close();
    rmSync(dataDir, { recursive: true, force: true });
  });
  beforeEach(async () => {
    await client.exec('delete from t');
  });
  afterEach(() => {
    expect(fatal).toEqual([]);
  });

  const keys = async () =>
    (await client.query<{ k: string }>('select k from t order by id')).rows.map((row) => row.k);

  test('commits a transaction whose callback resolves, and answers with its value', async () => {
    const value = await client.transaction(async (tx) => {
      await tx.query('insert into t (k) values ($1)', ['a']);
      await tx.query('insert into t (k) values ($1)', ['b']);
      return (await tx.query<{ n: number }>('select count(*)::int as n from t')).rows[0]!.n;
    });
    expect(value).toBe(2);
    expect(await keys()).toEqual(['a', 'b']);
  });

  test('rolls back a transaction whose callback throws, and rethrows that error', async () => {
    const failure = new Error('the callback failed');
    await expect(
      client.transaction(async (tx) => {
        await tx.query('insert into t (k) values ($1)', ['a']);
        throw failure;
      }),
    ).rejects.toBe(failure);
    await expect(
      client.transaction(async (tx) => {
        await tx.query('insert into t (k) values ($1)', ['b']);
        await tx.query('insert into t (k) values ($1)', ['b']);
      }),
    ).rejects.toMatchObject({ code: '23505' });
    expect(await keys()).toEqual([]);
    // The connection is usable again: not left inside the aborted transaction.
    await client.query('insert into t (k) values ($1)', ['c']);
    expect(await keys()).toEqual(['c']);
  });

  test('rolls back on tx.rollback() and refuses statements on the closed transaction', async () => {
    await client.transaction(async (tx) => {
      await tx.query('insert into t (k) values ($1)', ['a']);
      await tx.rollback();
      expect(tx.closed).toBe(true);
      await expect(tx.query('select 1')).rejects.toThrow('Transaction is closed');
    });
    expect(await keys()).toEqual([]);
  });

  test('holds statements sent outside a transaction until it ends (one connection)', async () => {
    const order: string[] = [];
    let release!: () => void;
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    let began!: () => void;
    const begun = new Promise<void>((resolve) => {
      began = resolve;
    });
    const transaction = client.transaction(async (tx) => {
      await tx.query('insert into t (k) values ($1)', ['in-tx']);
      began();
      await held;
      order.push('tx ends');
    });
    await begun;
    const outside = client.query<{ k: string }>('select k from t').then((result) => {
      order.push('outside answered');
      return result.rows.map((row) => row.k);
    });
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(order).toEqual([]);
    release();
    await transaction;
    // It saw the committed row: it ran after COMMIT, not beside the transaction.
    expect(await outside).toEqual(['in-tx']);
    expect(order).toEqual(['tx ends', 'outside answered']);
  });

  test('runs statements in the order they were sent, even when none is awaited', async () => {
    const sent = Array.from({ length: 60 }, (_, index) => `k${index}`);
    const answers = await Promise.all(sent.map((k) => client.query('insert into t (k) values ($1)', [k])));
    expect(answers.every((answer) => answer.affectedRows === 1)).toBe(true);
    expect(await keys()).toEqual(sent);
  });

  test('fails only the statement whose parameter cannot cross the thread, not those sent with it', async () => {
    const [before, bad, after] = await Promise.allSettled([
      client.query('insert into t (k) values ($1)', ['before']),
      client.query('insert into t (k) values ($1)', [() => 'a function']),
      client.query('insert into t (k) values ($1)', ['after']),
    ]);
    expect(before.status).toBe('fulfilled');
    expect(bad).toMatchObject({ status: 'rejected', reason: { name: 'DataCloneError' } });
    expect(after.status).toBe('fulfilled');
    expect(await keys()).toEqual(['before', 'after']);
  });

  test("keeps PostgreSQL's error fields, and the statement as PGlite does", async () => {
    await client.query('insert into t (k) values ($1)', ['dup']);
    const error = await client.query('insert into t (k) values ($1)', ['dup']).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(Error);
    expect(error).toMatchObject({
      code: '23505',
      constraint: 't_k_key',
      severity: 'ERROR',
      message: 'duplicate key value violates unique constraint "t_k_key"',
      query: 'insert into t (k) values ($1)',
    });
    await expect(client.query('select 1/0')).rejects.toMatchObject({ code: '22012' });
    await expect(client.exec('select nope')).rejects.toMatchObject({ code: '42703' });
  });

  test('moves bytea both ways as Uint8Array, whatever buffer a parameter is a view of', async () => {
    // A small Buffer is a slice of Node's shared 8 KB pool; a subarray is a view into another.
    const pooled = Buffer.from('pooled bytes');
    const big = Uint8Array.from({ length: 200_000 }, (_, index) => (index * 7) % 256);
    const slice = big.subarray(1000, 1300);
    const every = Uint8Array.from({ length: 256 }, (_, index) => index);
    for (const [k, bytes] of [
      ['pooled', pooled],
      ['big', big],
      ['slice', slice],
      ['every', every],
      ['empty', new Uint8Array(0)],
    ] as const) {
      await client.query('insert into t (k, b) values ($1, $2)', [k, bytes]);
      const { rows } = await client.query<{ b: Uint8Array }>('select b from t where k = $1', [k]);
      expect(rows[0]!.b).toBeInstanceOf(Uint8Array);
      expect(Buffer.from(rows[0]!.b).equals(Buffer.from(bytes))).toBe(true);
    }
    // The caller's buffers are untouched (copied to the thread, not taken from the caller).
    expect(pooled.toString()).toBe('pooled bytes');
    expect(big.byteLength).toBe(200_000);
    const { rows } = await client.query<unknown[]>('select b from t where k = $1', ['every'], {
      rowMode: 'array',
    });
    expect([...(rows[0]![0] as Uint8Array)]).toEqual([...every]);
  });

  test('applies pass-through parsers by type and refuses any other function', async () => {
    const passThrough = (value: string) => value;
    const { rows } = await client.query<{ at: unknown; n: unknown }>(
      `select timestamptz '2026-03-01 12:00:00+00' as at, 1.50::numeric as n`,
      [],
      { parsers: { 1184: passThrough } },
    );
    expect(rows[0]).toEqual({ at: '2026-03-01 12:00:00+00', n: '1.50' });
    await expect(
      client.query('select 1', [], { parsers: { 1184: (value: string) => new Date(value) } }),
    ).rejects.toThrow('only pass-through parsers');
  });

  test('delivers notifications to this thread at commit, and none after unlisten', async () => {
    const got: string[] = [];
    const unlisten = await client.listen('signet_test', (payload) => got.push(payload));
    await client.transaction(async (tx) => {
      await tx.query(`select pg_notify('signet_test', 'committed')`);
      await new Promise((resolve) => setTimeout(resolve, 50));
      expect(got).toEqual([]);
    });
    await client
      .transaction(async (tx) => {
        await tx.query(`select pg_notify('signet_test', 'rolled back')`);
        throw new Error('roll back');
      })
      .catch(() => {});
    await client.query(`select pg_notify('signet_test', 'plain')`);
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(got).toEqual(['committed', 'plain']);
    await unlisten();
    await client.query(`select pg_notify('signet_test', 'after unlisten')`);
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(got).toEqual(['committed', 'plain']);
  });
});

describe('closing and losing the thread', () => {
  const dirs: string[] = [];
  afterAll(() => {
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });
  const freshDir = async () => {
    const dir = await createPgliteDataDir();
    dirs.push(dir);
    return embeddedPaths(dir).dbDir;
  };

  test('close answers what was sent before it, then refuses statements; a second close is a no-op', async () => {
    const dbDir = await freshDir();
    const fatal: Error[] = [];
    const client = await PgliteThreadClient.start(dbDir, { onFatal: (error) => fatal.push(error) });
    const before = client.query<{ n: number }>('select 41 + 1 as n');
    await client.close();
    expect((await before).rows).toEqual([{ n: 42 }]);
    await expect(client.query('select 1')).rejects.toThrow('closed');
    await client.close();
    expect(fatal).toEqual([]);
    // PGlite closed cleanly: the folder opens again at once.
    const again = await PgliteThreadClient.start(dbDir, { onFatal: (error) => fatal.push(error) });
    expect((await again.query('select 1 as one')).rows).toEqual([{ one: 1 }]);
    await again.close();
  });

  test('fails statements in flight and later ones at once when the thread dies, and says so', async () => {
    const dbDir = await freshDir();
    const fatal: Error[] = [];
    const client = await PgliteThreadClient.start(dbDir, { onFatal: (error) => fatal.push(error) });
    const inFlight = client.query('select count(*) from generate_series(1, 3000000)');
    await client.abortThread();
    await expect(inFlight).rejects.toThrow("the embedded database's thread stopped");
    await expect(client.query('select 1')).rejects.toThrow("the embedded database's thread stopped");
    expect(fatal).toHaveLength(1);
    await client.close();
  });

  test('a process whose database thread dies exits non-zero with the reason, not hanging', async () => {
    const dataDir = await createPgliteDataDir();
    dirs.push(dataDir);
    const child = spawn(process.execPath, ['--import', 'tsx', join(FIXTURES, 'thread-crash.ts'), dataDir], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (chunk) => {
      out += chunk;
    });
    child.stderr.on('data', (chunk) => {
      err += chunk;
    });
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    expect(out).toContain('"ready":true');
    expect(err).toContain("the embedded database's thread stopped");
    expect(code).not.toBe(0);
  });
});

describe('drizzle over the thread (openDatabase)', () => {
  test('keeps nested savepoints, the unique-violation code on the cause, and bytea', async () => {
    const dataDir = await createPgliteDataDir();
    const database = await openDatabase({ dataDir });
    try {
      const { db } = database;
      const row = () => ({ ...issuerInput(), createdAt: new Date(), updatedAt: new Date() });
      await db.transaction(async (tx) => {
        await tx.insert(issuers).values(row());
        // The inner failure rolls back to its savepoint; the outer transaction goes on.
        const inner = await tx
          .transaction(async (nested) => {
            await nested.insert(issuers).values(row());
          })
          .catch((error: unknown) => error);
        expect(isUniqueViolation(inner)).toBe(true);
        expect((inner as { cause?: { code?: string } }).cause?.code).toBe('23505');
        await tx.execute(sql`select 1`);
      });
      const rows = await db.select().from(issuers);
      expect(rows.map((issuer) => issuer.id)).toEqual(['dev-intermediate']);
      expect(rows[0]!.certificateDer).toBeInstanceOf(Uint8Array);
      expect(Buffer.from(rows[0]!.certificateDer).equals(Buffer.from(issuerInput().certificateDer))).toBe(
        true,
      );
    } finally {
      await database.close();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
