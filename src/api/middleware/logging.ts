import type { MiddlewareHandler } from 'hono';
import { routePath } from 'hono/route';
import type { Logger } from 'pino';
import type { ApiEnv } from '../env.ts';

export interface RequestLoggingOptions {
  logger: Logger;
  /** Monotonic milliseconds, injectable for tests. */
  now?: () => number;
}

/**
 * One line per request with its id, method, matched route, status, duration and the caller's
 * id. Never headers, query strings or bodies: they carry API keys, CSRs and revocation proofs.
 * Handlers log through `c.get('logger')`, a child that stamps the request id on every line.
 */
export function requestLogging({
  logger,
  now = () => performance.now(),
}: RequestLoggingOptions): MiddlewareHandler<ApiEnv> {
  if (!logger || typeof logger.child !== 'function')
    throw new Error('requestLogging: a pino logger is required');
  return async function requestLoggingMiddleware(c, next) {
    const started = now();
    const child = logger.child({ reqId: c.get('requestId') });
    c.set('logger', child);
    await next();
    const status = c.res.status;
    const principal = c.get('principal');
    const line = {
      method: c.req.method,
      route: routePath(c, -1),
      path: c.req.path.length > 256 ? `${c.req.path.slice(0, 256)}...` : c.req.path,
      status,
      durationMs: Math.round((now() - started) * 1000) / 1000,
      ...(principal ? { principal: principal.id } : {}),
    };
    if (status >= 500) child.error(line, 'request failed');
    else child.info(line, 'request');
  };
}
