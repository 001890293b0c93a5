import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writePkcs11Spec } from '../../src/cli/hsm/pkcs11.ts';
import { RemotePartition } from '../../src/hsm/client.ts';
import { initPartition } from '../../src/hsm/custody/index.ts';
import { type PartitionProcess, startPartitionProcess } from '../../src/hsm/process.ts';
import { hasFile, hasTool } from './tools.ts';

/** Debian's softhsm2 (NOTES.md "PKCS#11 (SoftHSM2)"). */
export const SOFTHSM_MODULE = '/usr/lib/softhsm/libsofthsm2.so';

/**
 * Whether SoftHSM2 is here. Locally a missing SoftHSM2 skips the suites that need it; with
 * CI=true it fails them (the brief's rule: .ci/run installs softhsm2).
 */
export function softHsmAvailable(): boolean {
  return hasFile(SOFTHSM_MODULE, 'softhsm2') && hasTool('softhsm2-util', ['--version']);
}

export interface SoftHsmToken {
  /** The SOFTHSM2_CONF to run the module with. */
  conf: string;
  dir: string;
  label: string;
  pin: string;
  soPin: string;
  module: string;
  /** A file holding the token PIN, mode 0600. */
  pinFile: string;
  /** Another token in the same folder (for the root key on its own token). */
  addToken(label: string): void;
  cleanup(): void;
}

/** A fresh SoftHSM2 token store in a temporary folder, with one token initialised. */
export function createSoftHsmToken(label = 'signet-test'): SoftHsmToken {
  const dir = mkdtempSync(join(tmpdir(), 'softhsm-'));
  const tokens = join(dir, 'tokens');
  mkdirSync(tokens);
  const conf = join(dir, 'softhsm2.conf');
  writeFileSync(conf, `directories.tokendir = ${tokens}\nobjectstore.backend = file\nlog.level = ERROR\n`);
  const pin = 'token-pin-2468';
  const soPin = 'token-so-pin-1357';
  const pinFile = join(dir, 'token-pin');
  writeFileSync(pinFile, `${pin}\n`, { mode: 0o600 });
  const addToken = (tokenLabel: string) => {
    const r = spawnSync(
      'softhsm2-util',
      ['--init-token', '--free', '--label', tokenLabel, '--pin', pin, '--so-pin', soPin],
      { env: { ...process.env, SOFTHSM2_CONF: conf }, encoding: 'utf8' },
    );
    if (r.status !== 0) throw new Error(`softhsm2-util --init-token failed: ${r.stderr}${r.stdout}`);
  };
  addToken(label);
  return {
    conf,
    dir,
    label,
    pin,
    soPin,
    module: SOFTHSM_MODULE,
    pinFile,
    addToken,
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}

export interface Pkcs11TestPartition {
  token: SoftHsmToken;
  dir: string;
  socketPath: string;
  secret: Uint8Array;
  process: PartitionProcess;
  /** A client logged in as the officer (unsealing first if the partition is sealed). */
  officer(): Promise<RemotePartition>;
  /** A client logged in as the crypto user 'ca'. */
  user(): Promise<RemotePartition>;
  stop(): Promise<void>;
}

export const PKCS11_OFFICER = { name: 'officer', pin: 'officer-pin-0001' };
export const PKCS11_USER = { name: 'ca', pin: 'ca-user-pin-0001' };

/**
 * A real partition folder whose keys live on a fresh SoftHSM2 token, served by a real
 * `signet hsm serve --dir DIR --token-pin-file FILE` process (issue #25).
 */
export async function startPkcs11Partition(
  options: { name?: string; token?: SoftHsmToken } = {},
): Promise<Pkcs11TestPartition> {
  const name = options.name ?? 'issuing';
  const token = options.token ?? createSoftHsmToken(`${name}-token`);
  const dir = join(token.dir, name);
  let secret: Uint8Array | undefined;
  await initPartition({
    dir,
    name,
    sealing: { kind: 'secret' },
    officerPin: PKCS11_OFFICER.pin,
    userPin: PKCS11_USER.pin,
    pinHash: { ln: 10, r: 8, p: 1 },
    saveSecrets: async (secrets) => {
      secret = new Uint8Array(Buffer.from(secrets.secret!, 'utf8'));
    },
  });
  await writePkcs11Spec(dir, { module: token.module, tokenLabel: token.label });
  const socketPath = join(token.dir, 'p.sock');
  const child = await startPartitionProcess({
    dir,
    socketPath,
    args: ['--token-pin-file', token.pinFile],
    env: { ...process.env, SOFTHSM2_CONF: token.conf },
  });
  const clients: RemotePartition[] = [];
  const client = async (who: { name: string; pin: string }) => {
    const c = await RemotePartition.connect({
      socketPath,
      onConnect: async (p) => {
        const status = await p.status();
        if (status.state === 'sealed') await p.unseal({ secret: secret! });
        await p.login({ user: who.name, pin: who.pin });
      },
    });
    clients.push(c);
    return c;
  };
  return {
    token,
    dir,
    socketPath,
    secret: secret!,
    process: child,
    officer: () => client(PKCS11_OFFICER),
    user: () => client(PKCS11_USER),
    async stop() {
      await Promise.all(clients.map((c) => c.close()));
      await child.stop();
      if (!options.token) token.cleanup();
    },
  };
}
