import { Hono } from 'hono';
import { acmeErrors, acmeRoutes } from './acme/acme.routes.ts';
import { apikeysRoutes } from './apikeys.routes.ts';
import { auditRoutes } from './audit.routes.ts';
import { createMtlsResolver, revokedByThisCa } from './auth/mtls.ts';
import { certificatesRoutes } from './certificates.routes.ts';
import { crlRoutes } from './crl.routes.ts';
import type { AppDeps } from './deps.ts';
import { docsRoutes } from './docs.routes.ts';
import type { ApiEnv } from './env.ts';
import { methodNotAllowed, onError, onNotFound } from './errors.ts';
import { createFailedAuthAudit } from './failed-auth.ts';
import { healthRoutes } from './health.routes.ts';
import { issuersRoutes } from './issuers.routes.ts';
import { metricsRoutes } from './metrics.routes.ts';
import { createMetrics, requestMetrics } from './metrics.ts';
import { createAuthorizer, type PrincipalResolver } from './middleware/auth.ts';
import { bodyLimit } from './middleware/body-limit.ts';
import { idempotency } from './middleware/idempotency.ts';
import { requestLogging } from './middleware/logging.ts';
import { createMemoryAttemptLimiter, RateLimiter } from './middleware/rate-limit.ts';
import { requestId } from './middleware/request-id.ts';
import { responseHeaders } from './middleware/response-headers.ts';
import { requestTimeout } from './middleware/timeout.ts';
import { ocspRoutes } from './ocsp.routes.ts';
import { policiesRoutes } from './policies.routes.ts';
import { renewRoutes } from './renew.routes.ts';
import { revocationsRoutes } from './revocations.routes.ts';
import type { RouteContext } from './routes.ts';

export interface CreateAppExtras {
  /** Extra ways to authenticate (mTLS client certificates), tried before API keys. */
  resolvers?: PrincipalResolver[];
}

/**
 * Signet's HTTP API. Every route is thin: authenticate and authorise (guard), validate (zod),
 * call a use case, render. Every error, from any layer, leaves through `onError` as an RFC 9457
 * problem; unknown routes are 404 problems and known routes with another method 405.
 */
export function createApp(deps: AppDeps, extras: CreateAppExtras = {}): Hono<ApiEnv> {
  const { clock, logger, options = {} } = deps;
  const limiter = deps.limiter ?? new RateLimiter({ perMinute: options.rateLimitPerMinute ?? 6000, clock });
  const attempts =
    deps.attempts ?? createMemoryAttemptLimiter({ perMinute: options.failedAuthPerMinute ?? 60, clock });
  const failedAuth =
    deps.failedAuth ??
    createFailedAuthAudit({
      audit: deps.audit,
      clock,
      logger,
      intervalMs: options.failedAuthIntervalMs ?? 60_000,
    });
  const guard = createAuthorizer({
    apiKeys: deps.apiKeys,
    audit: deps.audit,
    clock,
    limiter,
    attempts,
    failedAuth,
    resolvers: [
      ...(options.tlsClients?.length
        ? [createMtlsResolver(options.tlsClients, { revoked: revokedByThisCa(deps.certificates) })]
        : []),
      ...(extras.resolvers ?? []),
    ],
  });
  const context: RouteContext = {
    deps,
    guard,
    idempotent: idempotency({ store: deps.idempotency }),
    metrics: deps.metrics ?? createMetrics(),
    attempts,
    failedAuth,
  };

  const app = new Hono<ApiEnv>();
  app.use(requestId(), requestLogging({ logger }), responseHeaders(), requestMetrics(context.metrics));
  // ACME answers its errors in its own problem types, those of the middlewares below included.
  if (deps.acme) app.use('/acme/*', acmeErrors(deps.acme));
  // The time budget covers reading the body too: bodyLimit reads a chunked body in full.
  app.use(
    requestTimeout({
      ms: options.requestTimeoutMs ?? 30_000,
      unwatchedBodies: (c) => c.req.method === 'POST' && c.req.path === '/ocsp',
    }),
  );
  app.use(bodyLimit({ maxBytes: options.bodyLimit ?? 64 * 1024 }));

  for (const routes of [
    healthRoutes,
    certificatesRoutes,
    renewRoutes,
    revocationsRoutes,
    policiesRoutes,
    apikeysRoutes,
    issuersRoutes,
    auditRoutes,
    crlRoutes,
    ocspRoutes,
    metricsRoutes,
    docsRoutes,
    acmeRoutes,
  ]) {
    app.route('/', routes(context));
  }

  // 405 with Allow (RFC 9110 §15.5.6) for a known path asked with another method.
  const methodsByPath = new Map<string, Set<string>>();
  for (const { method, path } of app.routes) {
    if (method === 'ALL') continue;
    const methods = methodsByPath.get(path) ?? new Set<string>();
    methods.add(method);
    if (method === 'GET') methods.add('HEAD');
    methodsByPath.set(path, methods);
  }
  for (const [path, methods] of methodsByPath) {
    app.all(path, (c) => methodNotAllowed(c, [...methods]));
  }

  app.onError(onError);
  app.notFound(onNotFound);
  return app;
}
