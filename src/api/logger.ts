import pino, { type DestinationStream, type Logger, type LoggerOptions } from 'pino';
import { redactDatabaseError } from '../db/errors.ts';

/**
 * Paths pino blanks out wherever they appear, as a second line of defence: the request logger
 * never logs headers or bodies in the first place. Credentials, CSRs and key material must never
 * reach a log line (issue #8 "never secrets").
 */
export const REDACTED_PATHS = [
  'authorization',
  '*.authorization',
  'headers.authorization',
  '*.headers.authorization',
  'cookie',
  '*.cookie',
  'key',
  '*.key',
  'secret',
  '*.secret',
  'apiKey',
  '*.apiKey',
  'csr',
  '*.csr',
  'body',
  '*.body',
  'pin',
  '*.pin',
];

export interface LoggerConfig {
  level?: LoggerOptions['level'];
  /** Where JSON lines go; stdout when absent. Tests pass a stream they read back. */
  destination?: DestinationStream;
}

/**
 * pino's error serializer, after taking out what a database error quotes of its statement's
 * parameters (redactDatabaseError): the statement's text and the error stay.
 */
export const errorSerializer = (error: unknown) =>
  pino.stdSerializers.err(redactDatabaseError(error) as Error);

/** The service logger: one JSON object per line, ISO times, secrets redacted. */
export function createLogger({ level = 'info', destination }: LoggerConfig = {}): Logger {
  const options: LoggerOptions = {
    level,
    base: { service: 'signet' },
    timestamp: pino.stdTimeFunctions.isoTime,
    redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
    serializers: { err: errorSerializer },
    formatters: { level: (label) => ({ level: label }) },
  };
  // stdout is written asynchronously (issue #24): a synchronous write per line was about 8% of the
  // server's CPU under load (a profile of bench/http-issue); lines written while a write is under
  // way go out together. What is still buffered is written at exit (SonicBoom flushes then).
  return pino(options, destination ?? pino.destination({ dest: 1, sync: false }));
}
