import { isAbsolute, resolve } from 'node:path';
import { resolveDataDir } from '../../config/config.ts';
import { parseLinkUrl } from '../../hsm/link.ts';
import { CliError, EXIT, parseCommandArgs, UsageError } from '../args.ts';
import { readTokenPin } from '../hsm/pkcs11.ts';
import { AlreadyInitialisedError, type InitOptions, initDataDir } from '../init.ts';
import { parsePort } from '../server-access.ts';

export const USAGE = `usage: signet init [--data DIR] [--port N] [--public-url URL] [--partition-listen tls://HOST:PORT]
                   [--pkcs11-module PATH --token-label L [--root-token-label R] [--token-pin-file FILE]]

Creates a data folder (default $SIGNET_DATA, else ./data): signet.yaml, the 'issuing' and 'root'
partitions, the database, the dev-root and dev-intermediate issuers, the example policies, and
secrets (mode 0600) under DIR/secrets. Refuses to touch a folder that is already initialised.

  --pkcs11-module PATH    keep both partitions' keys on PKCS#11 tokens reached through this module
  --token-label L         the token for the issuing key (and the root key, unless --root-token-label)
  --root-token-label R    a separate token for the dev root's key
  --token-pin-file FILE   the tokens' user PIN (else SIGNET_PKCS11_PIN); signet.yaml refers to this
                          file (tokenPinFile), it is not copied; with SIGNET_PKCS11_PIN, the server
                          needs SIGNET_PKCS11_PIN set too

  --partition-listen tls://HOST:PORT
      the issuing partition also listens there with mutual TLS 1.3 and the server reaches it
      that way (a dev setup of the network path); a link CA and the partition's and the
      server's certificates are written to DIR/secrets/link/`;

export async function run(argv: string[]): Promise<number> {
  const { values } = parseCommandArgs(argv, {
    data: { type: 'string' },
    port: { type: 'string' },
    'public-url': { type: 'string' },
    'pkcs11-module': { type: 'string' },
    'token-label': { type: 'string' },
    'root-token-label': { type: 'string' },
    'token-pin-file': { type: 'string' },
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
  const pkcs11 = pkcs11Init(values);
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
      ...(pkcs11 ? { pkcs11 } : {}),
      log: (line) => console.log(`signet init: ${line}`),
    });
    printInitSummary(dataDir, result);
    return EXIT.ok;
  } catch (error) {
    if (error instanceof AlreadyInitialisedError) throw new CliError(error.message);
    throw error;
  }
}

function pkcs11Init(values: {
  'pkcs11-module'?: string;
  'token-label'?: string;
  'root-token-label'?: string;
  'token-pin-file'?: string;
}): InitOptions['pkcs11'] {
  const module = values['pkcs11-module'];
  if (module === undefined) {
    if ((values['token-label'] ?? values['root-token-label'] ?? values['token-pin-file']) !== undefined)
      throw new UsageError('--token-label, --root-token-label and --token-pin-file need --pkcs11-module');
    return undefined;
  }
  if (!isAbsolute(module)) throw new UsageError('--pkcs11-module takes an absolute path');
  if (values['token-label'] === undefined) throw new UsageError('--pkcs11-module needs --token-label L');
  const pinFile = values['token-pin-file'] === undefined ? undefined : resolve(values['token-pin-file']);
  return {
    module,
    tokenLabel: values['token-label'],
    ...(values['root-token-label'] !== undefined ? { rootTokenLabel: values['root-token-label'] } : {}),
    pin: readTokenPin(pinFile),
    ...(pinFile !== undefined ? { pinFile } : {}),
  };
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
