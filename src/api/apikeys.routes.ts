import { Hono } from 'hono';
import { parseDuration } from '../lib/duration.ts';
import { createApiKey } from './auth/api-keys.ts';
import type { ApiKeyRecord } from './deps.ts';
import type { ApiEnv } from './env.ts';
import { apiErrors } from './errors.ts';
import { iso, readJson } from './http.ts';
import type { RouteContext } from './routes.ts';
import { createApiKeyBodySchema } from './schemas.ts';

const KEY_ID = /^[0-9a-f]{16}$/;

/** A stored key as clients see it: never the secret, nor its hash. */
export function apiKeyJson(record: ApiKeyRecord, now: Date) {
  const state =
    record.revokedAt !== null
      ? 'revoked'
      : record.expiresAt !== null && record.expiresAt.getTime() <= now.getTime()
        ? 'expired'
        : 'active';
  return {
    id: record.id,
    roles: record.roles,
    policies: record.policies,
    description: record.description,
    createdAt: record.createdAt.toISOString(),
    expiresAt: iso(record.expiresAt),
    revokedAt: iso(record.revokedAt),
    status: state,
  };
}

export function apikeysRoutes({ deps, guard }: RouteContext): Hono<ApiEnv> {
  const { apiKeys, audit, clock, policies } = deps;
  const app = new Hono<ApiEnv>();

  app.post('/v1/apikeys', guard({ action: 'apikey.create', roles: ['admin'] }), async (c) => {
    if (!/^application\/json\b/i.test(c.req.header('content-type') ?? ''))
      throw apiErrors.unsupportedMediaType(['application/json']);
    const body = await readJson(c, createApiKeyBodySchema);
    const unknown = (body.policies ?? []).filter((name) => name !== '*' && !policies.get(name));
    if (unknown.length > 0) {
      throw apiErrors.invalidBody(
        unknown.map((name) => ({ path: 'policies', message: `no policy named '${name}'` })),
      );
    }
    const now = clock.now();
    const expiresAt = body.expiresIn
      ? new Date(now.getTime() + (parseDuration(body.expiresIn) as { seconds: number }).seconds * 1000)
      : null;
    const { id, key, record } = await createApiKey(
      apiKeys,
      { roles: body.roles, policies: body.policies ?? [], description: body.description ?? null, expiresAt },
      clock,
    );
    await audit.record({
      at: now,
      actor: c.get('principal')!.id,
      action: 'apikey.create',
      outcome: 'success',
      resource: `apikey:${id}`,
      requestId: c.get('requestId'),
      details: { roles: record.roles, policies: record.policies },
    });
    c.header('location', `/v1/apikeys/${id}`);
    c.header('cache-control', 'no-store');
    // The only response that ever carries the key.
    return c.json({ ...apiKeyJson({ ...record, revokedAt: null }, now), key }, 201);
  });

  app.get('/v1/apikeys', guard({ action: 'apikey.list', roles: ['admin'] }), async (c) => {
    const now = clock.now();
    return c.json({ items: (await apiKeys.list()).map((record) => apiKeyJson(record, now)) });
  });

  app.delete('/v1/apikeys/:id', guard({ action: 'apikey.revoke', roles: ['admin'] }), async (c) => {
    const id = c.req.param('id');
    if (!KEY_ID.test(id) || !(await apiKeys.revoke(id, clock.now()))) {
      throw apiErrors.notFound(`No active API key with id '${id.slice(0, 64)}'.`, 'apikey.not_found');
    }
    await audit.record({
      at: clock.now(),
      actor: c.get('principal')!.id,
      action: 'apikey.revoke',
      outcome: 'success',
      resource: `apikey:${id}`,
      requestId: c.get('requestId'),
    });
    return c.body(null, 204);
  });

  return app;
}
