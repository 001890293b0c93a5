import { resolveDataDir } from '../../config/config.ts';
import { EXIT, parseCommandArgs, UsageError } from '../args.ts';
import { serveDataDir } from '../serve.ts';
import { parsePort } from '../server-access.ts';

export const USAGE = `usage: signet serve [--data DIR] [--port N] [--host ADDR]
                    [--tls-cert FILE --tls-key FILE [--client-ca FILE]]

Runs the CA server on the data folder (default $SIGNET_DATA, else ./data) with its partition
process. Listens on 127.0.0.1:8080 unless told otherwise (--port, SIGNET_PORT, signet.yaml).
Ctrl-C stops both cleanly; SIGHUP reloads the policies.`;

export const SERVE_OPTIONS = {
  data: { type: 'string' },
  port: { type: 'string' },
  host: { type: 'string' },
  'tls-cert': { type: 'string' },
  'tls-key': { type: 'string' },
  'client-ca': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

/** Serves until SIGINT or SIGTERM; `onServing` is told the URL once the server listens. */
export async function serveUntilStopped(
  dataDir: string,
  values: { port?: string; host?: string; 'tls-cert'?: string; 'tls-key'?: string; 'client-ca'?: string },
  onServing?: (url: string) => void,
): Promise<number> {
  if (Boolean(values['tls-cert']) !== Boolean(values['tls-key'])) {
    throw new UsageError('--tls-cert and --tls-key go together');
  }
  const port = parsePort(values.port);
  const serving = await serveDataDir({
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
  });
  console.log(`signet: serving ${serving.server.url} (data ${dataDir})`);
  onServing?.(serving.server.url);
  await new Promise<void>((resolve) => {
    const stop = () => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      console.log('signet: stopping');
      serving.stop().finally(resolve);
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
  return EXIT.ok;
}

export async function run(argv: string[]): Promise<number> {
  const { values } = parseCommandArgs(argv, SERVE_OPTIONS);
  if (values.help) {
    console.log(USAGE);
    return EXIT.ok;
  }
  return serveUntilStopped(resolveDataDir(values.data), values);
}
