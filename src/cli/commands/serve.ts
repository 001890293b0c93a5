import { availableParallelism } from 'node:os';
import { loadConfig, resolveDataDir } from '../../config/config.ts';
import { EXIT, parseCommandArgs, UsageError } from '../args.ts';
import type { Serving } from '../serve.ts';
import { parsePort } from '../server-access.ts';
import { isWorkerProcess, primaryGone, runPrimary, serveAsWorker } from '../workers.ts';

export const USAGE = `usage: signet serve [--data DIR] [--port N] [--host ADDR] [--workers N]
                    [--tls-cert FILE --tls-key FILE [--client-ca FILE]]

Runs the CA server on the data folder (default $SIGNET_DATA, else ./data) with its partition
process. Listens on 127.0.0.1:8080 unless told otherwise (--port, SIGNET_PORT, signet.yaml).
With PostgreSQL, --workers N (signet.yaml server.workers; default: the number of cores) runs N
HTTP worker processes sharing the port; the embedded database allows one (--workers 1).
Ctrl-C stops everything cleanly; SIGHUP reloads the policies.`;

export const SERVE_OPTIONS = {
  data: { type: 'string' },
  port: { type: 'string' },
  host: { type: 'string' },
  'tls-cert': { type: 'string' },
  'tls-key': { type: 'string' },
  'client-ca': { type: 'string' },
  workers: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

/** Serves until SIGINT or SIGTERM; `onServing` is told the URL once the server listens. */
export async function serveUntilStopped(
  dataDir: string,
  values: {
    port?: string;
    host?: string;
    'tls-cert'?: string;
    'tls-key'?: string;
    'client-ca'?: string;
    workers?: string;
  },
  onServing?: (url: string) => void,
): Promise<number> {
  if (Boolean(values['tls-cert']) !== Boolean(values['tls-key'])) {
    throw new UsageError('--tls-cert and --tls-key go together');
  }
  const port = parsePort(values.port);
  const options = {
    dataDir,
    ...(port === undefined ? {} : { port }),
    ...(values.host ? { host: values.host } : {}),
    ...(values['tls-cert'] && values['tls-key']
      ? {
          tls: {
            cert: values['tls-cert'],
            key: values['tls-key'],
            ...(values['client-ca'] ? { clientCa: values['client-ca'] } : {}),
          },
        }
      : {}),
  };
  if (isWorkerProcess()) {
    const serving = await serveAsWorker(options);
    await Promise.race([primaryGone(), stopSignal()]);
    await serving.stop();
    // A worker whose primary is gone must not linger on a handle the primary shared with it.
    process.exit(EXIT.ok);
  }
  const workers = workerCount(dataDir, values.workers);
  let stopServing: () => Promise<void>;
  if (workers > 1) {
    const primary = await runPrimary(dataDir, workers);
    console.log(`signet: serving ${primary.url} with ${workers} HTTP workers (data ${dataDir})`);
    onServing?.(primary.url);
    stopServing = () => primary.stop();
  } else {
    // Loaded here, not at the top: the primary of --workers N never needs the server's code.
    const { serveDataDir } = await import('../serve.ts');
    const serving: Serving = await serveDataDir(options);
    console.log(`signet: serving ${serving.server.url} (data ${dataDir})`);
    onServing?.(serving.server.url);
    stopServing = () => serving.stop();
  }
  await stopSignal();
  console.log('signet: stopping');
  await stopServing();
  return EXIT.ok;
}

function stopSignal(): Promise<void> {
  return new Promise<void>((resolve) => {
    const stop = () => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      resolve();
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
}

/**
 * `--workers`, else signet.yaml's server.workers, else every core with PostgreSQL; one with the
 * embedded database, which only one process may open (a usage error when more are asked for).
 */
export function workerCount(dataDir: string, flag: string | undefined): number {
  const config = loadConfig(dataDir);
  const postgres = Boolean(process.env.DATABASE_URL ?? config.database.url);
  let workers = config.server.workers;
  if (flag !== undefined) {
    workers = Number(flag);
    if (flag.trim() === '' || !Number.isInteger(workers) || workers < 1 || workers > 256) {
      throw new UsageError(`--workers ${flag} is not a number of workers (1 to 256)`);
    }
  }
  if (workers === undefined) return postgres ? availableParallelism() : 1;
  if (workers > 1 && !postgres) {
    throw new UsageError(
      `--workers ${workers}: the embedded database (PGlite) can be opened by one process only; use PostgreSQL (DATABASE_URL or database.url in signet.yaml) for several HTTP workers, or --workers 1`,
    );
  }
  return workers;
}

export async function run(argv: string[]): Promise<number> {
  const { values } = parseCommandArgs(argv, SERVE_OPTIONS);
  if (values.help) {
    console.log(USAGE);
    return EXIT.ok;
  }
  return serveUntilStopped(resolveDataDir(values.data), values);
}
