import { readFileSync } from 'node:fs';
import { type ParseArgsConfig, parseArgs } from 'node:util';

/** DESIGN.md exit codes: 0 ok, 1 refused or failed, 2 usage error. */
export const EXIT = { ok: 0, failed: 1, usage: 2 } as const;

export interface CommandModule {
  run(argv: string[]): Promise<number>;
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

export class UsageError extends CliError {
  constructor(message: string) {
    super(message, EXIT.usage);
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
    throw new UsageError((error as Error).message);
  }
}

/**
 * Reads a secret (PIN, unseal secret, API key) from a file, else an environment variable.
 * Secrets are never taken as argument values (DESIGN.md "Secrets on the command line").
 * Trailing newlines are stripped so `echo secret > file` works.
 */
export function readSecret({ file, env, what }: { file?: string; env?: string; what: string }): string {
  if (file !== undefined) {
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
  const fromEnv = env ? process.env[env] : undefined;
  if (fromEnv !== undefined && fromEnv.length > 0) return fromEnv;
  throw new UsageError(`${what} is required: pass its file${env ? ` or set ${env}` : ''}`);
}
