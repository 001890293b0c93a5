import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Hono } from 'hono';
import type { ApiEnv } from './env.ts';
import type { RouteContext } from './routes.ts';

/**
 * The renderer: RapiDoc's self-contained bundle, vendored with its license (vendor/rapidoc/README.md
 * says why and how to update it). It sits two folders above this module both in src/api/ and in
 * the compiled dist/api/.
 */
const RAPIDOC_BUNDLE = fileURLToPath(new URL('../../vendor/rapidoc/rapidoc-min.js', import.meta.url));

const escapeAttribute = (text: string) =>
  text.replace(/&/g, '&amp;').replace(/"/g, '&quot;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/**
 * The page: RapiDoc reads /openapi.yaml from this server and shows `server` (server.publicUrl) as
 * the API server, in system fonts (load-fonts="false": the bundle would otherwise fetch Open Sans
 * from Google Fonts) so nothing leaves this server; loading another
 * specification by URL or file is turned off.
 */
function page(server: string): string {
  const url = escapeAttribute(server);
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Signet API</title>
<link rel="icon" href="data:,">
<script type="module" src="/docs/rapidoc.js"></script>
</head>
<body style="margin:0">
<rapi-doc spec-url="/openapi.yaml" server-url="${url}" default-api-server="${url}"
  allow-server-selection="true" allow-spec-url-load="false" allow-spec-file-load="false"
  show-header="false" render-style="read" theme="light" schema-style="table" load-fonts="false"
  regular-font="system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif"
  mono-font="ui-monospace, 'DejaVu Sans Mono', monospace"></rapi-doc>
</body>
</html>
`;
}

/** GET /docs: an interactive reference rendered from /openapi.yaml (public, like the document). */
export function docsRoutes({ deps }: RouteContext): Hono<ApiEnv> {
  const app = new Hono<ApiEnv>();
  let bundle: Uint8Array<ArrayBuffer> | undefined;
  app.get('/docs/rapidoc.js', (c) => {
    bundle ??= new Uint8Array(readFileSync(RAPIDOC_BUNDLE));
    c.header('content-type', 'text/javascript; charset=utf-8');
    c.header('cache-control', 'public, max-age=86400');
    return c.body(bundle);
  });
  app.get('/docs', (c) => {
    const server = (deps.options?.publicUrl ?? new URL(c.req.url).origin).replace(/\/$/, '');
    // Scripts and styles come from this server only; "Try it" may call the public URL's origin.
    const connect = new URL(server).origin;
    c.header(
      'content-security-policy',
      `default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; connect-src 'self' ${connect}; object-src 'none'; base-uri 'none'; frame-ancestors 'none'`,
    );
    return c.html(page(server));
  });
  return app;
}
