import { Hono } from 'hono';
import type { ReadinessProbe } from './deps.ts';
import type { ApiEnv } from './env.ts';
import { type Metrics, probeCrls, probeReadiness } from './metrics.ts';
import type { RouteContext } from './routes.ts';

type CrlLister = Parameters<typeof probeCrls>[1];

async function exposition(metrics: Metrics, readiness: ReadinessProbe, crls: CrlLister): Promise<Response> {
  await Promise.all([probeReadiness(metrics, readiness), probeCrls(metrics, crls)]);
  return new Response(await metrics.registry.metrics(), {
    status: 200,
    headers: { 'content-type': metrics.registry.contentType, 'cache-control': 'no-store' },
  });
}

/** GET /metrics on the API listener: the auditor role (and admin). */
export function metricsRoutes({ deps, guard, metrics }: RouteContext): Hono<ApiEnv> {
  const app = new Hono<ApiEnv>();
  app.get('/metrics', guard({ action: 'metrics.read', roles: ['auditor'] }), () =>
    exposition(metrics, deps.readiness, deps.revocation?.crls),
  );
  return app;
}

/**
 * The separate metrics listener (config server.metricsPort): GET /metrics without a credential,
 * for a Prometheus on an internal network; nothing else is served there.
 */
export function createMetricsApp(metrics: Metrics, readiness: ReadinessProbe, crls?: CrlLister): Hono {
  const app = new Hono();
  app.get('/metrics', () => exposition(metrics, readiness, crls));
  app.notFound((c) => c.text('not found\n', 404));
  return app;
}
