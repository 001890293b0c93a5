import type { MiddlewareHandler } from 'hono';
import type { AppDeps } from './deps.ts';
import type { ApiEnv, Principal } from './env.ts';
import type { FailedAuthAudit } from './failed-auth.ts';
import type { Metrics } from './metrics.ts';
import type { Guard } from './middleware/auth.ts';
import type { AttemptLimiter } from './middleware/rate-limit.ts';

/** What every route module receives from createApp. */
export interface RouteContext {
  deps: AppDeps;
  guard: Guard;
  /** Idempotency-Key handling, for POSTs whose retries must not repeat the effect. */
  idempotent: MiddlewareHandler<ApiEnv>;
  metrics: Metrics;
  /** Failed attempts per client address, for public endpoints that do work (revocation by key). */
  attempts: AttemptLimiter;
  failedAuth: FailedAuthAudit;
}

/** The Requester the CA records with every decision. */
export const requesterOf = (principal: Principal) => ({
  id: principal.id,
  kind: principal.kind,
  policies: principal.policies,
});
