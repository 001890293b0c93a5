import { readFileSync } from 'node:fs';
import { CeremonyError } from './errors.ts';
import { type CeremonySecrets, runCeremony } from './run.ts';
import type { ValidatedCeremony } from './validate.ts';

/**
 * The bridge from `signet ceremony run`'s flags to runCeremony: secrets are read from the files
 * the flags name (DESIGN.md "Secrets on the command line"), never taken as argument values.
 */
export interface RunFlags {
  'allow-network'?: boolean | undefined;
  'officer-pin-file'?: string | undefined;
  'pin-file'?: string | undefined;
  'share-file'?: string[] | undefined;
  'secret-file'?: string | undefined;
  'online-officer-pin-file'?: string | undefined;
  'online-pin-file'?: string | undefined;
  'online-secret-file'?: string | undefined;
}

function readBytes(file: string, what: string): Uint8Array {
  try {
    const bytes = readFileSync(file);
    if (bytes.length === 0)
      throw new CeremonyError('ceremony.secret_missing', `${what} file ${file} is empty`);
    return new Uint8Array(bytes);
  } catch (error) {
    if (error instanceof CeremonyError) throw error;
    throw new CeremonyError(
      'ceremony.secret_missing',
      `cannot read ${what} from ${file}: ${(error as NodeJS.ErrnoException).code ?? 'error'}`,
    );
  }
}

/** A PIN: the file's text without its final newline (so `echo PIN > file` works). */
function readPin(file: string | undefined, what: string, env?: string): string | undefined {
  if (file !== undefined) {
    const text = Buffer.from(readBytes(file, what))
      .toString('utf8')
      .replace(/\r?\n$/, '');
    if (text.length === 0)
      throw new CeremonyError('ceremony.secret_missing', `${what} file ${file} is empty`);
    return text;
  }
  const value = env ? process.env[env] : undefined;
  return value !== undefined && value.length > 0 ? value : undefined;
}

export function secretsFromFlags(flags: RunFlags): CeremonySecrets {
  const secrets: CeremonySecrets = {};
  const officerPin = readPin(flags['officer-pin-file'], 'officer PIN');
  const userPin = readPin(flags['pin-file'], 'user PIN', 'SIGNET_HSM_PIN');
  if (officerPin !== undefined) secrets.officerPin = officerPin;
  if (userPin !== undefined) secrets.userPin = userPin;
  if (flags['share-file']?.length) {
    secrets.shares = flags['share-file'].map((file) => ({
      source: file,
      bytes: readBytes(file, 'custodian share'),
    }));
  }
  if (flags['secret-file'] !== undefined) secrets.secret = readBytes(flags['secret-file'], 'unseal secret');
  else if (process.env.SIGNET_HSM_SECRET)
    secrets.secret = new Uint8Array(Buffer.from(process.env.SIGNET_HSM_SECRET, 'utf8'));
  const onlineOfficerPin = readPin(flags['online-officer-pin-file'], 'online officer PIN');
  const onlineUserPin = readPin(flags['online-pin-file'], 'online user PIN');
  if (onlineOfficerPin !== undefined) secrets.onlineOfficerPin = onlineOfficerPin;
  if (onlineUserPin !== undefined) secrets.onlineUserPin = onlineUserPin;
  if (flags['online-secret-file'] !== undefined) {
    secrets.onlineSecret = readBytes(flags['online-secret-file'], 'online unseal secret');
  }
  return secrets;
}

export async function runCeremonyFromCli(validated: ValidatedCeremony, flags: RunFlags): Promise<number> {
  const result = await runCeremony(validated, {
    secrets: secretsFromFlags(flags),
    allowNetwork: flags['allow-network'] === true,
  });
  console.log(
    `Ceremony completed. Transcript: ${result.transcriptPath} (+ ${result.markdownPath}, ${result.signaturePath}${result.cmsPath ? `, ${result.cmsPath}` : ''})`,
  );
  for (const key of result.keys)
    console.log(`  key ${key.role}: ${key.uri}  SHA-256(SPKI) ${key.publicKeySha256}`);
  for (const output of result.outputs) console.log(`  wrote ${output.path}  SHA-256 ${output.sha256}`);
  return 0;
}
