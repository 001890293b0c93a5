/**
 * The embedded database's thread (issue #24): PGlite, PostgreSQL compiled to WebAssembly, runs
 * here and not on the server's event loop, where it took a third to a half of the busy time and
 * made HTTP and CSR parsing wait behind every statement. src/db/pglite-client.ts starts this
 * thread and speaks to it; the messages are described there.
 *
 * Every call goes to PGlite's own query, exec, transaction and listen, so their semantics are
 * PGlite's: one connection, statements outside a transaction wait for it to end, COMMIT of a
 * failed transaction throws. Only what cannot cross a thread is rebuilt here: type parsers
 * (functions) are named by their type OIDs, and bytea uses Node's hex codec instead of PGlite's
 * per-byte one.
 */
import { type MessagePort, parentPort, workerData } from 'node:worker_threads';
import { PGlite, type QueryOptions, type Results, type Transaction, types } from '@electric-sql/pglite';
import type { SerializedError, ThreadInit, ThreadMessage, ThreadRequest } from './pglite-client.ts';

/** bytea as PostgreSQL's hex text format (`\x0a1b...`), in one pass of Node's codec. */
function serializeBytea(value: unknown): string {
  if (!(value instanceof Uint8Array)) throw new TypeError('a bytea parameter must be a Uint8Array');
  return `\\x${Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('hex')}`;
}

/**
 * A bytea value back from its hex text. The bytes get an ArrayBuffer of their own (not a slice of
 * Node's shared pool), so the reply can transfer it to the main thread instead of copying it.
 */
function parseBytea(text: string): Uint8Array {
  const hex = text.startsWith('\\x') ? text.slice(2) : text;
  const bytes = Buffer.allocUnsafeSlow(hex.length >>> 1);
  bytes.write(hex, 'hex');
  return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

const passThrough = (value: string) => value;
const parserSets = new Map<string, NonNullable<QueryOptions['parsers']>>();

/** Parsers that leave these types as PostgreSQL's text (what drizzle asks for dates and numerics). */
function rawParsers(oids: readonly number[]): NonNullable<QueryOptions['parsers']> {
  const key = oids.join(',');
  let parsers = parserSets.get(key);
  if (!parsers) {
    parsers = Object.fromEntries(oids.map((oid) => [oid, passThrough]));
    parserSets.set(key, parsers);
  }
  return parsers;
}

function queryOptions(request: { rowMode?: 'array' | 'object'; raw?: number[]; paramTypes?: number[] }) {
  const options: QueryOptions = {};
  if (request.rowMode) options.rowMode = request.rowMode;
  if (request.raw?.length) options.parsers = rawParsers(request.raw);
  if (request.paramTypes) options.paramTypes = request.paramTypes;
  return options;
}

/**
 * The buffers of the bytea values in `results`, to transfer rather than copy. Only values that
 * own their whole buffer qualify: transferring a shared one would take it from its other views.
 */
function transferables(results: Results<unknown> | Results<unknown>[]): ArrayBuffer[] {
  const buffers = new Set<ArrayBuffer>();
  for (const result of Array.isArray(results) ? results : [results]) {
    for (const row of result.rows as unknown[]) {
      const values = Array.isArray(row) ? row : Object.values(row as object);
      for (const value of values) {
        if (
          value instanceof Uint8Array &&
          value.buffer instanceof ArrayBuffer &&
          value.byteOffset === 0 &&
          value.byteLength === value.buffer.byteLength
        ) {
          buffers.add(value.buffer);
        }
      }
    }
  }
  return [...buffers];
}

/** What of an error can cross the thread: its text and PostgreSQL's fields (code, detail, ...). */
function serializeError(error: unknown): SerializedError {
  if (!(error instanceof Error)) return { name: 'Error', message: String(error), fields: {} };
  const fields: SerializedError['fields'] = {};
  for (const [key, value] of Object.entries(error)) {
    // PGlite attaches the statement, its parameters and options (functions): the main thread
    // has the first two already, and functions cannot cross.
    if (key === 'query' || key === 'params' || key === 'queryOptions') continue;
    if (typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean') {
      fields[key] = value;
    }
  }
  return { name: error.name, message: error.message, stack: error.stack ?? '', fields };
}

/** A transaction held open by PGlite.transaction until the main thread ends it. */
interface OpenTransaction {
  tx: Transaction;
  end(commit: boolean): void;
  settled: Promise<{ ok: true } | { ok: false; error: unknown }>;
}

/** Thrown out of the transaction's callback so that PGlite rolls it back. */
const ROLLBACK = Symbol('rollback');

/** Transactions held open by PGlite.transaction, by the main thread's id, until it ends them. */
function createTransactions(pg: PGlite) {
  const open = new Map<number, OpenTransaction>();
  return {
    get(id: number): Transaction {
      const transaction = open.get(id);
      if (!transaction) throw new Error(`no open transaction ${id}`);
      return transaction.tx;
    },
    /** Resolves once PGlite has run BEGIN: statements of other callers now wait for the end. */
    begin(id: number): Promise<void> {
      return new Promise<void>((started, failed) => {
        let end!: (commit: boolean) => void;
        const ended = new Promise<boolean>((resolve) => {
          end = resolve;
        });
        const settled = pg
          .transaction(async (tx) => {
            open.set(id, { tx, end, settled });
            started();
            if (!(await ended)) throw ROLLBACK;
          })
          .then(
            () => ({ ok: true as const }),
            (error: unknown) => {
              failed(error);
              return { ok: false as const, error };
            },
          );
      });
    },
    /** Commits (PGlite throws if COMMIT found the transaction failed) or rolls back. */
    async finish(id: number, commit: boolean): Promise<void> {
      const transaction = open.get(id);
      if (!transaction) throw new Error(`no open transaction ${id}`);
      transaction.end(commit);
      const outcome = await transaction.settled;
      open.delete(id);
      if (!outcome.ok && outcome.error !== ROLLBACK) throw outcome.error;
    },
  };
}

/** One PGlite listener per channel, forwarding to the main thread, which fans out. */
function createChannels(pg: PGlite, notify: (channel: string, payload: string) => void) {
  const listening = new Map<string, () => Promise<void>>();
  let chain: Promise<void> = Promise.resolve();
  // In the order sent: an unlisten must not overtake the listen it undoes, nor the reverse.
  return (op: 'listen' | 'unlisten', channel: string): Promise<void> => {
    const step = chain.then(async () => {
      const stop = listening.get(channel);
      if (op === 'listen' && !stop) {
        listening.set(channel, await pg.listen(channel, (payload) => notify(channel, payload)));
      } else if (op === 'unlisten' && stop) {
        listening.delete(channel);
        await stop();
      }
    });
    chain = step.catch(() => {});
    return step;
  };
}

interface Answer {
  value?: unknown;
  transfer?: ArrayBuffer[];
}

function serve(port: MessagePort, pg: PGlite): void {
  const post = (message: ThreadMessage, transfer: ArrayBuffer[] = []) => port.postMessage(message, transfer);
  const transactions = createTransactions(pg);
  const channels = createChannels(pg, (channel, payload) => post({ op: 'notify', channel, payload }));

  async function handle(request: ThreadRequest): Promise<Answer> {
    switch (request.op) {
      case 'query': {
        const on = request.tx === undefined ? pg : transactions.get(request.tx);
        const result = await on.query(request.sql, request.params, queryOptions(request));
        return { value: result, transfer: transferables(result) };
      }
      case 'exec': {
        const on = request.tx === undefined ? pg : transactions.get(request.tx);
        const results = await on.exec(request.sql);
        return { value: results, transfer: transferables(results) };
      }
      case 'begin':
        return transactions.begin(request.tx).then(() => ({}));
      case 'rollback':
        return transactions
          .get(request.tx)
          .rollback()
          .then(() => ({}));
      case 'end':
        return transactions.finish(request.tx, request.commit).then(() => ({}));
      case 'listen':
      case 'unlisten':
        return channels(request.op, request.channel).then(() => ({}));
      case 'close':
        return pg.close().then(() => ({}));
    }
  }

  port.on('message', (request: ThreadRequest) => {
    // Not awaited: PGlite queues its statements itself (one connection), and a statement sent
    // while a transaction is open must wait behind it without blocking the transaction's own.
    handle(request).then(
      ({ value, transfer }) => post({ op: 'reply', id: request.id, ok: true, value }, transfer),
      (error: unknown) => {
        post({ op: 'reply', id: request.id, ok: false, error: serializeError(error) });
        // PGlite's WebAssembly instance is unusable after a trap: fail the thread (and with it
        // the server, loudly) instead of answering every later statement with an error.
        if (error instanceof Error && error.name === 'RuntimeError') throw error;
      },
    );
  });
}

async function main(): Promise<void> {
  const port = parentPort;
  if (!port) throw new Error('src/db/pglite-thread.ts runs as a worker thread (src/db/pglite-client.ts)');
  const init = workerData as ThreadInit;
  let pg: PGlite;
  try {
    pg = await PGlite.create(init.dataDir, {
      postgresqlconf: init.postgresqlconf,
      parsers: { [types.BYTEA]: parseBytea },
      serializers: { [types.BYTEA]: serializeBytea },
    });
  } catch (error) {
    port.postMessage({ op: 'failed', error: serializeError(error) } satisfies ThreadMessage);
    port.close();
    return;
  }
  serve(port, pg);
  port.postMessage({ op: 'ready' } satisfies ThreadMessage);
}

await main();
