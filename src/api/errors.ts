import type { Context, ErrorHandler, NotFoundHandler } from 'hono';
import { HTTPException } from 'hono/http-exception';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import { z } from 'zod';
import { StorageError } from '../db/errors.ts';
import { HsmError } from '../hsm/types.ts';
import { partitionUnavailable } from '../hsm/unavailable.ts';
import { AppError, type ErrorCategory, isAppError, isConnectionFailure, isDiskFull } from '../lib/errors.ts';
import { REQUESTER_NOT_BOUND } from '../policy/binding.ts';
import type { ApiEnv } from './env.ts';
import { problemResponse, STATUS_BY_CATEGORY, TITLE_BY_CATEGORY } from './problem.ts';

/**
 * Errors raised by the HTTP edge itself, each with a stable dotted code listed in openapi.yaml.
 * Errors from the domain (csr.*, policy.*, hsm.*, ...) arrive as AppError and render the same way.
 */
export const apiErrors = {
  credentialMissing: () =>
    new AppError(
      'auth.credential_missing',
      'unauthenticated',
      'This endpoint needs a credential: send Authorization: Bearer <api key>.',
    ),
  credentialInvalid: () =>
    new AppError(
      'auth.credential_invalid',
      'unauthenticated',
      'The credential is not valid (unknown, malformed or revoked).',
    ),
  keyExpired: () => new AppError('auth.key_expired', 'forbidden', 'The API key has expired.'),
  roleForbidden: (needed: readonly string[]) =>
    new AppError(
      'auth.role_forbidden',
      'forbidden',
      `This endpoint needs one of the roles: ${needed.join(', ')}.`,
    ),
  policyNotBound: (policy: string) =>
    new AppError(REQUESTER_NOT_BOUND, 'forbidden', `The credential is not bound to the policy '${policy}'.`),
  invalidBody: (issues: { path: string; message: string }[]) =>
    new AppError('request.invalid_body', 'invalid', 'The request body does not match the schema.', {
      errors: issues,
    }),
  invalidQuery: (issues: { path: string; message: string }[]) =>
    new AppError('request.invalid_query', 'invalid', 'The query parameters are not valid.', {
      errors: issues,
    }),
  /**
   * A string holding a character no field can hold (NUL, an unpaired surrogate): issue #19 names
   * this case `request.invalid`, apart from ordinary schema mismatches.
   */
  invalidCharacters: (issues: { path: string; message: string }[]) =>
    new AppError('request.invalid', 'invalid', 'The request holds characters no field can hold.', {
      errors: issues,
    }),
  invalidJson: () => new AppError('request.invalid_json', 'invalid', 'The request body is not valid JSON.'),
  bodyTooLarge: (limit: number) =>
    new AppError('request.body_too_large', 'too_large', `The request body is larger than ${limit} bytes.`),
  rateLimited: () =>
    new AppError('request.rate_limited', 'rate_limited', 'Too many requests for this credential.'),
  notFound: (what: string, code = 'request.not_found') => new AppError(code, 'not_found', what),
  /** 415 (RFC 9110 §15.5.16): not an ErrorCategory, only the edge knows media types. */
  unsupportedMediaType: (accepted: string[]) =>
    new AppError(
      'request.unsupported_media_type',
      'invalid',
      `Send the body as one of: ${accepted.join(', ')}.`,
      {
        headers: { 'accept-post': accepted.join(', ') },
      },
    ),
  timeout: () =>
    new AppError(
      'request.timeout',
      'unavailable',
      'The request took too long and was abandoned; retry later.',
    ),
  /** 408 (RFC 9110 §15.5.9): the client did not finish sending its body in time. */
  bodyTimeout: () =>
    new AppError(
      'request.body_timeout',
      'invalid',
      'The request body did not arrive within the time allowed; send it again.',
      { headers: { connection: 'close' } },
    ),
} as const;

export function methodNotAllowed(c: Context<ApiEnv>, allowed: string[]): Response {
  return problemResponse(c, {
    code: 'request.method_not_allowed',
    status: 405 as ContentfulStatusCode,
    title: 'Method not allowed',
    detail: `${c.req.method} is not allowed here; use ${allowed.join(', ')}.`,
    headers: { allow: allowed.join(', ') },
  });
}

/** zod issues as `{ path, message }` pairs a client can show next to its fields. */
export function zodIssues(error: z.ZodError): { path: string; message: string }[] {
  return error.issues.map((issue) => ({
    path: issue.path.length > 0 ? issue.path.map(String).join('.') : '(body)',
    message: issue.message,
  }));
}

/** Codes whose status is not their category's. */
const STATUS_BY_CODE: Record<string, ContentfulStatusCode> = {
  'request.unsupported_media_type': 415 as ContentfulStatusCode,
  'request.body_timeout': 408 as ContentfulStatusCode,
};

/** Titles of codes whose status is not their category's. */
const TITLE_BY_CODE: Record<string, string> = {
  'request.unsupported_media_type': 'Unsupported media type',
  'request.body_timeout': 'Request timeout',
};

const RETRY_AFTER_SECONDS: Partial<Record<ErrorCategory, string>> = { unavailable: '5' };

export function renderAppError(c: Context<ApiEnv>, error: AppError): Response {
  const { details } = error;
  const extra: Record<string, unknown> = {};
  const headers: Record<string, string> = {};
  if (details) {
    for (const [name, value] of Object.entries(details)) {
      // `retryAfter` becomes the header (RFC 9110 §10.2.3); everything else is an RFC 9457 extension member.
      if (name === 'retryAfter') headers['retry-after'] = String(value);
      else if (name === 'headers') Object.assign(headers, value as Record<string, string>);
      else extra[name] = value;
    }
  }
  const retry = RETRY_AFTER_SECONDS[error.category];
  if (retry && !headers['retry-after']) headers['retry-after'] = retry;
  if (error.category === 'unauthenticated') headers['www-authenticate'] = 'Bearer realm="signet"';
  return problemResponse(c, {
    code: error.code,
    status: STATUS_BY_CODE[error.code] ?? STATUS_BY_CATEGORY[error.category],
    title: TITLE_BY_CODE[error.code] ?? TITLE_BY_CATEGORY[error.category],
    detail: error.message,
    extra,
    headers,
  });
}

/** Storage errors a client can cause or should see; every other StorageError is internal. */
const STORAGE_CATEGORY: Record<string, ErrorCategory> = {
  'request.cursor_invalid': 'invalid',
  'certificate.not_found': 'not_found',
  'issuer.not_found': 'not_found',
  'certificate.invalid_state': 'conflict',
};

/** 503 with Retry-After: `db.unavailable` or `hsm.unavailable`, the cause kept for the logs. */
const unavailable = (area: 'db' | 'hsm', message: string, cause: unknown) =>
  new AppError(`${area}.unavailable`, 'unavailable', message, undefined, { cause });

/**
 * Errors of the layers below that are not AppError: storage errors with a client-facing code,
 * database connection failures (src/lib/errors.ts isConnectionFailure) and partition
 * unavailability become their AppError; undefined for everything else (a 500).
 */
export function translateError(error: unknown): AppError | undefined {
  if (error instanceof StorageError) {
    const category = STORAGE_CATEGORY[error.code];
    if (category)
      return new AppError(
        error.code,
        category,
        `${error.message[0]?.toUpperCase()}${error.message.slice(1)}.`,
        undefined,
        { cause: error },
      );
    if (error.code === 'db.locked')
      return unavailable('db', 'The database is unavailable; retry later.', error);
    return undefined;
  }
  if (error instanceof HsmError) {
    // Partition failures that mean "not now" rather than "broken" (src/hsm/unavailable.ts): 503.
    if (partitionUnavailable(error)) {
      return unavailable('hsm', 'The signing partition is unavailable; retry later.', error);
    }
    return undefined;
  }
  // SQLSTATE 53100 (disk_full), or ENOSPC from a file the node writes itself (issue #29): the
  // statement's transaction rolled back; it works again once space is freed, so 503.
  if (isDiskFull(error)) {
    return new AppError(
      'db.disk_full',
      'unavailable',
      "The data folder's disk is full; retry once space has been freed.",
      undefined,
      { cause: error },
    );
  }
  if (isConnectionFailure(error)) {
    return unavailable('db', 'The database is unavailable; retry later.', error);
  }
  return undefined;
}

/**
 * The one place errors become responses (STYLE.md). An AppError renders with its code and
 * message; anything else is a 500 whose client sees only the request id, while the log line with
 * that id carries the error.
 */
export const onError: ErrorHandler<ApiEnv> = (thrown, c) => {
  const error = translateError(thrown) ?? thrown;
  // An internal AppError (misissuance, a failed lint after policy) is a 500 like any bug: its
  // code and message are for the log, not the client.
  if (isAppError(error) && error.category !== 'internal') {
    if (error.category === 'unavailable') {
      c.get('logger')?.error({ err: error, code: error.code }, 'request failed');
    }
    return renderAppError(c, error);
  }
  if (error instanceof z.ZodError) return renderAppError(c, apiErrors.invalidBody(zodIssues(error)));
  if (error instanceof HTTPException && error.status < 500) {
    // hono raises these for malformed input it parses itself (e.g. a bad JSON body).
    const status = error.status as ContentfulStatusCode;
    return problemResponse(c, {
      code: status === 413 ? 'request.body_too_large' : 'request.invalid',
      status,
      title: 'The request is invalid',
      detail: 'The request could not be read.',
    });
  }
  c.get('logger')?.error({ err: error }, 'internal error');
  return renderAppError(
    c,
    new AppError(
      'internal',
      'internal',
      'An internal error occurred; quote the request id when reporting it.',
    ),
  );
};

export const onNotFound: NotFoundHandler<ApiEnv> = (c) =>
  renderAppError(c, apiErrors.notFound(`No resource at ${c.req.method} ${truncate(c.req.path)}.`));

const truncate = (text: string) => (text.length > 128 ? `${text.slice(0, 128)}...` : text);
