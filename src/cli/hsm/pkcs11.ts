import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { writeNewFile } from '../../hsm/custody/atomic-file.ts';
import { Pkcs11Token } from '../../hsm/pkcs11/token.ts';
import { CliError, EXIT, UsageError } from '../args.ts';

/**
 * A partition folder whose keys live on a PKCS#11 token records which token in
 * `DIR/pkcs11.json` (module path, token label or slot id; never the token PIN). `signet hsm init
 * --pkcs11-module` writes it; `signet hsm serve --dir DIR` finds it and opens the token before
 * serving (issue #25).
 */
export const PKCS11_FILE = 'pkcs11.json';

const folderSpec = z.strictObject({
  module: z.string().min(1),
  tokenLabel: z.string().min(1).max(32).optional(),
  slotId: z.number().int().min(0).optional(),
});
export type Pkcs11FolderSpec = z.infer<typeof folderSpec>;

export function readPkcs11Spec(dir: string): Pkcs11FolderSpec | undefined {
  const file = join(dir, PKCS11_FILE);
  if (!existsSync(file)) return undefined;
  try {
    return folderSpec.parse(JSON.parse(readFileSync(file, 'utf8')));
  } catch (error) {
    throw new CliError(`${file} is not a PKCS#11 token description: ${(error as Error).message}`);
  }
}

export async function writePkcs11Spec(dir: string, spec: Pkcs11FolderSpec): Promise<void> {
  await writeNewFile(join(dir, PKCS11_FILE), `${JSON.stringify(spec, null, 2)}\n`);
}

/** The token's own PIN: from the file, else SIGNET_PKCS11_PIN (never SIGNET_HSM_PIN, the partition user's). */
export function readTokenPin(file: string | undefined): string {
  if (file !== undefined) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (error) {
      throw new CliError(
        `cannot read the token PIN from ${file}: ${(error as NodeJS.ErrnoException).code ?? 'error'}`,
      );
    }
    const pin = text.replace(/\r?\n$/, '');
    if (pin.length === 0) throw new CliError(`token PIN file ${file} is empty`);
    return pin;
  }
  const fromEnv = process.env.SIGNET_PKCS11_PIN;
  if (fromEnv) return fromEnv;
  throw new UsageError('the token PIN is required: pass --token-pin-file FILE or set SIGNET_PKCS11_PIN');
}

/** Parses --slot-id: the PKCS#11 slot ID, a decimal number. */
export function parseSlotId(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  if (!/^[0-9]{1,12}$/.test(text)) throw new UsageError('--slot-id takes the PKCS#11 slot ID, a number');
  return Number(text);
}

/** Opens the token a spec names, with errors that name the PKCS#11 code (exit 1). */
export async function openToken(
  spec: Pkcs11FolderSpec,
  pin: string,
  log?: (line: string) => void,
): Promise<Pkcs11Token> {
  try {
    return await Pkcs11Token.open({
      module: spec.module,
      ...(spec.tokenLabel !== undefined ? { tokenLabel: spec.tokenLabel } : {}),
      ...(spec.slotId !== undefined ? { slotId: spec.slotId } : {}),
      pin,
      ...(log ? { log } : {}),
    });
  } catch (error) {
    throw new CliError(`cannot open the PKCS#11 token: ${(error as Error).message}`, EXIT.failed, {
      cause: error,
    });
  }
}
