/**
 * The one error class for failures someone handles by type (STYLE.md "Errors"): a stable dotted
 * code, a category that the HTTP edge maps to a status, and an optional detail object (for policy
 * refusals, the violations). Everything else is a plain Error with a cause. Rendering happens only
 * at the HTTP edge; messages here are written for the client, internal details go to `cause`.
 */
export type ErrorCategory =
  | 'invalid' // 400: malformed request or CSR
  | 'unauthenticated' // 401
  | 'forbidden' // 403: wrong role, unbound policy, policy refusal
  | 'not_found' // 404
  | 'conflict' // 409
  | 'unprocessable' // 422
  | 'too_large' // 413
  | 'rate_limited' // 429
  | 'unavailable' // 503: partition or database unavailable
  | 'internal'; // 500: never with internal details

export class AppError extends Error {
  override readonly name = 'AppError';
  constructor(
    readonly code: string,
    readonly category: ErrorCategory,
    message: string,
    readonly details?: Record<string, unknown>,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export const isAppError = (error: unknown): error is AppError => error instanceof AppError;

/**
 * The refusal function of one area: `refusal('renew')('not_found', ...)` makes an AppError with the
 * code `renew.not_found`, the category (default `invalid`), and the cause kept for the logs.
 */
export function refusal(area: string) {
  return (code: string, message: string, category: ErrorCategory = 'invalid', cause?: unknown) =>
    new AppError(
      `${area}.${code}`,
      category,
      message,
      undefined,
      cause === undefined ? undefined : { cause },
    );
}

/**
 * Whether `error` (or one of its causes) says the database could not be reached or went away:
 * SQLSTATE class 08 (connection exception), 57P01-57P03 (shutdown, crash shutdown, cannot
 * connect now: a restart or a failover), 53300 (too many connections), a socket errno, or the
 * node-postgres driver's own messages, which carry no code (a connection lost between queries or
 * mid-query, a pool that could not connect in time). These are "retry later", never a bug.
 */
export function isConnectionFailure(error: unknown): boolean {
  let current: unknown = error;
  for (let depth = 0; depth < 8 && current instanceof Error; depth++) {
    const code = (current as { code?: unknown }).code;
    if (typeof code === 'string' && (/^(08|57P0[123]|53300)/.test(code) || CONNECTION_ERRNOS.has(code)))
      return true;
    if (PG_CONNECTION_MESSAGES.test(current.message)) return true;
    current = (current as { cause?: unknown }).cause;
  }
  return false;
}

const CONNECTION_ERRNOS = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH']);
/** node-postgres (pg 8) raises these as plain Errors: lib/client.js and pg-pool's index.js. */
const PG_CONNECTION_MESSAGES =
  /^(Connection terminated( unexpectedly| due to connection timeout)?|Client has encountered a connection error and is not queryable|timeout exceeded when trying to connect|Client was closed and is not queryable)$/;

/** Whether `error` or a cause is a full disk: SQLSTATE 53100 (disk_full) or ENOSPC. */
export function isDiskFull(error: unknown): boolean {
  let current: unknown = error;
  for (let depth = 0; depth < 8 && current instanceof Error; depth++) {
    const code = (current as { code?: unknown }).code;
    if (code === '53100' || code === 'ENOSPC') return true;
    current = (current as { cause?: unknown }).cause;
  }
  return false;
}
