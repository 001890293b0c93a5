import { existsSync, readFileSync } from 'node:fs';
import { redactDatabaseError } from '../db/errors.ts';
import { moduleFile } from '../lib/module-file.ts';
import { CliError, type CommandModule, EXIT, formatUsageError, runLocated, UsageError } from './args.ts';

/**
 * `signet <command> ...`: each top-level command is a module in ./commands/<command>.ts
 * exporting `run(argv)` and its `USAGE`, loaded on demand so a command's dependencies load only
 * when used. `runCli` is the whole command line but for the process itself (main.ts), so the
 * tests hold every command to the same exit codes and messages in one process.
 */
export const USAGE = `usage: signet <command> [options]

commands:
  start            initialise ./data if needed, then serve (the quick start)
  init             create a data folder: config, partitions, issuers, secrets
  serve            run the CA server with its partition process
  hsm              operate a partition: init, serve, status, unseal, keys, user, audit, backup
  issue            issue a certificate from a CSR
  revoke           revoke a certificate
  certificate      create a key and certificate here, renew it (--daemon), list certificates
  policy           lint policies, dry-run a CSR against one
  apikey           create, list and revoke API keys
  acme             ACME administration: external account binding keys (eab create)
  issuer           add or list issuers
  ocsp-responder   rotate or list an issuer's delegated OCSP responder
  crl              import a CRL signed offline (a root's, from the crl ceremony)
  audit            reconcile partition signatures with the database
  ceremony         validate and run offline root ceremonies

Run 'signet <command> --help' for a command's options; 'signet --version' prints the version.`;

/** package.json sits two folders up from both src/cli/cli.ts and the compiled dist/cli/cli.js. */
function version(): string {
  const file = new URL('../../package.json', import.meta.url);
  return (JSON.parse(readFileSync(file, 'utf8')) as { version: string }).version;
}

async function dispatch(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (!command) {
    // No command at all: the whole list is the most useful answer (it has the usage line and the hint).
    console.error(USAGE);
    return EXIT.usage;
  }
  if (command === '--help' || command === '-h' || command === 'help') {
    console.log(USAGE);
    return EXIT.ok;
  }
  if (command === '--version' || command === '-v' || command === 'version') {
    console.log(`signet ${version()}`);
    return EXIT.ok;
  }
  const file = /^[a-z][a-z-]*$/.test(command)
    ? moduleFile(`./commands/${command}`, import.meta.url)
    : undefined;
  if (!file || !existsSync(file)) throw new UsageError(`unknown command '${command}'`);
  const module = (await import(file)) as CommandModule;
  return runLocated(command, module, rest);
}

/** Runs one command line and returns its exit code; every error is one message, never a stack. */
export async function runCli(argv: string[]): Promise<number> {
  try {
    return await dispatch(argv);
  } catch (error) {
    if (error instanceof UsageError) {
      if (error.command === undefined) error.usage = USAGE.split('\n')[0];
      console.error(formatUsageError(error));
      return EXIT.usage;
    }
    if (error instanceof CliError) {
      console.error(`signet: ${error.message}`);
      return error.exitCode;
    }
    const expected = expectedFailure(error);
    if (expected !== undefined) {
      console.error(`signet: ${expected}`);
      return EXIT.failed;
    }
    // Never a database statement's parameters (issue #19).
    const shown = redactDatabaseError(error);
    console.error('signet: unexpected error:', shown instanceof Error ? shown.message : shown);
    return EXIT.failed;
  }
}

/**
 * The message of a failure that is a situation, not a defect (issue #33): a data folder not
 * initialised or with a mistake in signet.yaml, a database another process holds, a refusal with a
 * stable code (partition, CA, policy), a server that cannot be reached, a file that cannot be read.
 * Matched by name rather than by class so that this module loads none of theirs.
 */
function expectedFailure(error: unknown): string | undefined {
  if (!(error instanceof Error)) return undefined;
  const named = error as Error & { code?: unknown; reason?: unknown; syscall?: unknown };
  switch (error.name) {
    case 'ConfigError':
    case 'IssuerLoadError':
    case 'ApiClientError':
      return error.message;
    case 'HsmError':
      return `${String(named.code)}: ${String(named.reason)}`;
    default:
      break;
  }
  // Storage errors (the database is in use...) and AppError refusals carry a stable dotted code.
  if (typeof named.code === 'string' && /^[a-z][a-z0-9_]*\.[a-z0-9_.]+$/.test(named.code)) {
    const message = (redactDatabaseError(error) as Error).message;
    return message.startsWith('the database is in use') ? message : `${named.code}: ${message}`;
  }
  // The operating system's refusals: a missing file, a permission, a port in use.
  if (typeof named.code === 'string' && /^E[A-Z]+$/.test(named.code) && typeof named.syscall === 'string')
    return error.message;
  return undefined;
}
