import type { Context, MiddlewareHandler } from 'hono';
import type { Clock } from '../../lib/clock.ts';
import { AppError, isAppError } from '../../lib/errors.ts';
import { isBoundToPolicy } from '../../policy/binding.ts';
import { refuse } from '../audit.ts';
import { bearerToken, verifyApiKey } from '../auth/api-keys.ts';
import { addressKey, clientAddress } from '../client-address.ts';
import type { AppDeps } from '../deps.ts';
import type { ApiEnv, Principal, PrincipalResolver, Role } from '../env.ts';
import { apiErrors } from '../errors.ts';
import type { FailedAuthAudit } from '../failed-auth.ts';
import type { AttemptLimiter, CredentialLimiter, RateVerdict } from './rate-limit.ts';

export type { PrincipalResolver } from '../env.ts';

export interface AuthorizerOptions {
  apiKeys: AppDeps['apiKeys'];
  audit: AppDeps['audit'];
  clock: Clock;
  limiter: CredentialLimiter;
  /** Failed authentication per client address (rateLimit.failedAuthPerMinute). */
  attempts: AttemptLimiter;
  /** Where failed authentication is audited, one row per client address and interval. */
  failedAuth: FailedAuthAudit;
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

/** src/policy/binding.ts's check, asked before any work so a refusal costs nothing. */
export const mayUsePolicy = (principal: Principal, policy: string): boolean =>
  isBoundToPolicy(principal.policies, policy);

/**
 * `guard({ action, roles })` middleware: refuses a client address that spent its failed
 * authentications (429, before any work), authenticates (mTLS resolvers, then
 * `Authorization: Bearer <api key>`), rate-limits per credential, then checks the role.
 */
export function createAuthorizer({
  apiKeys,
  audit,
  clock,
  limiter,
  attempts,
  failedAuth,
  resolvers = [],
}: AuthorizerOptions) {
  if (!apiKeys || !audit || !clock || !limiter || !attempts || !failedAuth)
    throw new Error('createAuthorizer: apiKeys, audit, clock, limiter, attempts and failedAuth are required');

  async function authenticate(c: Context<ApiEnv>): Promise<Principal> {
    for (const resolve of resolvers) {
      const principal = await resolve(c);
      if (principal) return principal;
    }
    const token = bearerToken(c.req.header('authorization'));
    if (token === undefined) throw apiErrors.credentialMissing();
    if (token === null) throw apiErrors.credentialInvalid();
    return verifyApiKey(apiKeys, token);
  }

  return function guard({ action, roles }: GuardOptions): MiddlewareHandler<ApiEnv> {
    if (!action) throw new Error('guard: action is required');
    if (roles !== 'authenticated' && roles.length === 0)
      throw new Error(`guard(${action}): at least one role is required`);
    return async function guardMiddleware(c, next) {
      const client = addressKey(clientAddress(c));
      await checkAttempts(attempts, client);
      let principal: Principal;
      try {
        principal = await authenticate(c);
      } catch (error) {
        // A missing, invalid or expired credential: counted per address, audited in aggregate.
        if (isAppError(error) && (error.category === 'unauthenticated' || error.category === 'forbidden')) {
          throw (
            (await failedAttempt(c, { attempts, failedAuth }, { client, action, code: error.code })) ?? error
          );
        }
        throw error;
      }
      c.set('principal', principal);
      const verdict = await limiter.take(principal.id);
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

/** 429 with Retry-After when `client` spent its failed attempts (issue #19). */
export async function checkAttempts(attempts: AttemptLimiter, client: string): Promise<void> {
  const verdict = await attempts.check(client);
  if (!verdict.allowed) throw tooManyFailures(verdict.retryAfterSeconds);
}

const tooManyFailures = (retryAfter: number) =>
  new AppError(
    'request.rate_limited',
    'rate_limited',
    'Too many failed attempts from this address; retry later.',
    { retryAfter },
  );

/**
 * Counts a failed attempt of `client` against its budget and in the aggregated audit log. Answers
 * the 429 to throw instead of the refusal when the budget was already spent (another node spent
 * it: issue #29). A failure to count is logged; the refusal stands either way.
 */
export async function failedAttempt(
  c: Context<ApiEnv>,
  { attempts, failedAuth }: { attempts: AttemptLimiter; failedAuth: FailedAuthAudit },
  failure: { client: string; action: string; code: string },
): Promise<AppError | undefined> {
  let verdict: RateVerdict = { allowed: true };
  try {
    verdict = await attempts.fail(failure.client);
    await failedAuth.record({ ...failure, requestId: c.get('requestId') });
  } catch (error) {
    c.get('logger')?.error({ err: error }, 'could not count a failed attempt');
  }
  return verdict.allowed ? undefined : tooManyFailures(verdict.retryAfterSeconds);
}
