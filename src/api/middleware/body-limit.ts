import type { MiddlewareHandler } from 'hono';
import { bodyLimit as honoBodyLimit } from 'hono/body-limit';
import type { ApiEnv } from '../env.ts';
import { apiErrors } from '../errors.ts';

export interface BodyLimitOptions {
  /** Largest body accepted, in bytes (config server.bodyLimit, default 64 KiB). */
  maxBytes?: number;
}

/**
 * Refuses bodies over the limit with a 413 problem before any handler reads them: by
 * Content-Length when given, else while streaming a chunked body (hono's bodyLimit).
 */
export function bodyLimit({ maxBytes = 64 * 1024 }: BodyLimitOptions = {}): MiddlewareHandler<ApiEnv> {
  if (!Number.isInteger(maxBytes) || maxBytes < 1)
    throw new Error(`bodyLimit: maxBytes must be a positive integer, got ${maxBytes}`);
  const limit = honoBodyLimit({
    maxSize: maxBytes,
    onError: () => {
      throw apiErrors.bodyTooLarge(maxBytes);
    },
  });
  return async function bodyLimitMiddleware(c, next) {
    // Decided from the headers when they say the size (hono's middleware would first build the
    // request's body stream, which the handler's own read then does not need: issue #24).
    const method = c.req.method;
    if (method === 'GET' || method === 'HEAD') return next();
    const length = c.req.header('content-length');
    if (length !== undefined && c.req.header('transfer-encoding') === undefined && /^\d+$/.test(length)) {
      if (Number(length) > maxBytes) throw apiErrors.bodyTooLarge(maxBytes);
      return next();
    }
    return limit(c, next);
  };
}
