import { Hono } from 'hono';
import type { ApiKeyInfo } from '../db/api-keys.repository.ts';
import { parseDuration } from '../lib/duration.ts';
import { recordAudit } from './audit.ts';
import { createApiKey } from './auth/api-keys.ts';
import type { ApiEnv } from './env.ts';
import { apiErrors } from './errors.ts';
import { isJsonType, iso, readJson } from './http.ts';
import type { RouteContext } from './routes.ts';
import { createApiKeyBodySchema } from './schemas.ts';

const KEY_ID = /^[0-9a-f]{16}$/;

/** A stored key as clients see it: never the secret, nor its hash. */
export function apiKeyJson(info: ApiKeyInfo, now: Date) {
  const status =
    info.revokedAt !== null
      ? 'revoked'
      : info.expiresAt !== null && info.expiresAt.getTime() <= now.getTime()
        ? 'expired'
        : 'active';
  return {
    id: info.id,
    roles: info.roles,
    policies: info.policies,
    description: info.description,
    createdAt: info.createdAt.toISOString(),
    createdBy: info.createdBy,
    expiresAt: iso(info.expiresAt),
    revokedAt: iso(info.revokedAt),
    status,
  };
}

export function apikeysRoutes({ deps, guard }: RouteContext): Hono<ApiEnv> {
  const { apiKeys, audit, clock, policies } = deps;
  const app = new Hono<ApiEnv>();

  app.post('/v1/apikeys', guard({ action: 'apikey.create', roles: ['admin'] }), async (c) => {
    if (!isJsonType(c.req.header('content-type'))) throw apiErrors.unsupportedMediaType(['application/json']);
    const body = await readJson(c, createApiKeyBodySchema);
    const unknown = (body.policies ?? []).filter((name) => name !== '*' && !policies.get(name));
    if (unknown.length > 0) {
      throw apiErrors.invalidBody(
        unknown.map((name) => ({ path: 'policies', message: `no policy named '${name}'` })),
      );
    }
    const now = clock.now();
    const seconds = body.expiresIn
      ? (parseDuration(body.expiresIn) as { seconds: number }).seconds
      : undefined;
    const principal = c.get('principal')!;
    const { id, key, info } = await createApiKey(apiKeys, {
      roles: body.roles,
      policies: body.policies ?? [],
      description: body.description ?? '',
      expiresAt: seconds === undefined ? null : new Date(now.getTime() + seconds * 1000),
      createdBy: principal.id,
    });
    await recordAudit(c, audit, clock, {
      action: 'apikey.create',
      decision: 'allowed',
      target: `apikey:${id}`,
      details: { roles: info.roles, policies: info.policies },
    });
    c.header('location', `/v1/apikeys/${id}`);
    // The only response that ever carries the key.
    return c.json({ ...apiKeyJson(info, now), key }, 201);
  });

  app.get('/v1/apikeys', guard({ action: 'apikey.list', roles: ['admin'] }), async (c) => {
    const now = clock.now();
    return c.json({
      items: (await apiKeys.list({ includeRevoked: true })).map((info) => apiKeyJson(info, now)),
    });
  });

  app.delete('/v1/apikeys/:id', guard({ action: 'apikey.revoke', roles: ['admin'] }), async (c) => {
    const id = c.req.param('id');
    if (!KEY_ID.test(id) || !(await apiKeys.revoke(id))) {
      throw apiErrors.notFound(`No active API key with id '${id.slice(0, 64)}'.`, 'apikey.not_found');
    }
    await recordAudit(c, audit, clock, {
      action: 'apikey.revoke',
      decision: 'allowed',
      target: `apikey:${id}`,
    });
    return c.body(null, 204);
  });

  return app;
}
