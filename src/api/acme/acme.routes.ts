import { type Context, Hono, type MiddlewareHandler } from 'hono';
import type { AcmeServer } from '../../acme/server.ts';
import type { AcmeResponse } from '../../acme/types.ts';
import { parseDuration } from '../../lib/duration.ts';
import { AppError } from '../../lib/errors.ts';
import { addressKey, clientAddress } from '../client-address.ts';
import type { ApiEnv } from '../env.ts';
import { apiErrors } from '../errors.ts';
import { isJsonType, iso, readJson } from '../http.ts';
import type { RouteContext } from '../routes.ts';
import { createEabKeyBodySchema } from '../schemas.ts';

/**
 * The ACME server's HTTP edge (RFC 8555): `/acme/{directory}/...` handed to src/acme as plain
 * requests. ACME is its own protocol with RFC 8555 as its contract, so these paths are not in
 * openapi.yaml and their errors are ACME problem documents (`urn:ietf:params:acme:error:*`),
 * not Signet's.
 */

const directoryOf = (path: string): string | undefined => path.split('/')[2] || undefined;

function toResponse(answer: AcmeResponse): Response {
  const headers = new Headers(answer.headers);
  for (const link of answer.links) headers.append('link', link);
  const body =
    answer.body === undefined
      ? null
      : typeof answer.body === 'string'
        ? answer.body
        : JSON.stringify(answer.body);
  return new Response(body, { status: answer.status, headers });
}

/**
 * Errors raised before an ACME handler answers (a body over server.bodyLimit, the request time
 * budget) leave the app's middleware as Signet problems; on /acme/* they are answered again as
 * ACME problems with a nonce. Registered before those middlewares, so it sees what they threw.
 */
export function acmeErrors(acme: AcmeServer): MiddlewareHandler<ApiEnv> {
  return async function acmeErrorsMiddleware(c, next) {
    await next();
    if (!c.error) return;
    const answer = toResponse(
      await acme.errorResponse(c.error, directoryOf(c.req.path), addressKey(clientAddress(c))),
    );
    // Replace rather than merge: the Signet problem's headers must not leak into the ACME one.
    c.res = undefined;
    c.res = answer;
  };
}

export function acmeRoutes({ deps, guard }: RouteContext): Hono<ApiEnv> {
  const app = new Hono<ApiEnv>();
  const acme = deps.acme;

  // RFC 8555 §7.3.4 keys are made by an admin; the HMAC key is in this answer only. Without ACME
  // configured, every directory is unknown.
  app.post('/v1/acme/eab-keys', guard({ action: 'acme.eab.create', roles: ['admin'] }), async (c) => {
    if (!isJsonType(c.req.header('content-type'))) throw apiErrors.unsupportedMediaType(['application/json']);
    const body = await readJson(c, createEabKeyBodySchema);
    const now = deps.clock.now();
    const seconds = body.expiresIn
      ? (parseDuration(body.expiresIn) as { seconds: number }).seconds
      : undefined;
    if (!acme) {
      throw new AppError(
        'acme.unknown_directory',
        'invalid',
        `there is no ACME directory named ${body.directory}: this server configures none (acme.directories)`,
      );
    }
    const created = await acme.createEabKey({
      directory: body.directory,
      policies: body.policies,
      expiresAt: seconds === undefined ? null : new Date(now.getTime() + seconds * 1000),
      createdBy: c.get('principal')!.id,
    });
    return c.json(
      {
        kid: created.kid,
        hmacKey: created.hmacKey,
        directory: created.directory,
        policies: created.policies,
        createdAt: created.createdAt.toISOString(),
        expiresAt: iso(created.expiresAt),
      },
      201,
    );
  });

  if (!acme) return app;
  const handle = async (c: Context<ApiEnv>) => {
    const [, , directory = '', ...resource] = c.req.path.split('/');
    const method = c.req.raw.method;
    const answer = await acme.handle({
      method,
      directory,
      resource,
      contentType: c.req.header('content-type'),
      accept: c.req.header('accept'),
      body: method === 'POST' ? await c.req.text() : '',
      client: addressKey(clientAddress(c)),
    });
    const response = toResponse(answer);
    return method === 'HEAD' ? new Response(null, response) : response;
  };
  app.all('/acme/:directory', handle);
  app.all('/acme/:directory/*', handle);
  return app;
}
