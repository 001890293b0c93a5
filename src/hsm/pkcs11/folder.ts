import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { writeNewFile } from '../custody/atomic-file.ts';
import { HsmError } from '../types.ts';

/**
 * A partition folder whose keys live on a PKCS#11 token records which token in
 * `DIR/pkcs11.json`: the module path and the token label or slot id, never the token PIN.
 * `signet hsm init --pkcs11-module`, `signet init --pkcs11-module` and a ceremony that creates
 * its partition on a token write it; `signet hsm serve --dir DIR` opens that token (issue #25).
 */
export const PKCS11_FILE = 'pkcs11.json';

const folderSpec = z.strictObject({
  module: z.string().min(1),
  tokenLabel: z.string().min(1).max(32).optional(),
  slotId: z.number().int().min(0).optional(),
});
export type Pkcs11FolderSpec = z.infer<typeof folderSpec>;

/** The folder's token, or undefined for an emulated partition. */
export function readPkcs11Spec(dir: string): Pkcs11FolderSpec | undefined {
  const file = join(dir, PKCS11_FILE);
  if (!existsSync(file)) return undefined;
  try {
    return folderSpec.parse(JSON.parse(readFileSync(file, 'utf8')));
  } catch (error) {
    throw new HsmError(
      'CKR_ARGUMENTS_BAD',
      `${file} does not describe a PKCS#11 token: ${(error as Error).message}`,
      {
        cause: error,
      },
    );
  }
}

/** Written once, next to the partition's other files. */
export async function writePkcs11Spec(dir: string, spec: Pkcs11FolderSpec): Promise<void> {
  await writeNewFile(join(dir, PKCS11_FILE), `${JSON.stringify(folderSpec.parse(spec), null, 2)}\n`);
}
