import { Hono } from 'hono';
import type { AuditEventView } from './deps.ts';
import type { ApiEnv } from './env.ts';
import { readQuery } from './http.ts';
import type { RouteContext } from './routes.ts';
import { listAuditQuerySchema } from './schemas.ts';

const eventJson = (event: AuditEventView) => ({
  id: event.id,
  at: event.at.toISOString(),
  actor: event.actor,
  action: event.action,
  outcome: event.outcome,
  resource: event.resource ?? null,
  code: event.code ?? null,
  requestId: event.requestId ?? null,
  details: event.details ?? {},
});

export function auditRoutes({ deps, guard }: RouteContext): Hono<ApiEnv> {
  const app = new Hono<ApiEnv>();
  app.get('/v1/audit', guard({ action: 'audit.list', roles: ['auditor'] }), async (c) => {
    const page = await deps.audit.list(readQuery(c, listAuditQuerySchema));
    return c.json({ items: page.items.map(eventJson), nextCursor: page.nextCursor });
  });
  return app;
}
