import { readFileSync } from 'node:fs';
import { type ParseArgsConfig, parseArgs } from 'node:util';

/** DESIGN.md exit codes: 0 ok, 1 refused or failed, 2 usage error. */
export const EXIT = { ok: 0, failed: 1, usage: 2 } as const;

export interface CommandModule {
  run(argv: string[]): Promise<number>;
  /** The command's usage text; its first paragraph is the usage line a mistake prints. */
  USAGE?: string;
}

/** An error the CLI prints as one line and exits with, never with a stack trace. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: number = EXIT.failed,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/**
 * A usage mistake (issue #33: one rule for every command): the CLI prints the message, the
 * command's usage line and a hint to `--help`, and exits 2. The router that loaded the command
 * names it (`signet hsm keys`) and gives its usage text on the way out, see `locate`.
 */
export class UsageError extends CliError {
  command?: string;
  usage?: string;
  constructor(message: string) {
    super(message, EXIT.usage);
  }

  /** Set by the innermost router that knows the command; outer routers leave it alone. */
  locate(command: string, usage: string | undefined): this {
    if (this.command === undefined) {
      this.command = command;
      this.usage = usage;
    }
    return this;
  }
}

/** The usage line of a command's usage text: everything up to its first blank line. */
export function usageLine(usage: string): string {
  return usage.split(/\n\s*\n/)[0]!.trimEnd();
}

/** How a usage mistake reads on standard error: what was wrong, the usage line, where to look. */
export function formatUsageError(error: UsageError): string {
  const command = error.command ? `signet ${error.command}` : 'signet';
  return [
    `${command}: ${error.message}`,
    ...(error.usage ? [usageLine(error.usage)] : []),
    `Run '${command} --help' for ${error.command ? 'its options' : 'the commands'}.`,
  ].join('\n');
}

/** node:util's parse errors, said the way the rest of the CLI says things. */
function parseArgsMessage(error: Error & { code?: string }): string {
  const quoted = /'([^']*)'/.exec(error.message)?.[1] ?? '';
  switch (error.code) {
    case 'ERR_PARSE_ARGS_UNKNOWN_OPTION':
      return `unknown option ${quoted}`;
    case 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL':
      return `unexpected argument '${quoted}'`;
    case 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE': {
      const flag = quoted.split(' ')[0];
      return error.message.includes('argument missing') ? `${flag} needs a value` : `${flag} takes no value`;
    }
    default:
      return error.message;
  }
}

/** node:util parseArgs with strict options; a mistake becomes a usage error naming the option. */
export function parseCommandArgs<T extends NonNullable<ParseArgsConfig['options']>>(
  argv: string[],
  options: T,
  { allowPositionals = false }: { allowPositionals?: boolean } = {},
) {
  try {
    return parseArgs({ args: argv, options, strict: true, allowPositionals });
  } catch (error) {
    throw new UsageError(parseArgsMessage(error as Error & { code?: string }));
  }
}

/**
 * A router's dispatch to the module of one (sub)command: a usage mistake inside it is located
 * at that command, with its usage text, for formatUsageError.
 */
export async function runLocated(command: string, module: CommandModule, argv: string[]): Promise<number> {
  try {
    return await module.run(argv);
  } catch (error) {
    if (error instanceof UsageError) error.locate(command, module.USAGE);
    throw error;
  }
}

/** `a, b or c`, as a usage message lists the choices. */
function choices(names: string[]): string {
  return names.length < 2 ? names.join('') : `${names.slice(0, -1).join(', ')} or ${names.at(-1)}`;
}

/**
 * A command made of subcommands (`signet apikey create|list|revoke`): help, a missing or unknown
 * subcommand as usage errors, and a refusal the server or a client library gave (`isRefusal`) as
 * one line with exit 1 rather than a stack trace.
 */
export async function runSubcommand(
  argv: string[],
  usage: string,
  subcommands: Record<string, (argv: string[]) => Promise<number>>,
  isRefusal: (error: unknown) => error is Error = (_error): _error is Error => false,
): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === '--help' || sub === '-h' || sub === 'help') {
    console.log(usage);
    return EXIT.ok;
  }
  if (!sub) throw new UsageError(`a subcommand is required: ${choices(Object.keys(subcommands))}`);
  const command = Object.hasOwn(subcommands, sub) ? subcommands[sub] : undefined;
  if (!command) throw new UsageError(`unknown subcommand '${sub}'`);
  try {
    return await command(rest);
  } catch (error) {
    if (isRefusal(error)) throw new CliError(error.message, EXIT.failed, { cause: error });
    throw error;
  }
}

/** A secret from its file, its trailing newline stripped; unreadable or empty is a CliError. */
export function readSecretFile(file: string, what: string): string {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    throw new CliError(
      `cannot read ${what} from ${file}: ${(error as NodeJS.ErrnoException).code ?? 'error'}`,
    );
  }
  const value = text.replace(/\r?\n$/, '');
  if (value.length === 0) throw new CliError(`${what} file ${file} is empty`);
  return value;
}

/**
 * Reads a secret (PIN, unseal secret, API key) from a file, else an environment variable.
 * Secrets are never taken as argument values (DESIGN.md "Secrets on the command line").
 * Trailing newlines are stripped so `echo secret > file` works.
 */
export function readSecret({ file, env, what }: { file?: string; env?: string; what: string }): string {
  if (file !== undefined) return readSecretFile(file, what);
  const fromEnv = env ? process.env[env] : undefined;
  if (fromEnv !== undefined && fromEnv.length > 0) return fromEnv;
  throw new UsageError(`${what} is required: pass its file${env ? ` or set ${env}` : ''}`);
}
