import { createHash } from 'node:crypto';
import type { MiddlewareHandler } from 'hono';
import { AppError } from '../../lib/errors.ts';
import type { AppDeps } from '../deps.ts';
import type { ApiEnv } from '../env.ts';

export const IDEMPOTENCY_HEADER = 'Idempotency-Key';
export const REPLAYED_HEADER = 'Idempotent-Replayed';
/** What a replay repeats besides the status and body. */
const REPLAYED_HEADERS = ['content-type', 'location'];

// The IETF httpapi Idempotency-Key draft makes the value an RFC 8941 sf-string; bare tokens are
// common in practice, so both `"abc"` and `abc` are accepted, printable ASCII, at most 255 long.
const KEY_PATTERN = /^"?([\x21\x23-\x7e]{1,255})"?$/;

/**
 * Idempotency-Key (draft-ietf-httpapi-idempotency-key-header), per credential and kept 24 h in
 * the database (so it survives restarts): a retry of the same request replays the first 2xx
 * response; the same key with another request is 422; a retry while the first is still running
 * is 409. Only successful responses are kept: a failed request releases the key so that its
 * retry runs again. Runs after authentication.
 *
 * A retry whose first attempt died with its server (src/db/idempotency.repository.ts) runs again
 * at once, with `idempotency.recoveredSerial` set when that attempt stored a certificate: the
 * route answers with that certificate (and Idempotent-Replayed) instead of issuing another.
 */
export function idempotency({ store }: { store: AppDeps['idempotency'] }): MiddlewareHandler<ApiEnv> {
  if (!store) throw new Error('idempotency: a store is required');
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
    const key = match[1]!;
    const principal = c.get('principal');
    if (!principal) throw new Error('the idempotency middleware runs after authentication');
    const credentialId = principal.id;

    // The request as the server sees it: method, target, the headers that change the answer, body.
    const url = new URL(c.req.url);
    const requestHash = createHash('sha256')
      .update(`${c.req.method}\n${url.pathname}${url.search}\n`)
      .update(`${c.req.header('content-type') ?? ''}\n${c.req.header('accept') ?? ''}\n`)
      .update(new Uint8Array(await c.req.arrayBuffer()))
      .digest();
    const begun = await store.begin({ credentialId, key, requestHash: Uint8Array.from(requestHash) });
    if (begun.outcome === 'mismatch') {
      throw new AppError(
        'idempotency.key_reused',
        'unprocessable',
        'This Idempotency-Key was already used with a different request.',
      );
    }
    if (begun.outcome === 'in_flight') {
      throw new AppError(
        'idempotency.in_flight',
        'conflict',
        'A request with this Idempotency-Key is still being processed; retry later.',
        {
          retryAfter: 1,
        },
      );
    }
    if (begun.outcome === 'completed') {
      const { status, headers, body } = begun.response;
      return new Response(Buffer.from(body), { status, headers: { ...headers, [REPLAYED_HEADER]: 'true' } });
    }
    c.set('idempotency', {
      credentialId,
      key,
      recoveredSerial: begun.outcome === 'recovered' ? begun.certificateSerial : null,
    });

    try {
      await next();
    } catch (error) {
      await store.release({ credentialId, key });
      throw error;
    }
    const response = c.res;
    if (response.status < 200 || response.status >= 300) {
      await store.release({ credentialId, key });
      return;
    }
    const headers: Record<string, string> = {};
    for (const name of REPLAYED_HEADERS) {
      const value = response.headers.get(name);
      if (value !== null) headers[name] = value;
    }
    const body = new Uint8Array(await response.clone().arrayBuffer());
    await store.complete({ credentialId, key, response: { status: response.status, headers, body } });
  };
}
