import { existsSync } from 'node:fs';
import path from 'node:path';
import { resolveDataDir } from '../../config/config.ts';
import { EXIT, parseCommandArgs } from '../args.ts';
import { initDataDir } from '../init.ts';
import { parsePort } from '../server-access.ts';
import { tryItExample } from '../try-it.ts';
import { printInitSummary } from './init.ts';
import { SERVE_OPTIONS, serveUntilStopped } from './serve.ts';

export const USAGE = `usage: signet start [--data DIR] [--port N]

The quick start: initialises the data folder (default ./data) if it is not yet, then serves, and
prints an example that issues a certificate from it.`;

export async function run(argv: string[]): Promise<number> {
  const { values } = parseCommandArgs(argv, SERVE_OPTIONS);
  if (values.help) {
    console.log(USAGE);
    return EXIT.ok;
  }
  const dataDir = resolveDataDir(values.data);
  if (!existsSync(path.join(dataDir, 'signet.yaml'))) {
    const port = parsePort(values.port) ?? 8080;
    const result = await initDataDir({
      dataDir,
      port,
      publicUrl: `http://127.0.0.1:${port}`,
      ...(process.env.DATABASE_URL ? { databaseUrl: process.env.DATABASE_URL } : {}),
      log: (line) => console.log(`signet init: ${line}`),
    });
    printInitSummary(dataDir, result);
  }
  // The example only once the server listens: it names the address it really took, and a start
  // that fails (another process holds the folder) prints nothing to try.
  return serveUntilStopped(dataDir, values, (url) => console.log(tryItExample({ dataDir, url })));
}
