import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { loadConfig, resolveIn } from '../config/config.ts';
import { readSecret, UsageError } from './args.ts';

/**
 * How the commands that go through a running server (`issue`, `revoke`, `crl import`, `apikey`:
 * DESIGN.md "CLI and a running server") find it and authenticate, all alike (issue #33): the
 * server `signet serve` on that data folder would be, and the data folder's admin API key.
 */

/** `--port`, else SIGNET_PORT, as `signet serve` reads them; undefined when neither is given. */
export function parsePort(text: string | undefined): number | undefined {
  const value = text ?? process.env.SIGNET_PORT;
  if (value === undefined) return undefined;
  const port = Number(value);
  if (value.trim() === '' || !Number.isInteger(port) || port < 0 || port > 65535)
    throw new UsageError(
      `${text === undefined ? 'SIGNET_PORT' : '--port'} ${value} is not a port (0 to 65535)`,
    );
  return port;
}

/** A listening address as a client reaches it: a wildcard means this machine. */
function clientHost(host: string): string {
  if (host === '0.0.0.0' || host === '') return '127.0.0.1';
  if (host === '::') return '[::1]';
  return host.includes(':') ? `[${host}]` : host;
}

/**
 * The server's URL: `--url`, else where `signet serve` listens on this data folder (SIGNET_PORT,
 * else signet.yaml's server.host and server.port), else the default 127.0.0.1:8080 (SIGNET_PORT
 * still counts).
 */
export function serverUrl(dataDir: string, flag?: string): string {
  if (flag !== undefined) return flag;
  const port = parsePort(undefined);
  if (!existsSync(path.join(dataDir, 'signet.yaml'))) return `http://127.0.0.1:${port ?? 8080}`;
  const { server } = loadConfig(dataDir);
  return `${server.tls ? 'https' : 'http'}://${clientHost(server.host)}:${port ?? server.port}`;
}

/**
 * The API key: `--api-key-file`, else SIGNET_API_KEY, else the data folder's admin key
 * (DIR/secrets/admin-api-key, written by `signet init`).
 */
export function apiKeyFor(dataDir: string, file: string | undefined): string {
  if (file !== undefined) return readSecret({ file, what: 'an API key' });
  if (process.env.SIGNET_API_KEY) return process.env.SIGNET_API_KEY;
  const adminKey = resolveIn(dataDir, 'secrets/admin-api-key');
  try {
    return readFileSync(adminKey, 'utf8').trim();
  } catch {
    throw new UsageError(
      `an API key is needed: pass --api-key-file FILE or set SIGNET_API_KEY (${adminKey} cannot be read)`,
    );
  }
}
