import type { MiddlewareHandler } from 'hono';
import type { ApiEnv } from '../env.ts';

/**
 * Headers every response carries: no MIME sniffing, and `no-store` unless the route chose a
 * cache policy (responses to authenticated calls must not land in shared caches, RFC 9111 §5.2.2.5).
 */
export function responseHeaders(): MiddlewareHandler<ApiEnv> {
  return async function responseHeadersMiddleware(c, next) {
    await next();
    c.res.headers.set('x-content-type-options', 'nosniff');
    if (!c.res.headers.has('cache-control')) c.res.headers.set('cache-control', 'no-store');
  };
}
