import type { Context, MiddlewareHandler } from 'hono';
import type { ApiEnv } from '../env.ts';
import { apiErrors } from '../errors.ts';

/**
 * Bounds the time a request may take in the app (config server.requestTimeout). Past it the
 * client gets a problem instead of waiting: 408 `request.body_timeout` when the body is still
 * arriving (a read of it waits on the client, RFC 9110 §15.5.9), else 503 `request.timeout` (the
 * handler waits on a stuck dependency). The node server's own requestTimeout and headersTimeout
 * bound clients that never finish their request before the app sees it.
 */
export function requestTimeout({
  ms = 30_000,
  unwatchedBodies = () => false,
}: {
  ms?: number;
  /**
   * Requests whose body the route reads from Node's stream itself, bounded by the node server's
   * requestTimeout (POST /ocsp, which answers in OCSP statuses, never a 408 problem): wrapping
   * their body in a watched WHATWG stream costs more than answering them (bench/ocsp).
   */
  unwatchedBodies?: (c: Context<ApiEnv>) => boolean;
} = {}): MiddlewareHandler<ApiEnv> {
  if (!Number.isFinite(ms) || ms <= 0) throw new Error(`requestTimeout: ms must be positive, got ${ms}`);
  return async function requestTimeoutMiddleware(c, next) {
    const body = unwatchedBodies(c) ? undefined : watchBody(c);
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        if (!body?.waiting()) {
          reject(apiErrors.timeout());
          return;
        }
        // The rest of the body will not be read: stop waiting for it (the problem closes the
        // connection after the answer, RFC 9110 §15.5.9).
        body.abandon();
        reject(apiErrors.bodyTimeout());
      }, ms);
    });
    try {
      await Promise.race([next(), expired]);
    } finally {
      clearTimeout(timer);
    }
  };
}

/**
 * Puts the request body behind a stream that knows whether a read of it is waiting for bytes
 * that have not arrived; undefined for a request without a body.
 */
function watchBody(c: Context<ApiEnv>): { waiting(): boolean; abandon(): void } | undefined {
  const source = c.req.raw.body;
  if (!source) return undefined;
  const reader = source.getReader();
  let waiting = false;
  let abandoned = false;
  const watched = new ReadableStream<Uint8Array>({
    async pull(controller) {
      waiting = true;
      try {
        const { done, value } = await reader.read();
        // Once abandoned, the handler's read never settles: a partial body must not let it go on
        // and answer in place of the 408 already given.
        if (abandoned) return new Promise<void>(() => {});
        if (done) controller.close();
        else controller.enqueue(value);
      } finally {
        waiting = false;
      }
    },
    cancel(reason) {
      return reader.cancel(reason);
    },
  });
  c.req.raw = new Request(c.req.raw, { body: watched, duplex: 'half' } as RequestInit);
  return {
    waiting: () => waiting,
    abandon: () => {
      abandoned = true;
      reader.cancel().catch(() => {});
    },
  };
}
