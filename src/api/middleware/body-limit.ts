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
    // With a Content-Length, the header decides (Node's parser holds the body to it) and the
    // body stays untouched: hono's check reads `c.req.raw.body`, which makes @hono/node-server
    // build a whole WHATWG Request (a third of a pre-signed OCSP POST's cost, bench/ocsp; issue #24).
    const method = c.req.method;
    if (method === 'GET' || method === 'HEAD') return next();
    const declared = c.req.header('content-length');
    if (
      declared !== undefined &&
      /^\d{1,15}$/.test(declared) &&
      c.req.header('transfer-encoding') === undefined
    ) {
      if (Number(declared) > maxBytes) throw apiErrors.bodyTooLarge(maxBytes);
      return next();
    }
    return limit(c, next);
  };
}
