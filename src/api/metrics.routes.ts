import { Hono } from 'hono';
import { AppError } from '../lib/errors.ts';
import type { ReadinessProbe } from './deps.ts';
import type { ApiEnv } from './env.ts';
import { type Metrics, probeCrls, probeReadiness } from './metrics.ts';
import type { RouteContext } from './routes.ts';

type CrlLister = Parameters<typeof probeCrls>[1];

async function exposition(metrics: Metrics, readiness: ReadinessProbe, crls: CrlLister): Promise<Response> {
  await Promise.all([probeReadiness(metrics, readiness), probeCrls(metrics, crls)]);
  let counted: string;
  try {
    counted = await metrics.gather();
  } catch (error) {
    // A worker did not answer (it is restarting): a partial sum would look like counters that
    // went backwards, so the scrape fails instead (Prometheus records it as down).
    throw new AppError(
      'metrics.unavailable',
      'unavailable',
      "The node's metrics could not be gathered from every HTTP worker; retry later.",
      undefined,
      { cause: error },
    );
  }
  const probed = await metrics.probes.metrics();
  return new Response(`${counted}${counted === '' || counted.endsWith('\n') ? '' : '\n'}${probed}`, {
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
  app.get('/metrics', async () => {
    try {
      return await exposition(metrics, readiness, crls);
    } catch {
      return new Response('metrics unavailable: retry later\n', {
        status: 503,
        headers: { 'retry-after': '5' },
      });
    }
  });
  app.notFound((c) => c.text('not found\n', 404));
  return app;
}
