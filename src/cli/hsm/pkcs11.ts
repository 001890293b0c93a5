import { readFileSync } from 'node:fs';
import { type Pkcs11FolderSpec, readPkcs11Spec as readSpec } from '../../hsm/pkcs11/folder.ts';
import { Pkcs11Token } from '../../hsm/pkcs11/token.ts';
import { CliError, EXIT, UsageError } from '../args.ts';

export { type Pkcs11FolderSpec, writePkcs11Spec } from '../../hsm/pkcs11/folder.ts';

/** The folder's token (pkcs11.json), or undefined for an emulated partition. */
export function readPkcs11Spec(dir: string): Pkcs11FolderSpec | undefined {
  try {
    return readSpec(dir);
  } catch (error) {
    throw new CliError((error as Error).message.replace(/^CKR_ARGUMENTS_BAD: /, ''));
  }
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
