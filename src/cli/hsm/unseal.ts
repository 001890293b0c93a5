import { readFileSync } from 'node:fs';
import { RemotePartition } from '../../hsm/client.ts';
import { openPartitionVault, type UnsealMaterial } from '../../hsm/custody/index.ts';
import { CliError, EXIT, parseCommandArgs, UsageError } from '../args.ts';
import { hsmFailure } from './connect.ts';
import { formatStatus } from './status.ts';

export const USAGE = `usage: signet hsm unseal (--socket PATH | --dir DIR) (--secret-file FILE | --share-file FILE ...)

Unseals a served partition (--socket) with its unseal secret or M custodian share files. With
--dir, checks an unserved partition folder instead: that the material opens it and that every
object in it is intact; the folder stays as it is.

  --socket PATH        the served partition's socket
  --dir DIR            a partition folder no process serves
  --secret-file FILE   the unseal secret written by 'signet hsm init' (else SIGNET_HSM_SECRET,
                       else a prompt)
  --share-file FILE    one custodian share; repeat for each of the M shares
  --json               print JSON`;

/** The options every command that needs unseal material takes. */
export const MATERIAL_OPTIONS = {
  'secret-file': { type: 'string' },
  'share-file': { type: 'string', multiple: true },
} as const;

export const MATERIAL_USAGE = `  --secret-file FILE   the partition's unseal secret (else SIGNET_HSM_SECRET, else a prompt)
  --share-file FILE    one custodian share; repeat for each of the M shares needed`;

function readMaterialFile(file: string, what: string): Buffer {
  try {
    return readFileSync(file);
  } catch (error) {
    throw new CliError(`cannot read ${what} ${file}: ${(error as NodeJS.ErrnoException).code ?? 'error'}`);
  }
}

/**
 * Unseal material from files, SIGNET_HSM_SECRET, or a prompt on a terminal; never from an
 * argument value (DESIGN.md "Secrets on the command line").
 */
export async function readUnsealMaterial(values: {
  'secret-file'?: string | undefined;
  'share-file'?: string[] | undefined;
}): Promise<UnsealMaterial> {
  const shares = values['share-file'] ?? [];
  if (values['secret-file'] !== undefined && shares.length > 0) {
    throw new UsageError('pass either --secret-file or --share-file, not both');
  }
  if (values['secret-file'] !== undefined)
    return { secret: readMaterialFile(values['secret-file'], 'secret file') };
  if (shares.length > 0) return { shares: shares.map((file) => readMaterialFile(file, 'share file')) };
  const fromEnv = process.env.SIGNET_HSM_SECRET;
  if (fromEnv) return { secret: Buffer.from(fromEnv) };
  if (process.stdin.isTTY) return { secret: Buffer.from(await promptSecret('unseal secret: ')) };
  throw new UsageError(
    'unseal material is required: --secret-file FILE, --share-file FILE (repeated) or SIGNET_HSM_SECRET',
  );
}

/** Reads one line from the terminal without echoing it. */
export function promptSecret(question: string): Promise<string> {
  const stdin = process.stdin;
  if (!stdin.isTTY) return Promise.reject(new UsageError(`${question.replace(/:\s*$/, '')} is required`));
  return new Promise((resolve, reject) => {
    process.stderr.write(question);
    stdin.setRawMode(true);
    stdin.resume();
    stdin.setEncoding('utf8');
    let value = '';
    const finish = (error?: Error) => {
      stdin.setRawMode(false);
      stdin.pause();
      stdin.off('data', onData);
      process.stderr.write('\n');
      if (error) reject(error);
      else resolve(value);
    };
    const onData = (chunk: string) => {
      for (const char of chunk) {
        if (char === '\r' || char === '\n') return finish();
        if (char === '\u0003') return finish(new CliError('interrupted'));
        if (char === '\u007f' || char === '\b') value = value.slice(0, -1);
        else value += char;
      }
    };
    stdin.on('data', onData);
  });
}

export async function run(argv: string[]): Promise<number> {
  const { values } = parseCommandArgs(argv, {
    socket: { type: 'string' },
    dir: { type: 'string' },
    ...MATERIAL_OPTIONS,
    json: { type: 'boolean' },
    help: { type: 'boolean', short: 'h' },
  });
  if (values.help) {
    console.log(USAGE);
    return EXIT.ok;
  }
  if ((values.socket === undefined) === (values.dir === undefined)) {
    throw new UsageError('pass exactly one of --socket PATH and --dir DIR');
  }
  const material = await readUnsealMaterial(values);
  if (values.socket !== undefined) {
    const partition = await RemotePartition.connect({ socketPath: values.socket }).catch((error) => {
      throw hsmFailure(error);
    });
    try {
      const status = await partition.unseal(material as { secret?: Uint8Array; shares?: Uint8Array[] });
      console.log(values.json ? JSON.stringify(status, null, 2) : formatStatus(status));
    } catch (error) {
      throw hsmFailure(error);
    } finally {
      await partition.close();
    }
    return EXIT.ok;
  }
  const summary = await checkFolder(values.dir!, material).catch((error) => {
    throw hsmFailure(error);
  });
  console.log(
    values.json
      ? JSON.stringify(summary, null, 2)
      : `${values.dir}: partition ${summary.name} unseals with this material; ${summary.keys} keys and ${summary.users} users, all intact`,
  );
  return EXIT.ok;
}

/** Unseals a folder offline to prove the material and the objects, audits that, and closes it again. */
async function checkFolder(dir: string, material: UnsealMaterial) {
  const folder = await openPartitionVault({ dir });
  const event = {
    time: new Date().toISOString(),
    op: 'unseal',
    detail: 'offline check (signet hsm unseal --dir)',
  };
  try {
    const store = await folder.unseal(material).catch(async (error: unknown) => {
      const code = error instanceof Error && 'code' in error ? String(error.code) : 'hsm.device_error';
      await folder.audit.append({ ...event, result: code }).catch(() => {});
      throw error;
    });
    await folder.audit.append({ ...event, result: 'ok' });
    return {
      partitionId: folder.partitionId,
      name: folder.name,
      keys: (await store.listKeys()).length,
      users: (await store.listUsers()).length,
    };
  } finally {
    await folder.close();
  }
}
