import { existsSync, readFileSync } from 'node:fs';
import { redactDatabaseError } from '../db/errors.ts';
import { moduleFile } from '../lib/module-file.ts';
import { CliError, type CommandModule, EXIT } from './args.ts';

/**
 * `signet <command> ...`: each top-level command is a module in ./commands/<command>.ts
 * exporting `run(argv)`, loaded on demand so a command's dependencies load only when used.
 */
const USAGE = `usage: signet <command> [options]

commands:
  start            initialise ./data if needed, then serve (the quick start)
  init             create a data folder: config, partitions, issuers, secrets
  serve            run the CA server with its partition process
  hsm              operate a partition: init, serve, status, unseal, keys, user, audit, backup
  issue            issue a certificate from a CSR
  revoke           revoke a certificate
  policy           lint policies, dry-run a CSR against one
  apikey           create, list and revoke API keys
  issuer           add or list issuers
  crl              import a CRL signed offline (a root's, from the crl ceremony)
  audit            reconcile partition signatures with the database
  ceremony         validate and run offline root ceremonies

Run 'signet <command> --help' for a command's options; 'signet --version' prints the version.`;

/** package.json sits two folders up from both src/cli/main.ts and the compiled dist/cli/main.js. */
function version(): string {
  const file = new URL('../../package.json', import.meta.url);
  return (JSON.parse(readFileSync(file, 'utf8')) as { version: string }).version;
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (!command || command === '--help' || command === '-h' || command === 'help') {
    console.log(USAGE);
    return command ? EXIT.ok : EXIT.usage;
  }
  if (command === '--version' || command === '-v' || command === 'version') {
    console.log(`signet ${version()}`);
    return EXIT.ok;
  }
  if (!/^[a-z][a-z-]*$/.test(command)) {
    console.error(`signet: unknown command '${command}'\n\n${USAGE}`);
    return EXIT.usage;
  }
  const file = moduleFile(`./commands/${command}`, import.meta.url);
  if (!existsSync(file)) {
    console.error(`signet: unknown command '${command}'\n\n${USAGE}`);
    return EXIT.usage;
  }
  const module = (await import(file)) as CommandModule;
  return module.run(rest);
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    if (error instanceof CliError) {
      console.error(`signet: ${error.message}`);
      process.exitCode = error.exitCode;
      return;
    }
    // Never a database statement's parameters (issue #19).
    const shown = redactDatabaseError(error);
    console.error('signet: unexpected error:', shown instanceof Error ? shown.message : shown);
    process.exitCode = EXIT.failed;
  },
);
