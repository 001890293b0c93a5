import { type Logger, pino } from 'pino';
import { errorSerializer } from '../api/logger.ts';

/** For local CLI commands: warnings and errors to stderr as JSON, nothing chatty. */
export function quietLogger(): Logger {
  return pino(
    {
      level: process.env.SIGNET_LOG_LEVEL ?? 'warn',
      base: { service: 'signet-cli' },
      serializers: { err: errorSerializer },
    },
    pino.destination(2),
  );
}
