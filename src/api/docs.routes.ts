import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { Scalar } from '@scalar/hono-api-reference';
import { Hono } from 'hono';
import type { ApiEnv } from './env.ts';
import type { RouteContext } from './routes.ts';

// The Scalar bundle is served from this server, never from a CDN: the page must work offline.
const SCALAR_BUNDLE = createRequire(import.meta.url).resolve('@scalar/api-reference/browser/standalone.js');

/** GET /docs: an interactive reference rendered from /openapi.yaml (public, like the document). */
export function docsRoutes(_context: RouteContext): Hono<ApiEnv> {
  const app = new Hono<ApiEnv>();
  let bundle: Uint8Array<ArrayBuffer> | undefined;
  app.get('/docs/scalar.js', (c) => {
    bundle ??= new Uint8Array(readFileSync(SCALAR_BUNDLE));
    c.header('content-type', 'text/javascript; charset=utf-8');
    c.header('cache-control', 'public, max-age=86400');
    return c.body(bundle);
  });
  app.get(
    '/docs',
    async (c, next) => {
      await next();
      // The page runs the bundle above and fetches /openapi.yaml; nothing else.
      c.res.headers.set(
        'content-security-policy',
        "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; connect-src 'self'",
      );
    },
    Scalar({
      url: '/openapi.yaml',
      cdn: '/docs/scalar.js',
      pageTitle: 'Signet API',
      withDefaultFonts: false,
    }),
  );
  return app;
}
