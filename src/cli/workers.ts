import cluster, { type Worker } from 'node:cluster';
import { AggregatorRegistry } from 'prom-client';
import { createLogger } from '../api/logger.ts';
import { loadConfig } from '../config/config.ts';
import { startSpawnedMembers } from './partition-members.ts';
import type { ServeOptions, Serving } from './serve.ts';

/**
 * `signet serve --workers N` (issue #24): N HTTP workers (node:cluster) share the listening
 * port, the partition members and the PostgreSQL database of one node.
 *
 * - The primary process serves no HTTP and opens no database: it starts the partition members
 *   the node spawns (so there is one of each, as in a single-process node), forks the workers,
 *   restarts a worker that dies, gathers the workers' metrics for a scrape (prom-client's
 *   AggregatorRegistry, issue #29) and forwards SIGHUP (policy reload) to every worker.
 * - Rate limits are kept in PostgreSQL, shared with the other nodes (cli/rate-limits.ts).
 * - Worker 0 runs the node's background work (CRL scheduler, ACME sweeps) under the same
 *   database locks as with several nodes; the others only answer requests.
 * - Every worker is a full client of the database and the partition: issuance, its audit and its
 *   crash safety are exactly those of a single process (or of several nodes).
 */
const ENV_INDEX = 'SIGNET_WORKER_INDEX';

type ToPrimary =
  | { type: 'signet.listening'; url: string }
  | { type: 'signet.metrics'; seq: number }
  | { type: 'signet.keyRevoked'; seq: number; id: string }
  | { type: 'signet.keyDropped'; seq: number };
type ToWorker =
  | { type: 'signet.metricsGathered'; seq: number; text?: string; error?: string }
  | { type: 'signet.keyAnnounced'; seq: number }
  | { type: 'signet.dropKey'; seq: number; id: string }
  | { type: 'signet.stop' };

/** How long a revocation waits for the other workers to drop the key before answering anyway. */
const ANNOUNCE_TIMEOUT_MS = 2000;
/** prom-client's primary waits 5 s for every worker's metrics; the asking worker a little longer. */
const GATHER_TIMEOUT_MS = 6000;

export const isWorkerProcess = (): boolean => cluster.isWorker && process.env[ENV_INDEX] !== undefined;

/** In a worker: serves as HTTP worker `index`. */
export async function serveAsWorker(options: Omit<ServeOptions, 'worker'>): Promise<Serving> {
  const index = Number(process.env[ENV_INDEX]);
  let seq = 0;
  const waiting = new Map<number, (answer: ToWorker) => void>();
  let dropKey: ((id: string) => void) | undefined;
  process.on('message', (message: ToWorker) => {
    if (message?.type === 'signet.dropKey') {
      dropKey?.(message.id);
      send({ type: 'signet.keyDropped', seq: message.seq });
      return;
    }
    if (message?.type !== 'signet.metricsGathered' && message?.type !== 'signet.keyAnnounced') return;
    waiting.get(message.seq)?.(message);
    waiting.delete(message.seq);
  });
  /** One request to the primary and its answer, or an error after `ms`. */
  const ask = (message: (seq: number) => ToPrimary, ms: number) =>
    new Promise<ToWorker>((resolve, reject) => {
      const mine = ++seq;
      const timer = setTimeout(() => {
        waiting.delete(mine);
        reject(new Error('the primary process did not answer'));
      }, ms);
      waiting.set(mine, (answer) => {
        clearTimeout(timer);
        resolve(answer);
      });
      send(message(mine));
    });
  // The primary's AggregatorRegistry asks every worker for its registry (prom-client's listener,
  // installed by constructing one here); a scrape asks the primary for the sum.
  new AggregatorRegistry();
  const metrics = {
    share: (registry: Parameters<typeof AggregatorRegistry.setRegistries>[0]) =>
      AggregatorRegistry.setRegistries(registry),
    gather: async () => {
      const answer = (await ask((s) => ({ type: 'signet.metrics', seq: s }), GATHER_TIMEOUT_MS)) as Extract<
        ToWorker,
        { type: 'signet.metricsGathered' }
      >;
      if (answer.text === undefined)
        throw new Error(`the workers' metrics were not gathered: ${answer.error}`);
      return answer.text;
    },
  };
  // A key revoked here is answered once every other worker of the node has dropped it (the
  // database notification reaches them too, but not necessarily before the client's next request).
  const announceApiKeyRevocation = async (id: string) => {
    await ask((s) => ({ type: 'signet.keyRevoked', seq: s, id }), ANNOUNCE_TIMEOUT_MS + 500).catch(() => {});
  };
  // Imported here: the primary, which imports this file too, never loads the server's code.
  const { serveDataDir } = await import('./serve.ts');
  const serving = await serveDataDir({ ...options, worker: { index, announceApiKeyRevocation, metrics } });
  dropKey = (id) => serving.runtime.repositories.apiKeys.drop(id);
  send({ type: 'signet.listening', url: serving.server.url });
  return serving;
}

function send(message: ToPrimary): void {
  process.send?.(message);
}

function reply(worker: Worker, message: ToWorker): void {
  if (worker.isConnected()) worker.send(message);
}

export interface Primary {
  url: string;
  stop(): Promise<void>;
}

/** In the primary: starts the partition members, then `workers` HTTP workers; resolves once all listen. */
export async function runPrimary(dataDir: string, workers: number): Promise<Primary> {
  const config = loadConfig(dataDir);
  const level = (process.env.SIGNET_LOG_LEVEL ?? config.log.level) as 'info';
  const logger = createLogger({ level }).child({ process: 'primary' });
  const members = await startSpawnedMembers(dataDir, config, logger);
  const aggregator = new AggregatorRegistry();
  const running = new Map<number, Worker>();
  let stopping = false;
  let resolveStarted!: (url: string) => void;
  let rejectStarted!: (error: Error) => void;
  const started = new Promise<string>((resolve, reject) => {
    resolveStarted = resolve;
    rejectStarted = reject;
  });
  const listening = new Set<number>();
  let everyoneListened = false;

  const announcer = createKeyAnnouncer(running);
  const fork = (index: number) => {
    const worker = cluster.fork({ [ENV_INDEX]: String(index) });
    running.set(index, worker);
    worker.on('message', (message: ToPrimary) => {
      if (message?.type === 'signet.metrics') {
        aggregator.clusterMetrics().then(
          (text) => reply(worker, { type: 'signet.metricsGathered', seq: message.seq, text }),
          (error: Error) =>
            reply(worker, { type: 'signet.metricsGathered', seq: message.seq, error: error.message }),
        );
      } else if (message?.type === 'signet.keyRevoked') {
        void announcer.announce(index, message.id).then(() => {
          const reply: ToWorker = { type: 'signet.keyAnnounced', seq: message.seq };
          if (worker.isConnected()) worker.send(reply);
        });
      } else if (message?.type === 'signet.keyDropped') {
        announcer.dropped(message.seq);
      } else if (message?.type === 'signet.listening') {
        listening.add(index);
        if (listening.size === workers && !everyoneListened) {
          everyoneListened = true;
          resolveStarted(message.url);
        }
      }
    });
    worker.on('exit', (code, signal) => {
      if (running.get(index) === worker) running.delete(index);
      if (stopping) return;
      if (!everyoneListened) {
        rejectStarted(new Error(`HTTP worker ${index} exited during start (${signal ?? code})`));
        return;
      }
      logger.error({ worker: index, exit: signal ?? code }, 'HTTP worker died; starting it again in 1 s');
      setTimeout(() => !stopping && fork(index), 1000).unref();
    });
  };

  const onHangup = () => {
    for (const worker of running.values()) worker.process.kill('SIGHUP');
  };
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    process.off('SIGHUP', onHangup);
    await Promise.all(
      [...running.values()].map(
        (worker) =>
          new Promise<void>((resolve) => {
            if (worker.isDead()) return resolve();
            worker.once('exit', () => resolve());
            const stopMessage: ToWorker = { type: 'signet.stop' };
            worker.send(stopMessage, () => {});
            setTimeout(() => worker.process.kill('SIGKILL'), 15_000).unref();
          }),
      ),
    );
    await Promise.all(members.map((member) => member.stop()));
  };

  try {
    process.on('SIGHUP', onHangup);
    for (let index = 0; index < workers; index++) fork(index);
    const url = await started;
    logger.info({ workers, url }, 'HTTP workers listening');
    return { url, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}

/**
 * In the primary: a revoked API key is dropped by every worker but the one that revoked it;
 * `announce` resolves when all have acknowledged (or exited), or after a timeout.
 */
function createKeyAnnouncer(running: Map<number, Worker>) {
  let seq = 0;
  const waiting = new Map<number, () => void>();
  const dropBy = (worker: Worker, id: string) =>
    new Promise<void>((resolve) => {
      const mine = ++seq;
      const done = () => {
        waiting.delete(mine);
        clearTimeout(timer);
        worker.off('exit', done);
        resolve();
      };
      const timer = setTimeout(done, ANNOUNCE_TIMEOUT_MS);
      waiting.set(mine, done);
      worker.once('exit', done);
      const message: ToWorker = { type: 'signet.dropKey', seq: mine, id };
      if (worker.isConnected()) worker.send(message);
      else done();
    });
  return {
    async announce(from: number, id: string): Promise<void> {
      const others = [...running].filter(([index, worker]) => index !== from && worker.isConnected());
      await Promise.all(others.map(([, worker]) => dropBy(worker, id)));
    },
    dropped(ackSeq: number): void {
      waiting.get(ackSeq)?.();
    },
  };
}

/** In a worker: resolves when the primary asks it to stop, or is gone (its channel closed). */
export function primaryGone(): Promise<void> {
  return new Promise((resolve) => {
    process.on('message', (message: ToWorker) => {
      if (message?.type === 'signet.stop') resolve();
    });
    process.once('disconnect', () => resolve());
  });
}
