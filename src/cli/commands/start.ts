import { existsSync } from 'node:fs';
import path from 'node:path';
import { resolveDataDir } from '../../config/config.ts';
import { EXIT, parseCommandArgs } from '../args.ts';
import { initDataDir } from '../init.ts';
import { printInitSummary } from './init.ts';
import { parsePort, SERVE_OPTIONS, serveUntilStopped } from './serve.ts';

const USAGE = `usage: signet start [--data DIR] [--port N]

The quick start: initialises the data folder (default ./data) if it is not yet, then serves.`;

export async function run(argv: string[]): Promise<number> {
  const { values } = parseCommandArgs(argv, SERVE_OPTIONS);
  if (values.help) {
    console.log(USAGE);
    return EXIT.ok;
  }
  const dataDir = resolveDataDir(values.data);
  const port = parsePort(values.port) ?? 8080;
  if (!existsSync(path.join(dataDir, 'signet.yaml'))) {
    const result = await initDataDir({
      dataDir,
      port,
      publicUrl: `http://127.0.0.1:${port}`,
      ...(process.env.DATABASE_URL ? { databaseUrl: process.env.DATABASE_URL } : {}),
      log: (line) => console.log(`signet init: ${line}`),
    });
    printInitSummary(dataDir, result);
  }
  const rel = path.relative(process.cwd(), dataDir) || '.';
  console.log(`
Try it (in another terminal):
  export SIGNET_API_KEY=$(cat ${rel}/secrets/admin-api-key)
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout www.key \\
    -subj /CN=www.example.com -addext subjectAltName=DNS:www.example.com -out www.csr
  curl -s -H "Authorization: Bearer $SIGNET_API_KEY" -H 'Content-Type: application/pkcs10' \\
    --data-binary @www.csr "http://127.0.0.1:${port}/v1/certificates?policy=web-server" \\
    -H 'Accept: application/pem-certificate-chain' > www.pem
  openssl verify -CAfile ${rel}/certs/dev-root.pem -untrusted www.pem www.pem
`);
  return serveUntilStopped(dataDir, values);
}
