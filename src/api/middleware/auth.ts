import type { Context, MiddlewareHandler } from 'hono';
import type { Clock } from '../../lib/clock.ts';
import { AppError, isAppError } from '../../lib/errors.ts';
import { bearerToken, principalOf, verifyApiKey } from '../auth/api-keys.ts';
import type { ApiKeyStore, AuditLog } from '../deps.ts';
import type { ApiEnv, Principal, Role } from '../env.ts';
import { apiErrors } from '../errors.ts';
import type { RateLimiter } from './rate-limit.ts';

/** Finds the caller of a request by other means than an API key (mTLS client certificates). */
export type PrincipalResolver = (c: Context<ApiEnv>) => Principal | undefined;

export interface AuthorizerOptions {
  apiKeys: ApiKeyStore;
  audit: AuditLog;
  clock: Clock;
  limiter: RateLimiter;
  /** Tried before the Authorization header, e.g. the verified TLS client certificate. */
  resolvers?: PrincipalResolver[];
}

export interface GuardOptions {
  /** The audit action this endpoint performs, e.g. `certificate.issue`. */
  action: string;
  /** Roles allowed; admin is always allowed; 'authenticated' admits every role. */
  roles: readonly Role[] | 'authenticated';
}

export const hasRole = (principal: Principal, roles: readonly Role[] | 'authenticated'): boolean =>
  roles === 'authenticated' ||
  principal.roles.includes('admin') ||
  roles.some((role) => principal.roles.includes(role));

export const mayUsePolicy = (principal: Principal, policy: string): boolean =>
  principal.policies === '*' || principal.policies.includes(policy);

/**
 * Records a refusal in the audit log, then throws it: a refused request leaves that one record
 * and nothing else (issue #8). A failure to write the audit record is logged, not hidden.
 */
export async function refuse(
  c: Context<ApiEnv>,
  audit: AuditLog,
  clock: Clock,
  action: string,
  error: AppError,
  resource?: string,
): Promise<never> {
  try {
    await audit.record({
      at: clock.now(),
      actor: c.get('principal')?.id ?? 'anonymous',
      action,
      outcome: 'refused',
      code: error.code,
      requestId: c.get('requestId'),
      ...(resource !== undefined ? { resource } : {}),
    });
  } catch (auditError) {
    c.get('logger')?.error({ err: auditError }, 'could not record a refusal in the audit log');
  }
  throw error;
}

/**
 * `guard({ action, roles })` middleware: authenticates (mTLS resolvers, then
 * `Authorization: Bearer <api key>`), rate-limits per credential, then checks the role.
 */
export function createAuthorizer({ apiKeys, audit, clock, limiter, resolvers = [] }: AuthorizerOptions) {
  if (!apiKeys || !audit || !clock || !limiter)
    throw new Error('createAuthorizer: apiKeys, audit, clock and limiter are required');

  async function authenticate(c: Context<ApiEnv>): Promise<Principal> {
    for (const resolve of resolvers) {
      const principal = resolve(c);
      if (principal) return principal;
    }
    const token = bearerToken(c.req.header('authorization'));
    if (token === undefined) throw apiErrors.credentialMissing();
    if (token === null) throw apiErrors.credentialInvalid();
    return principalOf(await verifyApiKey(apiKeys, token, clock));
  }

  return function guard({ action, roles }: GuardOptions): MiddlewareHandler<ApiEnv> {
    if (!action) throw new Error('guard: action is required');
    if (roles !== 'authenticated' && roles.length === 0)
      throw new Error(`guard(${action}): at least one role is required`);
    return async function guardMiddleware(c, next) {
      let principal: Principal;
      try {
        principal = await authenticate(c);
      } catch (error) {
        if (isAppError(error) && (error.category === 'unauthenticated' || error.category === 'forbidden')) {
          return refuse(c, audit, clock, action, error);
        }
        throw error;
      }
      c.set('principal', principal);
      const verdict = limiter.take(principal.id);
      if (!verdict.allowed) {
        throw new AppError(
          'request.rate_limited',
          'rate_limited',
          'Too many requests for this credential; retry later.',
          {
            retryAfter: verdict.retryAfterSeconds,
          },
        );
      }
      if (!hasRole(principal, roles)) {
        return refuse(
          c,
          audit,
          clock,
          action,
          apiErrors.roleForbidden(roles === 'authenticated' ? [] : roles),
        );
      }
      await next();
    };
  };
}

export type Guard = ReturnType<typeof createAuthorizer>;
