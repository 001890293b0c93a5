import { createHash } from 'node:crypto';
import type { MiddlewareHandler } from 'hono';
import type { Clock } from '../../lib/clock.ts';
import { AppError } from '../../lib/errors.ts';
import type { IdempotencyStore } from '../deps.ts';
import type { ApiEnv } from '../env.ts';

export interface IdempotencyOptions {
  store: IdempotencyStore;
  clock: Clock;
  /** How long a key is remembered per credential (issue #8: 24 h). */
  ttlMs?: number;
  /** An in-flight record older than this belongs to a request that died with its process. */
  staleAfterMs?: number;
}

export const IDEMPOTENCY_HEADER = 'Idempotency-Key';
export const REPLAYED_HEADER = 'Idempotent-Replayed';
/** What a replay repeats besides the status and body. */
const REPLAYED_HEADERS = ['content-type', 'location'];

// The IETF httpapi Idempotency-Key draft makes the value an RFC 8941 sf-string; bare tokens are
// common in practice, so both `"abc"` and `abc` are accepted, printable ASCII, at most 255 long.
const KEY_PATTERN = /^"?([\x21\x23-\x7e]{1,255})"?$/;

/**
 * Idempotency-Key (draft-ietf-httpapi-idempotency-key-header): per credential, a retry with the
 * same request replays the first 2xx response; the same key with another request is 422; a retry
 * while the first is still running is 409. Only successful responses are remembered: a failed
 * request releases the key so the retry runs again. Runs after authentication.
 */
export function idempotency({
  store,
  clock,
  ttlMs = 24 * 60 * 60 * 1000,
  staleAfterMs = 5 * 60 * 1000,
}: IdempotencyOptions): MiddlewareHandler<ApiEnv> {
  if (!store || !clock) throw new Error('idempotency: store and clock are required');
  if (!(ttlMs > 0) || !(staleAfterMs > 0))
    throw new Error('idempotency: ttlMs and staleAfterMs must be positive');
  return async function idempotencyMiddleware(c, next) {
    const header = c.req.header(IDEMPOTENCY_HEADER);
    if (header === undefined) return next();
    const match = KEY_PATTERN.exec(header.trim());
    if (!match) {
      throw new AppError(
        'idempotency.key_invalid',
        'invalid',
        'The Idempotency-Key must be 1 to 255 printable ASCII characters.',
      );
    }
    const key = match[1] as string;
    const principal = c.get('principal');
    if (!principal) throw new Error('idempotency middleware runs after authentication');

    const body = new Uint8Array(await c.req.arrayBuffer());
    const fingerprint = createHash('sha256')
      .update(`${c.req.method}\n${new URL(c.req.url).pathname}${new URL(c.req.url).search}\n`)
      .update(`${c.req.header('content-type') ?? ''}\n${c.req.header('accept') ?? ''}\n`)
      .update(body)
      .digest('hex');
    const now = clock.now();
    const claim = await store.claim({
      principal: principal.id,
      key,
      fingerprint,
      now,
      expiresAt: new Date(now.getTime() + ttlMs),
      staleBefore: new Date(now.getTime() - staleAfterMs),
    });
    if (claim.state !== 'claimed' && claim.fingerprint !== fingerprint) {
      throw new AppError(
        'idempotency.key_reused',
        'unprocessable',
        'This Idempotency-Key was already used with a different request.',
      );
    }
    if (claim.state === 'in_flight') {
      throw new AppError(
        'idempotency.in_flight',
        'conflict',
        'A request with this Idempotency-Key is still being processed; retry later.',
        {
          retryAfter: 1,
        },
      );
    }
    if (claim.state === 'completed') {
      const { status, headers, body: stored } = claim.response;
      return new Response(Buffer.from(stored), {
        status,
        headers: { ...headers, [REPLAYED_HEADER]: 'true' },
      });
    }

    try {
      await next();
    } catch (error) {
      await store.release({ principal: principal.id, key });
      throw error;
    }
    const response = c.res;
    if (response.status >= 200 && response.status < 300) {
      const headers: Record<string, string> = {};
      for (const name of REPLAYED_HEADERS) {
        const value = response.headers.get(name);
        if (value !== null) headers[name] = value;
      }
      const body = new Uint8Array(await response.clone().arrayBuffer());
      await store.complete({
        principal: principal.id,
        key,
        response: { status: response.status, headers, body },
      });
    } else {
      await store.release({ principal: principal.id, key });
    }
  };
}
