/**
 * Fresh databases for tests, of both kinds Signet runs on, with the real migrations applied.
 *
 * - PGlite: a data folder in a temp dir. Creating a PGlite cluster runs initdb in WebAssembly
 *   (several seconds), so a migrated template is built once per migration set and copied.
 * - PostgreSQL: with SIGNET_TEST_DATABASE_URL (set by .ci/run, see .ci/postgres.sh) a throwaway
 *   database is created in that server per test file; otherwise, if PostgreSQL 15 is installed,
 *   a throwaway cluster is started for the test file (as the `postgres` user when running as
 *   root: initdb refuses root). Missing PostgreSQL skips those suites locally and fails under
 *   CI=true, like hasTool.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import {
  chownSync,
  cpSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
} from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { getTableName, isTable, sql } from 'drizzle-orm';
import { getTableConfig, type PgTable } from 'drizzle-orm/pg-core';
import pg from 'pg';
import { afterAll, beforeAll, beforeEach, describe } from 'vitest';
import {
  type Database,
  type DatabaseTarget,
  type Db,
  DEFAULT_MIGRATIONS_FOLDER,
  embeddedPaths,
  type OpenDatabaseOptions,
  openDatabase,
} from '../../src/db/database.ts';
import * as schema from '../../src/db/schema/index.ts';

export type DatabaseKind = 'pglite' | 'postgres';
export const DATABASE_KINDS: readonly DatabaseKind[] = ['pglite', 'postgres'];

const PG_BIN = '/usr/lib/postgresql/15/bin';

export interface TestDatabase {
  readonly kind: DatabaseKind;
  /** What openDatabase was called with: open a second handle (PostgreSQL) or a second process. */
  readonly target: DatabaseTarget;
  readonly database: Database;
  readonly db: Db;
  /** Empties every table (keeps the migrations applied). */
  reset(): Promise<void>;
  /** Closes the handle and throws the database (or folder) away. */
  destroy(): Promise<void>;
}

/** Whether PostgreSQL tests can run here; throws under CI=true when they cannot. */
export function postgresAvailable(): boolean {
  if (process.env.SIGNET_TEST_DATABASE_URL) return true;
  let reason: string | undefined;
  if (!existsSync(join(PG_BIN, 'initdb'))) reason = `${PG_BIN}/initdb is not installed`;
  else if (isRoot() && postgresUser() === undefined) reason = 'running as root and there is no postgres user';
  if (reason === undefined) return true;
  if (process.env.CI === 'true') {
    throw new Error(`PostgreSQL is required under CI=true: ${reason} and SIGNET_TEST_DATABASE_URL is unset`);
  }
  console.warn(`skipping PostgreSQL tests: ${reason}`);
  return false;
}

/** A fresh, migrated database of the given kind. */
export async function createTestDatabase(
  kind: DatabaseKind,
  options: OpenDatabaseOptions = {},
): Promise<TestDatabase> {
  return kind === 'pglite' ? createPgliteDatabase(options) : createPostgresDatabase(options);
}

/**
 * Runs `fn` once per database kind inside `describe('<name> (<kind>)')`, with a database opened
 * before the suite, emptied before each test and thrown away after. `fn` receives a getter.
 */
export function describeEachDatabase(name: string, fn: (getDatabase: () => TestDatabase) => void): void {
  for (const kind of DATABASE_KINDS) {
    const available = kind === 'pglite' || postgresAvailable();
    describe.skipIf(!available)(`${name} (${kind})`, () => {
      let current: TestDatabase | undefined;
      beforeAll(async () => {
        current = await createTestDatabase(kind);
      });
      afterAll(async () => {
        await current?.destroy();
        current = undefined;
      });
      beforeEach(async () => {
        await current?.reset();
      });
      fn(() => {
        if (!current) throw new Error('the test database is not open (used outside a test?)');
        return current;
      });
    });
  }
}

/**
 * Every table, referencing tables before the tables they reference, so that deleting in this
 * order never trips a foreign key.
 */
function tablesInDeleteOrder(): string[] {
  const tables = Object.values(schema).filter((value) => isTable(value)) as unknown as PgTable[];
  const name = (table: PgTable) => getTableName(table);
  const referenced = new Map(
    tables.map((table) => [
      name(table),
      getTableConfig(table)
        .foreignKeys.map((fk) => name(fk.reference().foreignTable))
        .filter((target) => target !== name(table)),
    ]),
  );
  const order: string[] = [];
  const visit = (table: string) => {
    if (order.includes(table)) return;
    // Whoever references `table` must be emptied first.
    for (const [other, targets] of referenced) if (targets.includes(table)) visit(other);
    order.push(table);
  };
  for (const table of [...referenced.keys()].sort()) visit(table);
  return order;
}

/** DELETE, not TRUNCATE: PGlite truncates slowly (new files for every table), deletes in ~40 ms. */
async function resetTables(db: Db): Promise<void> {
  const statements = tablesInDeleteOrder()
    .map((table) => `delete from "${table}";`)
    .join(' ');
  await db.execute(sql.raw(`do $$ begin ${statements} end $$`));
}

function wrap(kind: DatabaseKind, target: DatabaseTarget, database: Database, cleanup: () => Promise<void>) {
  let destroyed = false;
  const testDatabase: TestDatabase = {
    kind,
    target,
    database,
    db: database.db,
    reset: () => resetTables(database.db),
    async destroy() {
      if (destroyed) return;
      destroyed = true;
      await database.close().catch(() => {});
      await cleanup();
    },
  };
  return testDatabase;
}

// --- PGlite --------------------------------------------------------------------------------

/** A temp data folder whose db/ is a copy of a migrated template (built on first use). */
export async function createPgliteDataDir(): Promise<string> {
  const template = await pgliteTemplate();
  const dataDir = mkdtempSync(join(tmpdir(), 'signet-test-data-'));
  cpSync(template, embeddedPaths(dataDir).dbDir, { recursive: true });
  return dataDir;
}

async function createPgliteDatabase(options: OpenDatabaseOptions): Promise<TestDatabase> {
  const dataDir = await createPgliteDataDir();
  const target = { dataDir };
  try {
    const database = await openDatabase(target, options);
    return wrap('pglite', target, database, async () => rmSync(dataDir, { recursive: true, force: true }));
  } catch (error) {
    rmSync(dataDir, { recursive: true, force: true });
    throw error;
  }
}

async function pgliteTemplate(): Promise<string> {
  const hash = createHash('sha256');
  const pgliteVersion = JSON.parse(
    readFileSync(new URL('../../node_modules/@electric-sql/pglite/package.json', import.meta.url), 'utf8'),
  ).version as string;
  hash.update(pgliteVersion);
  for (const file of listFiles(DEFAULT_MIGRATIONS_FOLDER)) {
    hash.update(file).update(readFileSync(join(DEFAULT_MIGRATIONS_FOLDER, file)));
  }
  const templateDir = join(tmpdir(), `signet-pglite-template-${hash.digest('hex').slice(0, 16)}`);
  if (existsSync(join(templateDir, 'PG_VERSION'))) return templateDir;
  // Several test workers may build it at once: each builds its own, the first rename wins.
  const buildDir = mkdtempSync(join(tmpdir(), 'signet-pglite-build-'));
  try {
    const database = await openDatabase({ dataDir: buildDir });
    await database.close();
    try {
      renameSync(embeddedPaths(buildDir).dbDir, templateDir);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code !== 'EEXIST' && code !== 'ENOTEMPTY') throw error;
    }
  } finally {
    rmSync(buildDir, { recursive: true, force: true });
  }
  return templateDir;
}

function listFiles(dir: string, prefix = ''): string[] {
  return readdirSync(join(dir, prefix), { withFileTypes: true })
    .flatMap((entry) =>
      entry.isDirectory() ? listFiles(dir, join(prefix, entry.name)) : [join(prefix, entry.name)],
    )
    .sort();
}

// --- PostgreSQL ----------------------------------------------------------------------------

interface Cluster {
  adminUrl: string;
  stop(): void;
}

let clusterPromise: Promise<Cluster> | undefined;

/** The server to create test databases in: SIGNET_TEST_DATABASE_URL, else a cluster of our own. */
async function adminUrl(): Promise<string> {
  const fromEnv = process.env.SIGNET_TEST_DATABASE_URL;
  if (fromEnv) return fromEnv;
  clusterPromise ??= startThrowawayCluster();
  return (await clusterPromise).adminUrl;
}

async function createPostgresDatabase(options: OpenDatabaseOptions): Promise<TestDatabase> {
  const admin = await adminUrl();
  const name = `signet_test_${randomBytes(6).toString('hex')}`;
  await adminQuery(admin, `create database ${name}`);
  const url = new URL(admin);
  url.pathname = `/${name}`;
  const target = { url: url.toString() };
  const drop = async () => {
    await adminQuery(admin, `drop database if exists ${name} with (force)`);
  };
  try {
    const database = await openDatabase(target, options);
    return wrap('postgres', target, database, drop);
  } catch (error) {
    await drop().catch(() => {});
    throw error;
  }
}

/** A further empty database on the same server, for tests that open their own handles. */
export async function createEmptyPostgresDatabase(): Promise<{ url: string; drop(): Promise<void> }> {
  const admin = await adminUrl();
  const name = `signet_test_${randomBytes(6).toString('hex')}`;
  await adminQuery(admin, `create database ${name}`);
  const url = new URL(admin);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    drop: () => adminQuery(admin, `drop database if exists ${name} with (force)`),
  };
}

async function adminQuery(url: string, text: string): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(text);
  } finally {
    await client.end();
  }
}

function isRoot(): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}

function postgresUser(): { uid: number; gid: number } | undefined {
  const result = spawnSync('id', ['postgres'], { encoding: 'utf8' });
  if (result.status !== 0) return undefined;
  const uid = /uid=(\d+)/.exec(result.stdout)?.[1];
  const gid = /gid=(\d+)/.exec(result.stdout)?.[1];
  return uid && gid ? { uid: Number(uid), gid: Number(gid) } : undefined;
}

/** Runs a PostgreSQL binary, as the postgres user when we are root (initdb refuses root). */
function runPg(binary: string, args: string[]): void {
  const [command, argv] = asPostgresUser(join(PG_BIN, binary), args);
  execFileSync(command, argv, { stdio: ['ignore', 'pipe', 'pipe'], timeout: 60_000 });
}

function asPostgresUser(command: string, args: string[]): [string, string[]] {
  return isRoot() ? ['runuser', ['-u', 'postgres', '--', command, ...args]] : [command, args];
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject()));
    });
  });
}

/**
 * The server runs under a small shell. A background reader waits on the shell's stdin, a pipe
 * from this process: when this process ends, however it ends (vitest may kill its workers), the
 * pipe closes and the server is stopped. When the server stops, for that or any other reason
 * (e.g. its port was taken), the shell removes the cluster's folder and exits.
 */
const WATCHDOG = `
exec 3<&0
"$0" -D "$1/data" -c listen_addresses=127.0.0.1 -p "$2" -k "$1" -c fsync=off -c synchronous_commit=off \
  -c full_page_writes=off -c max_connections=200 </dev/null >"$1/log" 2>&1 &
pid=$!
( read -r _ignored <&3; kill -QUIT "$pid" 2>/dev/null ) &
wait "$pid"
rm -rf "$1"
`;

/** A cluster on 127.0.0.1 for this test process, fsync off (tests do not survive power loss). */
async function startThrowawayCluster(): Promise<Cluster> {
  for (let attempt = 1; ; attempt++) {
    const dir = mkdtempSync(join(tmpdir(), 'signet-pg-'));
    if (isRoot()) {
      const user = postgresUser();
      if (!user) throw new Error('running as root needs a postgres user to run initdb');
      chownSync(dir, user.uid, user.gid);
    }
    runPg('initdb', [
      '-D',
      join(dir, 'data'),
      '-A',
      'trust',
      '-U',
      'signet',
      '-E',
      'UTF8',
      '--no-locale',
      '-N',
    ]);
    const port = await freePort();
    const [command, argv] = asPostgresUser('sh', [
      '-c',
      WATCHDOG,
      join(PG_BIN, 'postgres'),
      dir,
      String(port),
    ]);
    const child = spawn(command, argv, { stdio: ['pipe', 'ignore', 'ignore'] });
    const adminUrl = `postgres://signet@127.0.0.1:${port}/postgres`;
    let exited = false;
    child.once('exit', () => {
      exited = true;
    });
    const deadline = Date.now() + 30_000;
    while (!exited && Date.now() < deadline) {
      try {
        await adminQuery(adminUrl, 'select 1');
        // Keep the pipe open, but let this process end without waiting for the server.
        child.unref();
        (child.stdin as unknown as { _handle?: { unref(): void } })._handle?.unref();
        return { adminUrl, stop: () => child.stdin?.end() };
      } catch {
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    }
    let log = '';
    try {
      log = readFileSync(join(dir, 'log'), 'utf8');
    } catch {}
    child.stdin?.end();
    // The port may have been taken between our probe and the server's bind: try another.
    if (attempt >= 3) throw new Error(`the throwaway PostgreSQL cluster did not start:\n${log}`);
  }
}
