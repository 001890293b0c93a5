import { RemotePartition } from '../../hsm/client.ts';
import { HsmError } from '../../hsm/types.ts';
import { CliError, readSecret, UsageError } from '../args.ts';

/**
 * Shared by the `signet hsm` subcommands that reach a served partition: the common options,
 * connecting, logging in with a PIN read from a file or SIGNET_HSM_PIN (never an argument value),
 * and turning partition refusals into one-line CLI errors.
 */
export const CONNECT_OPTIONS = {
  socket: { type: 'string' },
  user: { type: 'string' },
  'pin-file': { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

export const CONNECT_USAGE = `  --socket PATH      the served partition's socket
  --user NAME        log in as this user
  --pin-file FILE    the user's PIN (else SIGNET_HSM_PIN)
  --json             print JSON`;

export async function connectPartition(options: {
  socket?: string | undefined;
  user?: string | undefined;
  pinFile?: string | undefined;
}): Promise<RemotePartition> {
  if (!options.socket) throw new UsageError('--socket PATH is required');
  const pin = options.user
    ? readSecret({ file: options.pinFile, env: 'SIGNET_HSM_PIN', what: 'PIN' })
    : undefined;
  const partition = await RemotePartition.connect({ socketPath: options.socket }).catch((error) => {
    throw hsmFailure(error);
  });
  if (options.user && pin !== undefined) {
    try {
      await partition.login({ user: options.user, pin });
    } catch (error) {
      await partition.close();
      throw hsmFailure(error);
    }
  }
  return partition;
}

/** A partition refusal as a CLI error: the stable code and the partition's reason, exit 1. */
export function hsmFailure(error: unknown): unknown {
  if (error instanceof HsmError) return new CliError(`${error.code}: ${error.reason}`);
  return error;
}

/** Runs `body` with a connected partition, always closing it; refusals become CLI errors. */
export async function withPartition<T>(
  options: Parameters<typeof connectPartition>[0],
  body: (partition: RemotePartition) => Promise<T>,
): Promise<T> {
  const partition = await connectPartition(options);
  try {
    return await body(partition);
  } catch (error) {
    throw hsmFailure(error);
  } finally {
    await partition.close();
  }
}
