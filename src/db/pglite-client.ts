/**
 * PGlite on a thread of its own (issue #24), for Node: the server's event loop runs HTTP, CSR
 * parsing, policy and lint, and never waits while the database (PostgreSQL compiled to
 * WebAssembly, src/db/pglite-thread.ts) executes a statement. PGlite's own worker mode
 * (`@electric-sql/pglite/worker`) is written for browsers (Web Workers, BroadcastChannel,
 * navigator.locks, none of which Node 20's worker_threads offers), hence this thin proxy.
 *
 * The client offers the part of PGlite's interface that drizzle-orm/pglite (its session and
 * migrator) and src/db use: query (with rowMode and pass-through parsers), exec, transaction,
 * listen and close. The thread calls PGlite's own methods, so the semantics are PGlite's: one
 * connection, statements outside a transaction run after it ends, a transaction whose callback
 * throws is rolled back. Errors keep PostgreSQL's fields (`code`, `detail`, `constraint`...);
 * bytea comes back as Uint8Array. Notifications reach the listeners on this thread.
 *
 * If the thread dies (an uncaught error, a WebAssembly trap), every statement in flight and every
 * later one fails at once with the reason, and `onFatal` is told: the server stops loudly rather
 * than hanging requests on a database that is gone.
 */
import { Worker } from 'node:worker_threads';

/** The thread's start parameters (its workerData). */
export interface ThreadInit {
  dataDir: string;
  postgresqlconf: string[];
}

type InTransaction = { tx?: number };

/** Requests to the thread; each is answered by one `reply` with the same id. */
export type ThreadRequest = { id: number } & (
  | ({
      op: 'query';
      sql: string;
      params: unknown[];
      rowMode?: 'array' | 'object';
      /** Type OIDs to leave as PostgreSQL's text (drizzle's pass-through parsers). */
      raw?: number[];
      paramTypes?: number[];
    } & InTransaction)
  | ({ op: 'exec'; sql: string } & InTransaction)
  | { op: 'begin' | 'rollback'; tx: number }
  | { op: 'end'; tx: number; commit: boolean }
  | { op: 'listen' | 'unlisten'; channel: string }
  | { op: 'close' }
);

export interface SerializedError {
  name: string;
  message: string;
  stack?: string;
  /** PostgreSQL's error fields as PGlite sets them: code, severity, detail, constraint, ... */
  fields: Record<string, string | number | boolean>;
}

/** Messages from the thread. */
export type ThreadMessage =
  | { op: 'ready' }
  | { op: 'failed'; error: SerializedError }
  | { op: 'reply'; id: number; ok: true; value: unknown }
  | { op: 'reply'; id: number; ok: false; error: SerializedError }
  | { op: 'notify'; channel: string; payload: string };

/** PGlite's result shape (`Results` of @electric-sql/pglite). */
export interface QueryResult<T = unknown> {
  rows: T[];
  fields: { name: string; dataTypeID: number }[];
  affectedRows?: number;
}

export interface QueryOptions {
  rowMode?: 'array' | 'object';
  /**
   * Per type OID. Functions cannot cross to the database's thread: only parsers that return the
   * text unchanged are accepted (drizzle passes such parsers for dates, intervals and numerics).
   */
  parsers?: Record<number, (value: string, typeId: number) => unknown>;
  paramTypes?: number[];
}

export interface PgliteTransaction {
  query<T>(sql: string, params?: unknown[], options?: QueryOptions): Promise<QueryResult<T>>;
  exec(sql: string): Promise<QueryResult[]>;
  rollback(): Promise<void>;
  readonly closed: boolean;
}

export interface PgliteThreadOptions {
  /** PostgreSQL settings (`shared_buffers=16MB`). */
  postgresqlconf?: string[];
  /** The thread died; everything in flight has been failed with `error` already. */
  onFatal: (error: Error) => void;
}

interface Pending {
  resolve(value: unknown): void;
  reject(error: Error): void;
  /** The statement and its parameters, set on a failed statement's error as PGlite does. */
  sql?: string;
  params?: unknown[];
}

/** Where the thread's code is: next to this file, compiled (dist/) or as the TypeScript source. */
function threadEntry(): { url: URL; tsx?: string } {
  const source = import.meta.url.endsWith('.ts');
  const url = new URL(`./pglite-thread.${source ? 'ts' : 'js'}`, import.meta.url);
  // Sources run through tsx (bin/signet.js, the tests, the benchmarks); a worker thread does not
  // inherit its hooks, so the thread registers them before loading its entry.
  return source ? { url, tsx: import.meta.resolve('tsx/esm/api') } : { url };
}

function startWorker(init: ThreadInit): Worker {
  const entry = threadEntry();
  if (!entry.tsx) return new Worker(entry.url, { workerData: init });
  const boot = `import(${JSON.stringify(entry.tsx)}).then((tsx) => { tsx.register(); return import(${JSON.stringify(entry.url.href)}); });`;
  return new Worker(boot, { eval: true, workerData: init, execArgv: [] });
}

/**
 * A copy of each byte parameter with a buffer of its own, to transfer: posting a Buffer would
 * copy the whole buffer under it (Node's 8 KB pool for a small one) rather than its bytes.
 */
function prepareParams(params: readonly unknown[]): { params: unknown[]; transfer: ArrayBuffer[] } {
  const transfer: ArrayBuffer[] = [];
  const out = params.map((value) => {
    if (!(value instanceof Uint8Array)) return value;
    const copy = new Uint8Array(value.byteLength);
    copy.set(value);
    transfer.push(copy.buffer);
    return copy;
  });
  return { params: out, transfer };
}

const rawTypesOf = new WeakMap<object, number[]>();

/** The OIDs of pass-through parsers; any other parser would silently not run, so it is refused. */
function rawTypes(parsers: NonNullable<QueryOptions['parsers']>): number[] {
  let oids = rawTypesOf.get(parsers);
  if (oids) return oids;
  oids = Object.entries(parsers).map(([key, parser]) => {
    const oid = Number(key);
    const probe = '2026-01-01 00:00:00+00';
    if (parser(probe, oid) !== probe) {
      throw new TypeError(
        `type parser for OID ${key}: only pass-through parsers run on the database's thread`,
      );
    }
    return oid;
  });
  rawTypesOf.set(parsers, oids);
  return oids;
}

function reviveError(serialized: SerializedError, pending?: Pending): Error {
  const error = new Error(serialized.message) as Error & Record<string, unknown>;
  Object.assign(error, serialized.fields);
  error.name = serialized.name;
  const frames = serialized.stack?.indexOf('\n    at ') ?? -1;
  error.stack = `${serialized.name}: ${serialized.message}${frames >= 0 ? serialized.stack?.slice(frames) : ''}`;
  if (pending?.sql !== undefined) {
    error.query = pending.sql;
    error.params = pending.params;
  }
  return error;
}

export class PgliteThreadClient {
  readonly #worker: Worker;
  readonly #onFatal: (error: Error) => void;
  readonly #pending = new Map<number, Pending>();
  readonly #listeners = new Map<
    string,
    { callbacks: Set<(payload: string) => void>; listening: Promise<void> }
  >();
  #nextId = 1;
  #nextTx = 1;
  /** Why the thread is gone (crashed), or that it was closed. */
  #gone: Error | undefined;
  #closing: Promise<void> | undefined;

  private constructor(worker: Worker, onFatal: (error: Error) => void) {
    this.#worker = worker;
    this.#onFatal = onFatal;
  }

  /** Starts the thread and opens PGlite in `dataDir`; rejects with PGlite's error if it cannot. */
  static async start(dataDir: string, options: PgliteThreadOptions): Promise<PgliteThreadClient> {
    const worker = startWorker({ dataDir, postgresqlconf: options.postgresqlconf ?? [] });
    const client = new PgliteThreadClient(worker, options.onFatal);
    await new Promise<void>((resolve, reject) => {
      const onExit = (code: number) =>
        reject(new Error(`the database thread exited (code ${code}) while opening`));
      worker.once('error', reject);
      worker.once('exit', onExit);
      worker.once('message', (message: ThreadMessage) => {
        worker.off('error', reject);
        worker.off('exit', onExit);
        if (message.op === 'ready') resolve();
        else if (message.op === 'failed') reject(reviveError(message.error));
        else reject(new Error(`the database thread sent ${message.op} before it was ready`));
      });
    }).catch(async (error: unknown) => {
      await worker.terminate();
      throw error;
    });
    client.#attach();
    return client;
  }

  #attach(): void {
    const worker = this.#worker;
    worker.on('message', (message: ThreadMessage) => this.#receive(message));
    worker.on('error', (error) => this.#die(error));
    worker.on('messageerror', (error) => this.#die(error));
    worker.on('exit', (code) => {
      if (!this.#closing) this.#die(new Error(`exited with code ${code}`));
      else this.#failPending(new Error('the embedded database is closed'));
    });
    // Like a socket: the thread keeps the process alive only while a statement is in flight.
    worker.unref();
  }

  #receive(message: ThreadMessage): void {
    if (message.op === 'notify') {
      for (const listener of this.#listeners.get(message.channel)?.callbacks ?? []) listener(message.payload);
      return;
    }
    if (message.op !== 'reply') return;
    const pending = this.#pending.get(message.id);
    if (!pending) return;
    this.#settled(message.id);
    if (message.ok) pending.resolve(message.value);
    else pending.reject(reviveError(message.error, pending));
  }

  #settled(id: number): void {
    this.#pending.delete(id);
    if (this.#pending.size === 0) this.#worker.unref();
  }

  #die(reason: Error): void {
    if (this.#gone) return;
    const error = new Error(`the embedded database's thread stopped: ${reason.message}`, { cause: reason });
    this.#gone = error;
    this.#failPending(error);
    this.#onFatal(error);
  }

  #failPending(error: Error): void {
    for (const pending of this.#pending.values()) pending.reject(error);
    this.#pending.clear();
    this.#worker.unref();
  }

  #call<T>(
    request: ThreadRequest,
    transfer: ArrayBuffer[] = [],
    sql?: string,
    params?: unknown[],
  ): Promise<T> {
    if (this.#gone) return Promise.reject(this.#gone);
    return new Promise<T>((resolve, reject) => {
      if (this.#pending.size === 0) this.#worker.ref();
      const pending: Pending = { resolve: resolve as (value: unknown) => void, reject };
      if (sql !== undefined) {
        pending.sql = sql;
        pending.params = params;
      }
      this.#pending.set(request.id, pending);
      try {
        this.#worker.postMessage(request, transfer);
      } catch (error) {
        // A parameter that cannot be cloned (a function, a symbol): the statement never left.
        this.#settled(request.id);
        reject(error as Error);
      }
    });
  }

  #query<T>(sql: string, params: readonly unknown[], options: QueryOptions | undefined, tx?: number) {
    const prepared = prepareParams(params);
    const request: ThreadRequest = { id: this.#nextId++, op: 'query', sql, params: prepared.params };
    if (options?.rowMode) request.rowMode = options.rowMode;
    try {
      if (options?.parsers) request.raw = rawTypes(options.parsers);
    } catch (error) {
      return Promise.reject(error as Error);
    }
    if (options?.paramTypes) request.paramTypes = options.paramTypes;
    if (tx !== undefined) request.tx = tx;
    return this.#call<QueryResult<T>>(request, prepared.transfer, sql, params as unknown[]);
  }

  #exec(sql: string, tx?: number): Promise<QueryResult[]> {
    return this.#call({ id: this.#nextId++, op: 'exec', sql, ...(tx === undefined ? {} : { tx }) });
  }

  query<T>(sql: string, params: readonly unknown[] = [], options?: QueryOptions): Promise<QueryResult<T>> {
    return this.#query<T>(sql, params, options);
  }

  exec(sql: string): Promise<QueryResult[]> {
    return this.#exec(sql);
  }

  /**
   * Runs `fn` in a transaction on the database's one connection: statements sent outside it wait
   * until it ends. It commits when `fn` resolves and rolls back when `fn` throws.
   */
  async transaction<T>(fn: (tx: PgliteTransaction) => Promise<T>): Promise<T> {
    const id = this.#nextTx++;
    await this.#call({ id: this.#nextId++, op: 'begin', tx: id });
    let closed = false;
    const open = () => {
      if (closed) throw new Error('Transaction is closed');
    };
    const tx: PgliteTransaction = {
      query: async (sql, params = [], options) => {
        open();
        return this.#query(sql, params, options, id);
      },
      exec: async (sql) => {
        open();
        return this.#exec(sql, id);
      },
      rollback: async () => {
        open();
        closed = true;
        await this.#call({ id: this.#nextId++, op: 'rollback', tx: id });
      },
      get closed() {
        return closed;
      },
    };
    let value: T;
    try {
      value = await fn(tx);
    } catch (error) {
      closed = true;
      await this.#call({ id: this.#nextId++, op: 'end', tx: id, commit: false });
      throw error;
    }
    closed = true;
    await this.#call({ id: this.#nextId++, op: 'end', tx: id, commit: true });
    return value;
  }

  /** Calls `callback` with each notification on `channel`; returns a function that stops it. */
  async listen(channel: string, callback: (payload: string) => void): Promise<() => Promise<void>> {
    let entry = this.#listeners.get(channel);
    if (!entry) {
      const listening = this.#call<void>({ id: this.#nextId++, op: 'listen', channel });
      entry = { callbacks: new Set(), listening };
      this.#listeners.set(channel, entry);
      listening.catch(() => this.#listeners.delete(channel));
    }
    await entry.listening;
    const current = entry;
    // A distinct function per call, so the same callback listening twice unlistens twice.
    const listener = (payload: string) => callback(payload);
    current.callbacks.add(listener);
    return async () => {
      if (!current.callbacks.delete(listener) || current.callbacks.size > 0) return;
      if (this.#listeners.get(channel) !== current) return;
      this.#listeners.delete(channel);
      if (!this.#gone) await this.#call({ id: this.#nextId++, op: 'unlisten', channel });
    };
  }

  /**
   * Ends the thread at once, without closing PGlite: what a crash of the thread does. For the
   * tests of that path (the folder is recovered on the next open, as after kill -9).
   */
  async abortThread(): Promise<void> {
    await this.#worker.terminate();
  }

  /**
   * Closes PGlite (after the statements already sent) and ends the thread. After a crash there is
   * nothing left to close: the next open recovers the folder, as after kill -9.
   */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      try {
        if (!this.#gone) await this.#call({ id: this.#nextId++, op: 'close' });
      } finally {
        this.#gone ??= new Error('the embedded database is closed');
        await this.#worker.terminate();
      }
    })();
    return this.#closing;
  }
}
