import type { MiddlewareHandler } from 'hono';
import type { AppDeps } from './deps.ts';
import type { ApiEnv, Principal } from './env.ts';
import type { Metrics } from './metrics.ts';
import type { Guard } from './middleware/auth.ts';

/** What every route module receives from createApp. */
export interface RouteContext {
  deps: AppDeps;
  guard: Guard;
  /** Idempotency-Key handling, for POSTs whose retries must not repeat the effect. */
  idempotent: MiddlewareHandler<ApiEnv>;
  metrics: Metrics;
}

/** The Requester the CA records with every decision. */
export const requesterOf = (principal: Principal) => ({
  id: principal.id,
  kind: principal.kind,
  policies: principal.policies,
});
