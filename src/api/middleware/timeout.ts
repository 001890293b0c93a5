import type { IncomingMessage } from 'node:http';
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
 * Whether the request body is still arriving. On the node server that is the request's own state
 * (`incoming.complete`): asking hono for the body stream instead would build a full web Request
 * and stream adapters on every request (about a tenth of the server's CPU per certificate,
 * issue #24). Elsewhere (app.request in tests) the body is put behind a stream that knows
 * whether a read of it waits for bytes that have not arrived. Undefined: no body to wait for.
 */
function watchBody(c: Context<ApiEnv>): { waiting(): boolean; abandon(): void } | undefined {
  const incoming = (c.env as { incoming?: IncomingMessage } | undefined)?.incoming;
  if (incoming && typeof incoming.complete === 'boolean') {
    return {
      waiting: () => !incoming.complete,
      // No more bytes reach a reader: a partial body never completes, so the handler cannot go
      // on with it; the read fails when the connection closes after the 408.
      abandon: () => {
        incoming.pause();
        incoming.removeAllListeners('data');
        incoming.removeAllListeners('end');
      },
    };
  }
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
