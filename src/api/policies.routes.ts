import path from 'node:path';
import { Hono } from 'hono';
import { AppError } from '../lib/errors.ts';
import type { Policy } from '../policy/types.ts';
import { recordAudit, refuse } from './audit.ts';
import { readIssuanceRequest } from './certificates.routes.ts';
import type { ApiEnv } from './env.ts';
import { apiErrors } from './errors.ts';
import { mayUsePolicy } from './middleware/auth.ts';
import { type RouteContext, requesterOf } from './routes.ts';

const summaryJson = (policy: Policy) => ({
  name: policy.name,
  description: policy.description,
  issuer: policy.issuer,
});

export function policiesRoutes({ deps, guard }: RouteContext): Hono<ApiEnv> {
  const { ca, policies, audit, clock } = deps;
  const app = new Hono<ApiEnv>();

  app.get('/v1/policies', guard({ action: 'policy.list', roles: 'authenticated' }), (c) =>
    c.json({ items: policies.list().map(summaryJson) }),
  );

  app.get('/v1/policies/:name', guard({ action: 'policy.read', roles: 'authenticated' }), (c) => {
    const policy = policies.get(c.req.param('name'));
    if (!policy) throw apiErrors.notFound(`No policy named '${c.req.param('name')}'.`, 'policy.not_found');
    return c.json({ ...summaryJson(policy), policy: policy.document });
  });

  // Reload is registered before /:name/evaluate so that it is never read as a policy name.
  app.post('/v1/policies/reload', guard({ action: 'policy.reload', roles: ['admin'] }), async (c) => {
    const result = await policies.reload();
    if (!result.ok) {
      // The old set stays in force (PolicyRegistry.reload); say which file and key are wrong.
      const errors = result.errors.map((error) => ({
        path: `${path.basename(error.file)}${error.line !== undefined ? `:${error.line}` : ''}${error.path ? ` ${error.path}` : ''}`,
        message: error.message,
      }));
      await recordAudit(c, audit, clock, {
        action: 'policy.reload',
        decision: 'failed',
        code: 'policy.load_failed',
      });
      throw new AppError(
        'policy.load_failed',
        'invalid',
        'A policy file is invalid; the policies in force are unchanged.',
        { errors },
      );
    }
    await recordAudit(c, audit, clock, {
      action: 'policy.reload',
      decision: 'allowed',
      details: { loaded: result.policies },
    });
    return c.json({ loaded: result.policies });
  });

  /** The dry run: every decision with its reason; signs nothing (issue #8). */
  app.post(
    '/v1/policies/:name/evaluate',
    guard({ action: 'policy.evaluate', roles: ['issuer'] }),
    async (c) => {
      const principal = c.get('principal')!;
      const request = await readIssuanceRequest(c, c.req.param('name'));
      if (!mayUsePolicy(principal, request.policy)) {
        return refuse(
          c,
          audit,
          clock,
          'policy.evaluate',
          apiErrors.policyNotBound(request.policy),
          `policy:${request.policy}`,
        );
      }
      const result = await ca.evaluate({
        csr: request.csr,
        policy: request.policy,
        overrides: request.overrides,
        requester: requesterOf(principal),
      });
      return c.json(result);
    },
  );

  return app;
}
