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
