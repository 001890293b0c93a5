import type { IncomingMessage } from 'node:http';
import { type Context, Hono } from 'hono';
import type { OcspAnswer } from '../revocation/ocsp-responder.ts';
import { errorResponse } from '../revocation/ocsp-responder.ts';
import { addressKey, clientAddress } from './client-address.ts';
import type { ApiEnv } from './env.ts';
import type { RouteContext } from './routes.ts';

export const OCSP_REQUEST = 'application/ocsp-request';
export const OCSP_RESPONSE = 'application/ocsp-response';

/**
 * OCSP over HTTP (RFC 6960 Appendix A, RFC 5019): every answer is a DER OCSPResponse with
 * status 200, errors included (malformedRequest, unauthorized, tryLater, internalError), never
 * JSON. Successful answers without a nonce are pre-signed and cacheable until nextUpdate
 * (RFC 5019 §6.2: max-age, ETag, Last-Modified, Expires); a GET that names the response the
 * client holds (If-None-Match, If-Modified-Since) gets 304 Not Modified.
 */
export function ocspRoutes({ deps }: RouteContext): Hono<ApiEnv> {
  const app = new Hono<ApiEnv>();

  function render(answer: OcspAnswer, conditional?: { ifNoneMatch?: string; ifModifiedSince?: string }) {
    const headers: Record<string, string> = { 'content-type': OCSP_RESPONSE };
    const now = deps.clock.now();
    if (answer.status === 'successful' && !answer.nonce && answer.nextUpdate && answer.thisUpdate) {
      const maxAge = Math.max(0, Math.floor((answer.nextUpdate.getTime() - now.getTime()) / 1000));
      headers['cache-control'] = `public, max-age=${maxAge}, no-transform, must-revalidate`;
      headers['last-modified'] = answer.thisUpdate.toUTCString();
      headers.expires = answer.nextUpdate.toUTCString();
      if (answer.etag) headers.etag = answer.etag;
      if (conditional && notModified(answer, conditional)) {
        delete headers['content-type'];
        return new Response(null, { status: 304, headers });
      }
    } else {
      headers['cache-control'] = 'no-store';
    }
    return new Response(Buffer.from(answer.der), { status: 200, headers });
  }

  const failed = (status: 'internalError' | 'tryLater' | 'malformedRequest'): Response =>
    new Response(Buffer.from(errorResponse(status)), {
      status: 200,
      headers: { 'content-type': OCSP_RESPONSE, 'cache-control': 'no-store' },
    });

  const context = (c: Context<ApiEnv>) => ({ client: addressKey(clientAddress(c)) });

  app.post('/ocsp', async (c) => {
    if (!deps.revocation) return failed('tryLater');
    const type = (c.req.header('content-type') ?? '').split(';')[0]!.trim().toLowerCase();
    if (type !== OCSP_REQUEST) return failed('malformedRequest');
    try {
      return render(await deps.revocation.ocsp.answer(await requestBody(c), context(c)));
    } catch (error) {
      c.get('logger').error({ err: error }, 'OCSP responder failed');
      return failed('internalError');
    }
  });

  // RFC 6960 §A.1: GET {url}/{url-encoding of base64 of DER request}; the base64 may hold '/'.
  app.get('/ocsp/*', async (c) => {
    if (!deps.revocation) return failed('tryLater');
    // The raw path (not percent-decoded: decodeOcspGetPath does that), without building a URL.
    const raw = c.req.path.slice('/ocsp/'.length);
    try {
      return render(await deps.revocation.ocsp.answerGetPath(raw, context(c)), {
        ...(c.req.header('if-none-match') ? { ifNoneMatch: c.req.header('if-none-match')! } : {}),
        ...(c.req.header('if-modified-since') ? { ifModifiedSince: c.req.header('if-modified-since')! } : {}),
      });
    } catch (error) {
      c.get('logger').error({ err: error }, 'OCSP responder failed');
      return failed('internalError');
    }
  });

  return app;
}

/** RFC 9110 §13.1.2 and §13.1.3: If-None-Match wins; If-Modified-Since compares whole seconds. */
function notModified(
  answer: OcspAnswer,
  { ifNoneMatch, ifModifiedSince }: { ifNoneMatch?: string; ifModifiedSince?: string },
) {
  if (ifNoneMatch !== undefined) {
    if (!answer.etag) return false;
    const tags = ifNoneMatch.split(',').map((tag) => tag.trim().replace(/^W\//, ''));
    return tags.includes('*') || tags.includes(answer.etag);
  }
  if (ifModifiedSince !== undefined && answer.thisUpdate) {
    const since = Date.parse(ifModifiedSince);
    return Number.isFinite(since) && answer.thisUpdate.getTime() <= since;
  }
  return false;
}

/**
 * The POST body. With a Content-Length (which bodyLimit has checked), straight from Node's
 * request stream: hono's arrayBuffer() builds a whole WHATWG Request per call, which was most of
 * a pre-signed POST's cost (bench/ocsp). Otherwise through hono, which enforces the limit.
 */
async function requestBody(c: Context<ApiEnv>): Promise<Uint8Array> {
  const incoming = (c.env as { incoming?: IncomingMessage } | undefined)?.incoming;
  if (!incoming || c.req.header('content-length') === undefined || incoming.readableEnded) {
    return new Uint8Array(await c.req.arrayBuffer());
  }
  const chunks: Buffer[] = [];
  for await (const chunk of incoming) chunks.push(chunk as Buffer);
  const body = Buffer.concat(chunks);
  return new Uint8Array(body.buffer, body.byteOffset, body.byteLength);
}
