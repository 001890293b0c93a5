import { type SpawnSyncReturns, spawn, spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { hasFile, hasTool } from '../../helpers/tools.ts';

/**
 * Real PKCS#11 consumers from Debian, for the partition's p11-kit socket: p11-kit's client module
 * (p11-kit-modules), pkcs11-tool (opensc), OpenSSL's pkcs11 engine (libengine-pkcs11-openssl).
 */
export const P11_KIT_CLIENT = '/usr/lib/x86_64-linux-gnu/pkcs11/p11-kit-client.so';
export const PKCS11_ENGINE = '/usr/lib/x86_64-linux-gnu/engines-3/pkcs11.so';

/** Whether every consumer is here (skips locally, fails under CI=true otherwise). */
export function haveConsumers(): boolean {
  return (
    hasTool('openssl', ['version']) &&
    hasTool('pkcs11-tool', ['--help']) &&
    hasFile(P11_KIT_CLIENT, 'p11-kit-modules') &&
    hasFile(PKCS11_ENGINE, 'libengine-pkcs11-openssl')
  );
}

/** The environment that points p11-kit-client.so at a partition's PKCS#11 socket. */
export const p11Env = (p11Socket: string): NodeJS.ProcessEnv => ({
  ...process.env,
  P11_KIT_SERVER_ADDRESS: `unix:path=${p11Socket}`,
});

export interface Run {
  status: number | null;
  /** stdout and stderr together. */
  output: string;
}

const joined = (r: SpawnSyncReturns<string>): Run => ({ status: r.status, output: `${r.stdout}${r.stderr}` });

/** pkcs11-tool on p11-kit-client.so. The partition runs in another process, so a synchronous run is fine. */
export function pkcs11Tool(p11Socket: string, args: string[]): Run {
  return joined(
    spawnSync('pkcs11-tool', ['--module', P11_KIT_CLIENT, ...args], {
      encoding: 'utf8',
      env: p11Env(p11Socket),
    }),
  );
}

/** pkcs11-tool without blocking this process's event loop (for a partition served from this process). */
export function pkcs11ToolAsync(p11Socket: string, args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    const child = spawn('pkcs11-tool', ['--module', P11_KIT_CLIENT, ...args], { env: p11Env(p11Socket) });
    let output = '';
    child.stdout.on('data', (d) => {
      output += d;
    });
    child.stderr.on('data', (d) => {
      output += d;
    });
    child.on('close', (status) => resolve({ status, output }));
  });
}

/**
 * An OPENSSL_CONF that loads the pkcs11 engine on p11-kit-client.so (libp11 would load
 * p11-kit-proxy otherwise) and initialises it at start, as nginx needs: nginx asks the engine for
 * a key without initialising it.
 */
export function writeOpensslConf(dir: string): string {
  const file = join(dir, 'openssl-pkcs11.cnf');
  writeFileSync(
    file,
    [
      'openssl_conf = openssl_init',
      '[openssl_init]',
      'engines = engine_section',
      '[engine_section]',
      'pkcs11 = pkcs11_section',
      '[pkcs11_section]',
      'engine_id = pkcs11',
      `dynamic_path = ${PKCS11_ENGINE}`,
      `MODULE_PATH = ${P11_KIT_CLIENT}`,
      'init = 1',
      '',
    ].join('\n'),
  );
  return file;
}

/** openssl with the pkcs11 engine configured. */
export function opensslEngine(p11Socket: string, conf: string, args: string[]): Run {
  return joined(
    spawnSync('openssl', args, { encoding: 'utf8', env: { ...p11Env(p11Socket), OPENSSL_CONF: conf } }),
  );
}

export function openssl(args: string[]): Run {
  return joined(spawnSync('openssl', args, { encoding: 'utf8' }));
}
