import { resolveDataDir } from '../../config/config.ts';
import { parseLinkUrl } from '../../hsm/link.ts';
import { CliError, EXIT, parseCommandArgs, UsageError } from '../args.ts';
import { AlreadyInitialisedError, initDataDir } from '../init.ts';
import { parsePort } from '../server-access.ts';

export const USAGE = `usage: signet init [--data DIR] [--port N] [--public-url URL] [--partition-listen tls://HOST:PORT]

Creates a data folder (default $SIGNET_DATA, else ./data): signet.yaml, the 'issuing' and 'root'
partitions, the database, the dev-root and dev-intermediate issuers, the example policies, and
secrets (mode 0600) under DIR/secrets. Refuses to touch a folder that is already initialised.

  --partition-listen tls://HOST:PORT
      the issuing partition also listens there with mutual TLS 1.3 and the server reaches it
      that way (a dev setup of the network path); a link CA and the partition's and the
      server's certificates are written to DIR/secrets/link/`;

export async function run(argv: string[]): Promise<number> {
  const { values } = parseCommandArgs(argv, {
    data: { type: 'string' },
    port: { type: 'string' },
    'public-url': { type: 'string' },
    'partition-listen': { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  });
  if (values.help) {
    console.log(USAGE);
    return EXIT.ok;
  }
  const dataDir = resolveDataDir(values.data);
  const port = parsePort(values.port) ?? 8080;
  if (port === 0) throw new UsageError('--port 0 is not a port to write into signet.yaml');
  const partitionListen = values['partition-listen'];
  if (partitionListen !== undefined) {
    try {
      if (parseLinkUrl(partitionListen).port === 0)
        throw new Error('port 0 is not a port to write into signet.yaml');
    } catch (error) {
      throw new UsageError(`--partition-listen: ${(error as Error).message}`);
    }
  }
  try {
    const result = await initDataDir({
      dataDir,
      port,
      publicUrl: values['public-url'] ?? `http://127.0.0.1:${port}`,
      ...(partitionListen !== undefined ? { partitionListen } : {}),
      ...(process.env.DATABASE_URL ? { databaseUrl: process.env.DATABASE_URL } : {}),
      log: (line) => console.log(`signet init: ${line}`),
    });
    printInitSummary(dataDir, result);
    return EXIT.ok;
  } catch (error) {
    if (error instanceof AlreadyInitialisedError) throw new CliError(error.message);
    throw error;
  }
}

export function printInitSummary(
  dataDir: string,
  result: { configFile: string; adminKeyFile: string; unsealSecretFile: string; rootCertificateFile: string },
): void {
  console.log(`
Initialised ${dataDir}
  configuration     ${result.configFile}
  admin API key     ${result.adminKeyFile}
  root certificate  ${result.rootCertificateFile}
  unseal secret     ${result.unsealSecretFile}

WARNING: the unseal secret and the CA user's PIN are stored next to the data so the server can
start by itself. That is fine for a laptop, not for production: keep unseal material offline.
The crypto officers' PINs are in ${dataDir}/secrets/offline/: move them offline now; the server
never reads them.`);
}
