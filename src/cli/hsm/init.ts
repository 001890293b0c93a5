import { existsSync, mkdirSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { writeNewFile } from '../../hsm/custody/atomic-file.ts';
import { initPartition, type PartitionSecrets } from '../../hsm/custody/index.ts';
import { CliError, EXIT, parseCommandArgs, readSecretFile, UsageError } from '../args.ts';
import { hsmFailure } from './connect.ts';
import { openToken, type Pkcs11FolderSpec, parseSlotId, readTokenPin, writePkcs11Spec } from './pkcs11.ts';
import { promptSecret } from './unseal.ts';

export const USAGE = `usage: signet hsm init --dir DIR (--secret-out FILE | --shares N --threshold M --shares-out FOLDER)
                      --officer-pin-file FILE [--user-pin-file FILE] [--name NAME] [--json]
                      [--pkcs11-module PATH --token-label L [--slot-id N] [--token-pin-file FILE]]

Creates a sealed partition in a new folder: a random master key sealed under a new unseal secret,
or split into N custodian shares of which any M unseal it; the crypto officer 'officer' and the
crypto user 'ca'. The secret or the shares are written once, mode 0600, and exist nowhere else:
an existing file is never overwritten.

  --dir DIR                the new partition folder (absent or empty)
  --name NAME              partition name in key URIs; default the folder's name
  --secret-out FILE        write the unseal secret here
  --shares N               split the unseal key into N shares (2..255) ...
  --threshold M            ... any M of which unseal (2..N)
  --shares-out FOLDER      write share-NAME-I-of-N.txt files here, one per custodian
  --officer-pin-file FILE  the officer's PIN, chosen by the operator (else SIGNET_HSM_PIN, else a prompt)
  --user-pin-file FILE     the PIN of the crypto user 'ca'; without it 'ca' cannot log in until the
                           officer sets its PIN ('signet hsm user pin ca')
  --pkcs11-module PATH     keep the partition's keys on a PKCS#11 token reached through this module
                           (its users, PINs, lockout and audit log stay in DIR); the token must exist
  --token-label L          the token's label (preferred way to choose it)
  --slot-id N              the PKCS#11 slot ID, when the label does not single the token out
  --token-pin-file FILE    the token's own user PIN (else SIGNET_PKCS11_PIN); checked now, never stored
  --json                   print JSON`;

/** A PIN from its file, else SIGNET_HSM_PIN, else typed twice at a prompt. */
export async function readNewPin(
  file: string | undefined,
  what: string,
  env = 'SIGNET_HSM_PIN',
): Promise<string> {
  if (file !== undefined) return readSecretFile(file, what);
  const fromEnv = process.env[env];
  if (fromEnv) return fromEnv;
  if (!process.stdin.isTTY) throw new UsageError(`${what} is required: pass its file or set ${env}`);
  const first = await promptSecret(`${what}: `);
  const second = await promptSecret(`${what} again: `);
  if (first !== second) throw new CliError(`the two ${what}s differ`);
  return first;
}

function parseCount(text: string | undefined, flag: string): number {
  if (text === undefined || !/^[0-9]{1,3}$/.test(text)) throw new UsageError(`${flag} takes a number`);
  return Number(text);
}

// biome-ignore lint/complexity/noExcessiveLinesPerFunction: the command's options read, checked and carried out in one straight line, as every hsm command
export async function run(argv: string[]): Promise<number> {
  const { values } = parseCommandArgs(argv, {
    dir: { type: 'string' },
    name: { type: 'string' },
    'secret-out': { type: 'string' },
    shares: { type: 'string' },
    threshold: { type: 'string' },
    'shares-out': { type: 'string' },
    'officer-pin-file': { type: 'string' },
    'user-pin-file': { type: 'string' },
    json: { type: 'boolean' },
    'pkcs11-module': { type: 'string' },
    'token-label': { type: 'string' },
    'slot-id': { type: 'string' },
    'token-pin-file': { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  });
  if (values.help) {
    console.log(USAGE);
    return EXIT.ok;
  }
  if (!values.dir) throw new UsageError('--dir DIR is required');
  const withShares =
    values.shares !== undefined || values.threshold !== undefined || values['shares-out'] !== undefined;
  if (withShares === (values['secret-out'] !== undefined)) {
    throw new UsageError('pass either --secret-out FILE or --shares N --threshold M --shares-out FOLDER');
  }
  const pkcs11 = pkcs11Options(values);
  const name = values.name ?? basename(resolve(values.dir));
  let sealing: Parameters<typeof initPartition>[0]['sealing'] = { kind: 'secret' };
  let shareFiles: string[] = [];
  if (withShares) {
    const shares = parseCount(values.shares, '--shares');
    const threshold = parseCount(values.threshold, '--threshold');
    if (!values['shares-out']) throw new UsageError('--shares-out FOLDER is required with --shares');
    if (shares < 2 || shares > 255 || threshold < 2 || threshold > shares) {
      throw new UsageError('shares must satisfy 2 <= --threshold <= --shares <= 255');
    }
    sealing = { kind: 'shares', shares, threshold };
    shareFiles = Array.from({ length: shares }, (_, i) =>
      join(values['shares-out']!, `share-${name}-${i + 1}-of-${shares}.txt`),
    );
  }
  // Refuse before creating anything: the outputs are written once and never overwritten.
  for (const file of values['secret-out'] ? [values['secret-out']] : shareFiles) {
    if (existsSync(file)) throw new CliError(`${file} exists: unseal material is never overwritten`);
  }
  // The token is checked before anything is written: a wrong PIN or label leaves no folder behind.
  if (pkcs11) {
    const token = await openToken(pkcs11, readTokenPin(values['token-pin-file']));
    pkcs11.tokenLabel = token.label;
    await token.close();
  }
  const officerPin = await readNewPin(values['officer-pin-file'], 'officer PIN');
  const userPin = values['user-pin-file']
    ? readSecretFile(values['user-pin-file'], 'ca user PIN')
    : undefined;

  const written: string[] = [];
  const saveSecrets = async (secrets: PartitionSecrets) => {
    if (secrets.secret !== undefined) {
      await writeNewFile(values['secret-out']!, secrets.secret);
      written.push(values['secret-out']!);
      return;
    }
    mkdirSync(values['shares-out']!, { recursive: true, mode: 0o700 });
    for (const [i, text] of (secrets.shares ?? []).entries()) {
      await writeNewFile(shareFiles[i]!, text);
      written.push(shareFiles[i]!);
    }
  };
  let secrets: PartitionSecrets;
  try {
    secrets = await initPartition({ dir: values.dir, name, sealing, officerPin, userPin, saveSecrets });
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EEXIST')
      throw new CliError(
        `${(error as { path?: string }).path ?? 'an output'} exists: unseal material is never overwritten`,
      );
    throw hsmFailure(error);
  }
  if (pkcs11) await writePkcs11Spec(values.dir, pkcs11);
  const summary = {
    partitionId: secrets.partitionId,
    name,
    dir: values.dir,
    backend: pkcs11 ? 'pkcs11' : 'emulated',
    ...(pkcs11 ? { token: { label: pkcs11.tokenLabel, module: pkcs11.module } } : {}),
    sealing:
      sealing.kind === 'secret'
        ? { kind: 'secret' }
        : { kind: 'shares', threshold: sealing.threshold, shares: sealing.shares },
    users: userPin === undefined ? ['officer', 'ca (no PIN yet)'] : ['officer', 'ca'],
    files: written,
  };
  if (values.json) {
    console.log(JSON.stringify(summary, null, 2));
  } else {
    console.log(`partition ${name} (${secrets.partitionId}) created in ${values.dir}, sealed`);
    if (pkcs11)
      console.log(
        `its keys live on token ${pkcs11.tokenLabel} (module ${pkcs11.module}); serve it with the token PIN in --token-pin-file or SIGNET_PKCS11_PIN`,
      );
    console.log(
      sealing.kind === 'secret'
        ? `unseal secret written to ${written[0]}: keep it offline, apart from the partition folder`
        : `${sealing.shares} custodian shares written, any ${sealing.threshold} unseal; hand one to each custodian and delete these copies:\n  ${written.join('\n  ')}`,
    );
    if (userPin === undefined)
      console.log("user 'ca' has no PIN yet: the officer sets it with 'signet hsm user pin ca'");
  }
  return EXIT.ok;
}

function pkcs11Options(values: {
  'pkcs11-module'?: string;
  'token-label'?: string;
  'slot-id'?: string;
  'token-pin-file'?: string;
}): Pkcs11FolderSpec | undefined {
  const module = values['pkcs11-module'];
  if (module === undefined) {
    if ((values['token-label'] ?? values['slot-id'] ?? values['token-pin-file']) !== undefined)
      throw new UsageError('--token-label, --slot-id and --token-pin-file need --pkcs11-module');
    return undefined;
  }
  if (!module.startsWith('/')) throw new UsageError('--pkcs11-module takes an absolute path');
  const slotId = parseSlotId(values['slot-id']);
  if (values['token-label'] === undefined && slotId === undefined)
    throw new UsageError('--pkcs11-module needs --token-label L (or --slot-id N)');
  return {
    module,
    ...(values['token-label'] !== undefined ? { tokenLabel: values['token-label'] } : {}),
    ...(slotId !== undefined ? { slotId } : {}),
  };
}
