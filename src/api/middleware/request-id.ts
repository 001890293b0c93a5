import { randomUUID } from 'node:crypto';
import type { MiddlewareHandler } from 'hono';
import type { ApiEnv } from '../env.ts';

export interface RequestIdOptions {
  /** Response (and accepted request) header. */
  headerName?: string;
  /** Accept a caller's id when it is this safe shape, so a client can correlate its own logs. */
  acceptIncoming?: boolean;
  generate?: () => string;
}

// A caller-supplied id ends up in logs and problem documents: only a short token of safe characters.
const SAFE_ID = /^[A-Za-z0-9._-]{8,64}$/;

/** Gives every request an id, answered in `X-Request-Id` and carried by every log line and problem. */
export function requestId({
  headerName = 'X-Request-Id',
  acceptIncoming = true,
  generate = randomUUID,
}: RequestIdOptions = {}): MiddlewareHandler<ApiEnv> {
  if (headerName.trim() === '') throw new Error('requestId: headerName must not be empty');
  return async function requestIdMiddleware(c, next) {
    const incoming = acceptIncoming ? c.req.header(headerName) : undefined;
    const id = incoming !== undefined && SAFE_ID.test(incoming) ? incoming : generate();
    c.set('requestId', id);
    await next();
    c.res.headers.set(headerName, id);
  };
}
