import { createPublicKey } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import {
  KEY_ALGORITHMS,
  type KeyAlgorithm,
  type KeyInfo,
  type KeyRef,
  SIGN_PURPOSES,
  type SignPurpose,
} from '../../hsm/types.ts';
import { CliError, EXIT, parseCommandArgs, UsageError } from '../args.ts';
import { CONNECT_OPTIONS, CONNECT_USAGE, withPartition } from './connect.ts';

export const USAGE = `usage: signet hsm keys <list|create|destroy|public> --socket PATH [options]

  list                              every key: label, algorithm, purposes, id, URI
  create --label L --algorithm A    generate a key pair inside the partition (officer)
         [--purpose P]...           purposes it may sign for (default all: ${SIGN_PURPOSES.join(', ')})
  destroy (--label L | --id I | --uri U) --yes
                                    destroy a key for good (officer)
  public (--label L | --id I | --uri U) [--out FILE]
                                    the public key, PEM (SubjectPublicKeyInfo)

Algorithms: ${KEY_ALGORITHMS.join(', ')}.
The user defaults to 'officer' for create and destroy, 'ca' otherwise.

${CONNECT_USAGE}`;

const OPTIONS = {
  ...CONNECT_OPTIONS,
  label: { type: 'string' },
  id: { type: 'string' },
  uri: { type: 'string' },
  algorithm: { type: 'string' },
  purpose: { type: 'string', multiple: true },
  out: { type: 'string' },
  yes: { type: 'boolean' },
} as const;

export async function run(argv: string[]): Promise<number> {
  const [action, ...rest] = argv;
  if (action === '--help' || action === '-h') {
    console.log(USAGE);
    return EXIT.ok;
  }
  if (!action) throw new UsageError('an action is required: list, create, destroy or public');
  const { values } = parseCommandArgs(rest, OPTIONS);
  if (values.help) {
    console.log(USAGE);
    return EXIT.ok;
  }
  const connect = {
    socket: values.socket,
    user: values.user ?? (action === 'create' || action === 'destroy' ? 'officer' : 'ca'),
    pinFile: values['pin-file'],
  };
  switch (action) {
    case 'list': {
      const keys = await withPartition(connect, (p) => p.listKeys());
      console.log(values.json ? JSON.stringify(keys.map(printable), null, 2) : formatKeys(keys));
      return EXIT.ok;
    }
    case 'create': {
      if (!values.label) throw new UsageError('--label is required');
      if (!values.algorithm || !(KEY_ALGORITHMS as readonly string[]).includes(values.algorithm)) {
        throw new UsageError(`--algorithm must be one of ${KEY_ALGORITHMS.join(', ')}`);
      }
      for (const p of values.purpose ?? []) {
        if (!(SIGN_PURPOSES as readonly string[]).includes(p)) {
          throw new UsageError(`--purpose must be one of ${SIGN_PURPOSES.join(', ')}`);
        }
      }
      const key = await withPartition(connect, (p) =>
        p.createKey({
          label: values.label!,
          algorithm: values.algorithm as KeyAlgorithm,
          ...(values.purpose ? { purposes: values.purpose as SignPurpose[] } : {}),
        }),
      );
      console.log(
        values.json ? JSON.stringify(printable(key), null, 2) : `created ${key.uri} (id ${key.id})`,
      );
      return EXIT.ok;
    }
    case 'destroy': {
      const ref = keyRef(values);
      if (!values.yes) throw new UsageError('destroying a key cannot be undone: pass --yes');
      await withPartition(connect, (p) => p.destroyKey(ref));
      console.log('destroyed');
      return EXIT.ok;
    }
    case 'public': {
      const ref = keyRef(values);
      const spki = await withPartition(connect, (p) => p.getPublicKey(ref));
      const pem = createPublicKey({ key: Buffer.from(spki), format: 'der', type: 'spki' })
        .export({ format: 'pem', type: 'spki' })
        .toString();
      if (values.out) {
        try {
          writeFileSync(values.out, pem, { flag: 'wx' });
        } catch (error) {
          throw new CliError(
            `cannot write ${values.out}: ${(error as NodeJS.ErrnoException).code ?? 'error'}`,
          );
        }
      } else process.stdout.write(pem);
      return EXIT.ok;
    }
    default:
      throw new UsageError(`unknown keys action '${action}'; expected list, create, destroy or public`);
  }
}

function keyRef(values: {
  label?: string | undefined;
  id?: string | undefined;
  uri?: string | undefined;
}): KeyRef {
  const given = [values.label, values.id, values.uri].filter((v) => v !== undefined);
  if (given.length !== 1) throw new UsageError('name the key with exactly one of --label, --id, --uri');
  if (values.label !== undefined) return { label: values.label };
  if (values.id !== undefined) return { id: values.id };
  return { uri: values.uri! };
}

const printable = (key: KeyInfo) => ({ ...key, publicKey: Buffer.from(key.publicKey).toString('base64') });

function formatKeys(keys: KeyInfo[]): string {
  if (keys.length === 0) return 'no keys';
  const rows = keys.map((k) => [k.label, k.algorithm, k.purposes.join(','), k.id, k.uri]);
  const header = ['LABEL', 'ALGORITHM', 'PURPOSES', 'ID', 'URI'];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  return [header, ...rows]
    .map((r) =>
      r
        .map((c, i) => c.padEnd(widths[i]!))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}
