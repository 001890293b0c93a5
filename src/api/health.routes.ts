import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Hono } from 'hono';
import type { ApiEnv } from './env.ts';
import { problemResponse } from './problem.ts';
import type { RouteContext } from './routes.ts';

/** openapi.yaml at the repository root: the contract a test holds every response to. */
export const OPENAPI_PATH = fileURLToPath(new URL('../../openapi.yaml', import.meta.url));

type CheckResult = 'ok' | string;

/** Runs one readiness check with a time budget, so a hung dependency answers 503, not a hang. */
async function check(run: () => Promise<CheckResult>, timeoutMs: number): Promise<CheckResult> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<CheckResult>((resolve) => {
    timer = setTimeout(() => resolve('timed out'), timeoutMs);
  });
  try {
    return await Promise.race([run().catch(() => 'unreachable'), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

export function healthRoutes(
  { deps }: RouteContext,
  { checkTimeoutMs = 2000 }: { checkTimeoutMs?: number } = {},
): Hono<ApiEnv> {
  const app = new Hono<ApiEnv>();
  const openapi = readFileSync(OPENAPI_PATH, 'utf8');

  /** Liveness: the process answers. */
  app.get('/healthz', (c) => {
    c.header('cache-control', 'no-store');
    return c.json({ status: 'ok' });
  });

  /** Readiness: the database answers and the issuing partition is reachable and unsealed. */
  app.get('/readyz', async (c) => {
    const [database, partition] = await Promise.all([
      check(async () => {
        await deps.readiness.database();
        return 'ok';
      }, checkTimeoutMs),
      check(async () => {
        const { state } = await deps.readiness.partition();
        return state === 'unsealed' ? 'ok' : state;
      }, checkTimeoutMs),
    ]);
    const checks = { database, partition };
    c.header('cache-control', 'no-store');
    if (database === 'ok' && partition === 'ok') return c.json({ status: 'ready', checks });
    return problemResponse(c, {
      code: 'service.not_ready',
      status: 503,
      title: 'Service unavailable',
      detail: `Not ready: ${Object.entries(checks)
        .filter(([, value]) => value !== 'ok')
        .map(([name, value]) => `${name} ${value}`)
        .join(', ')}.`,
      extra: { checks },
      headers: { 'retry-after': '5', 'cache-control': 'no-store' },
    });
  });

  app.get('/openapi.yaml', (c) => {
    c.header('content-type', 'application/yaml; charset=utf-8');
    return c.body(openapi);
  });

  return app;
}
