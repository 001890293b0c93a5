import { readFileSync } from 'node:fs';
import { writeNewFile } from '../../hsm/custody/atomic-file.ts';
import { createBackup, restoreBackup, syncBackup } from '../../hsm/custody/index.ts';
import { CliError, EXIT, parseCommandArgs, UsageError } from '../args.ts';
import { hsmFailure } from './connect.ts';
import { MATERIAL_OPTIONS, MATERIAL_USAGE, readUnsealMaterial } from './unseal.ts';

export const USAGE = `usage: signet hsm backup --dir DIR --out FILE
       signet hsm restore --in FILE --dir DIR2 (--secret-file FILE | --share-file FILE ...)
       signet hsm sync --in FILE --dir DIR2 (--secret-file FILE | --share-file FILE ...)

  backup    write the partition in DIR to FILE (new, mode 0600): its master key still sealed
            under the unseal secret or shares, its index and keys still encrypted under the master
            key. Needs no secret, and may run while the partition is served.
  restore   create the partition again in DIR2 (absent or empty): same identity, master key, keys
            and users, its own new audit log. Needs the partition's unseal secret or shares.
  sync      add to DIR2, an existing clone of the same partition (not served at the time), the
            keys created since it was made. Adds only; users and other keys are left alone.

  --dir DIR / DIR2     the partition folder
  --out FILE           the backup to write
  --in FILE            the backup to read
${MATERIAL_USAGE}
  --json               print JSON`;

const OPTIONS = {
  dir: { type: 'string' },
  out: { type: 'string' },
  in: { type: 'string' },
  ...MATERIAL_OPTIONS,
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

function readBlob(file: string | undefined): Buffer {
  if (!file) throw new UsageError('--in FILE is required');
  try {
    return readFileSync(file);
  } catch (error) {
    throw new CliError(`cannot read ${file}: ${(error as NodeJS.ErrnoException).code ?? 'error'}`);
  }
}

/** `signet hsm backup`; the router also sends `restore` and `sync` here, as the first argument. */
export async function run(argv: string[]): Promise<number> {
  const action = argv[0] === 'restore' || argv[0] === 'sync' ? argv[0] : 'backup';
  const { values } = parseCommandArgs(action === 'backup' ? argv : argv.slice(1), OPTIONS);
  if (values.help) {
    console.log(USAGE);
    return EXIT.ok;
  }
  if (!values.dir) throw new UsageError('--dir DIR is required');
  const fail = (error: unknown) => {
    throw hsmFailure(error);
  };
  if (action === 'backup') {
    if (!values.out) throw new UsageError('--out FILE is required');
    const blob = await createBackup({ dir: values.dir }).catch(fail);
    await writeNewFile(values.out, blob).catch((error: NodeJS.ErrnoException) => {
      throw new CliError(
        error.code === 'EEXIST'
          ? `${values.out} exists: choose another --out`
          : `cannot write ${values.out}: ${error.code}`,
      );
    });
    console.log(
      values.json
        ? JSON.stringify({ out: values.out, bytes: blob.length })
        : `backup of ${values.dir} written to ${values.out} (${blob.length} bytes)`,
    );
    return EXIT.ok;
  }
  const blob = readBlob(values.in);
  const material = await readUnsealMaterial(values);
  if (action === 'restore') {
    const summary = await restoreBackup({ blob, dir: values.dir, material }).catch(fail);
    console.log(
      values.json
        ? JSON.stringify(summary, null, 2)
        : `partition ${summary.name} (${summary.partitionId}) restored to ${values.dir}: ${summary.keys} keys, ${summary.users} users; it starts sealed`,
    );
    return EXIT.ok;
  }
  const summary = await syncBackup({ blob, dir: values.dir, material }).catch(fail);
  if (values.json) {
    console.log(JSON.stringify(summary, null, 2));
  } else {
    console.log(`${summary.added.length} keys added to ${values.dir}, ${summary.unchanged} already there`);
    for (const key of summary.added) console.log(`  added ${key.label} (${key.id})`);
    for (const key of summary.notInBackup) console.log(`  kept ${key.label} (${key.id}): not in the backup`);
    if (summary.certificates > 0)
      console.log(`${summary.certificates} certificates stored beside keys copied`);
  }
  return EXIT.ok;
}
