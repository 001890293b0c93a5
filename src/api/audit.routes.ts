import { Hono } from 'hono';
import type { AuditEventRecord } from '../db/audit.repository.ts';
import type { ApiEnv } from './env.ts';
import { readQuery } from './http.ts';
import type { RouteContext } from './routes.ts';
import { listAuditQuerySchema } from './schemas.ts';

/** One event as clients see it; the chain fields let an auditor check the hash chain by hand. */
const eventJson = (event: AuditEventRecord) => ({
  id: String(event.id),
  at: event.at.toISOString(),
  actor: event.actor,
  action: event.action,
  target: event.target,
  decision: event.decision,
  details: event.details,
  node: event.nodeId,
  seq: event.seq,
  hash: Buffer.from(event.hash).toString('hex'),
  prevHash: Buffer.from(event.prevHash).toString('hex'),
});

export function auditRoutes({ deps, guard }: RouteContext): Hono<ApiEnv> {
  const app = new Hono<ApiEnv>();
  app.get('/v1/audit', guard({ action: 'audit.list', roles: ['auditor'] }), async (c) => {
    const { actor, action, target, decision, since, until, cursor, limit } = readQuery(
      c,
      listAuditQuerySchema,
    );
    const page = await deps.audit.list({
      ...(actor ? { actor } : {}),
      ...(action ? { action } : {}),
      ...(target ? { target } : {}),
      ...(decision ? { decision } : {}),
      ...(since ? { since } : {}),
      ...(until ? { until } : {}),
      ...(cursor ? { cursor } : {}),
      limit,
    });
    return c.json({ items: page.items.map(eventJson), nextCursor: page.nextCursor });
  });
  return app;
}
