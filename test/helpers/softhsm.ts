import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
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
