import { type Context, Hono } from 'hono';
import { AppError, isAppError } from '../lib/errors.ts';
import { recordAudit, refuse } from './audit.ts';
import type { ApiEnv } from './env.ts';
import { apiErrors } from './errors.ts';
import { mediaType } from './http.ts';
import { revocationUnavailable } from './revocations.routes.ts';
import type { RouteContext } from './routes.ts';

/** RFC 2585 §4.2: a DER CRL. */
export const PKIX_CRL = 'application/pkix-crl';

const ISSUER_ID = /^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$/;
const SHARD = /^(0|[1-9][0-9]{0,4})$/;

/**
 * Public CRLs (RFC 5280 §5) as DER `application/pkix-crl` (RFC 2585 §4.2): the bytes the CRL
 * scheduler saved, with an ETag (their SHA-256), Last-Modified (thisUpdate) and a max-age that
 * ends at nextUpdate, so caches never serve a CRL past its validity. Conditional GETs answer 304.
 */
// biome-ignore lint/complexity/noExcessiveLinesPerFunction: a route table (hono): one short handler per route, sharing the route context
export function crlRoutes({ deps, guard }: RouteContext): Hono<ApiEnv> {
  const app = new Hono<ApiEnv>();

  async function serve(c: Context<ApiEnv>, issuerId: string, shardText: string, kind: 'full' | 'delta') {
    if (!ISSUER_ID.test(issuerId) || !SHARD.test(shardText))
      throw apiErrors.notFound('No such CRL.', 'crl.not_found');
    if (!deps.revocation) throw revocationUnavailable();
    const shard = Number(shardText);
    const issuer = await deps.issuers.get(issuerId);
    if (!issuer) throw apiErrors.notFound(`No CRL ${issuerId}/${shard}.`, 'crl.not_found');
    const crl = await deps.revocation.crls.getLatest(issuerId, shard, kind);
    // A shard beyond the current count is served while it has a CRL (its certificates were issued
    // under an earlier, larger count); a delta exists only where delta CRLs are published.
    if (!crl && (shard >= issuer.crlShards || kind === 'delta'))
      throw apiErrors.notFound(
        `No ${kind === 'delta' ? 'delta ' : ''}CRL ${issuerId}/${shard}.`,
        'crl.not_found',
      );
    if (!crl) {
      throw new AppError(
        'crl.unavailable',
        'unavailable',
        `The CRL of ${issuerId} has not been published yet; retry shortly.`,
      );
    }
    const now = deps.clock.now();
    const etag = `"${Buffer.from(crl.sha256).toString('hex')}"`;
    const maxAge = Math.max(0, Math.floor((crl.nextUpdate.getTime() - now.getTime()) / 1000));
    const headers = {
      etag,
      'last-modified': crl.thisUpdate.toUTCString(),
      'cache-control': `public, max-age=${maxAge}, no-transform`,
      expires: crl.nextUpdate.toUTCString(),
    };
    // RFC 9110 §13.1.2: If-None-Match wins over If-Modified-Since.
    const ifNoneMatch = c.req.header('if-none-match');
    const ifModifiedSince = c.req.header('if-modified-since');
    const notModified =
      ifNoneMatch !== undefined
        ? ifNoneMatch.split(',').some((tag: string) => {
            const t = tag.trim();
            return t === '*' || t === etag || t === `W/${etag}`;
          })
        : ifModifiedSince !== undefined &&
          Date.parse(ifModifiedSince) >= Math.floor(crl.thisUpdate.getTime() / 1000) * 1000;
    if (notModified) return c.body(null, 304, headers);
    return c.body(Buffer.from(crl.der), 200, { ...headers, 'content-type': PKIX_CRL });
  }

  // DESIGN.md "Issuers": /crl/{id}.crl (shard 0), /crl/{id}/{shard}.crl, and the delta CRLs
  // /crl/{id}/delta.crl and /crl/{id}/{shard}/delta.crl.
  app.get('/crl/:file{[a-z0-9-]+\\.crl}', (c) => serve(c, c.req.param('file').slice(0, -4), '0', 'full'));
  app.get('/crl/:issuerId/delta.crl', (c) => serve(c, c.req.param('issuerId'), '0', 'delta'));
  app.get('/crl/:issuerId/:file{[0-9]+\\.crl}', (c) =>
    serve(c, c.req.param('issuerId'), c.req.param('file').slice(0, -4), 'full'),
  );
  app.get('/crl/:issuerId/:shard/delta.crl', (c) =>
    serve(c, c.req.param('issuerId'), c.req.param('shard'), 'delta'),
  );

  /**
   * Issue #18: publishes a CRL signed offline (a root's, from the crl ceremony), served from then
   * on at /crl/{id}.crl. Admin only; every refusal is a problem document with its code and an
   * audit record.
   */
  app.post('/v1/issuers/:id/crl', guard({ action: 'crl.import', roles: ['admin'] }), async (c) => {
    const { audit, clock } = deps;
    const issuerId = c.req.param('id');
    const target = `issuer:${issuerId.slice(0, 64)}`;
    if (!deps.revocation) throw revocationUnavailable();
    if (mediaType(c.req.header('content-type')) !== PKIX_CRL)
      throw apiErrors.unsupportedMediaType([PKIX_CRL]);
    if (!ISSUER_ID.test(issuerId)) {
      const error = apiErrors.notFound(`No issuer with id '${issuerId.slice(0, 64)}'.`, 'issuer.not_found');
      return refuse(c, audit, clock, 'crl.import', error, target);
    }
    const der = new Uint8Array(await c.req.arrayBuffer());
    let imported: Awaited<ReturnType<typeof deps.revocation.crlImport.importCrl>>;
    try {
      imported = await deps.revocation.crlImport.importCrl({ issuerId, der });
    } catch (error) {
      const refusal =
        isAppError(error) && (error.code.startsWith('crl.') || error.code === 'issuer.not_found');
      if (refusal) return refuse(c, audit, clock, 'crl.import', error, target);
      throw error;
    }
    const crlNumber = imported.crlNumber.toString();
    await recordAudit(c, audit, clock, {
      action: 'crl.import',
      decision: 'allowed',
      target,
      details: { crlNumber, nextUpdate: imported.nextUpdate.toISOString() },
    });
    return c.json({
      issuer: imported.issuerId,
      crlNumber,
      thisUpdate: imported.thisUpdate.toISOString(),
      nextUpdate: imported.nextUpdate.toISOString(),
      entries: imported.entries,
      sha256: Buffer.from(imported.sha256).toString('hex'),
    });
  });
  return app;
}
