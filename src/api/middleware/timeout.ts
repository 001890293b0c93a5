import type { MiddlewareHandler } from 'hono';
import type { ApiEnv } from '../env.ts';
import { apiErrors } from '../errors.ts';

/**
 * Bounds the time a handler may take (config server.requestTimeout): past it the client gets a
 * 503 problem instead of waiting on a stuck dependency. The node server's own requestTimeout and
 * headersTimeout bound slow clients; this bounds slow handlers.
 */
export function requestTimeout({ ms = 30_000 }: { ms?: number } = {}): MiddlewareHandler<ApiEnv> {
  if (!Number.isFinite(ms) || ms <= 0) throw new Error(`requestTimeout: ms must be positive, got ${ms}`);
  return async function requestTimeoutMiddleware(_c, next) {
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(apiErrors.timeout()), ms);
    });
    try {
      await Promise.race([next(), expired]);
    } finally {
      clearTimeout(timer);
    }
  };
}
