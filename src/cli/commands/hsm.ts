import { existsSync } from 'node:fs';
import { moduleFile } from '../../lib/module-file.ts';
import { type CommandModule, EXIT, runLocated, UsageError } from '../args.ts';

/**
 * `signet hsm <subcommand> ...`: each subcommand is a module src/cli/hsm/<name>.ts exporting
 * `run(argv)`, loaded on demand. serve, status and keys belong to the partition itself (issue #2);
 * init, unseal, user, audit and backup come with custody (issues #3, #4) as their own modules.
 */
const SUBCOMMANDS: Record<string, string> = {
  init: 'create a partition folder, its unseal secret or shares, and its users',
  serve: 'run one partition process on a Unix socket',
  status: 'show a partition: state, sealing, protocol version, keys',
  unseal: 'unseal a served partition with its secret or custodian shares',
  keys: 'list, create, destroy keys and print public keys',
  certificate: 'store a certificate beside its key, for PKCS#11 clients',
  user: 'manage partition users and PINs',
  audit: "verify and read the partition's audit log",
  backup: 'write an encrypted backup of a partition folder',
  restore: 'restore a backup into a new folder (needs the unseal secret or shares)',
  sync: 'bring keys created since into an existing clone, from a newer backup',
  cluster: 'cluster members: status, add-member, remove-member (they replicate among themselves)',
};

/** Subcommands served by another one's module, which gets the subcommand's name first. */
const SHARED_MODULES: Record<string, string> = { restore: 'backup', sync: 'backup' };

export const USAGE = `usage: signet hsm <subcommand> [options]

subcommands:
${Object.entries(SUBCOMMANDS)
  .map(([name, text]) => `  ${name.padEnd(12)}${text}`)
  .join('\n')}

Run 'signet hsm <subcommand> --help' for its options.`;

export async function run(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === '--help' || sub === '-h' || sub === 'help') {
    console.log(USAGE);
    return EXIT.ok;
  }
  if (!sub) throw new UsageError(`a subcommand is required: ${Object.keys(SUBCOMMANDS).join(', ')}`);
  const known = Object.hasOwn(SUBCOMMANDS, sub);
  const moduleName = SHARED_MODULES[sub] ?? sub;
  const file = known ? moduleFile(`../hsm/${moduleName}`, import.meta.url) : undefined;
  if (!file || !existsSync(file)) {
    throw new UsageError(known ? `'${sub}' is not available in this build` : `unknown subcommand '${sub}'`);
  }
  const module = (await import(file)) as CommandModule;
  return runLocated(`hsm ${sub}`, module, SHARED_MODULES[sub] ? [sub, ...rest] : rest);
}
