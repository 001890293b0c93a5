import { Hono } from 'hono';
import { AppError } from '../lib/errors.ts';
import { parseRequestSerial } from '../lib/serial.ts';
import { recordAudit } from './audit.ts';
import { addressKey, clientAddress } from './client-address.ts';
import type { RevocationDeps } from './deps.ts';
import type { ApiEnv } from './env.ts';
import { apiErrors } from './errors.ts';
import { isJsonType, iso, mediaType, readJson } from './http.ts';
import { checkAttempts, failedAttempt } from './middleware/auth.ts';
import type { RouteContext } from './routes.ts';
import { revokeBodySchema, revokeByKeyBodySchema } from './schemas.ts';

const revocationJson = (result: Awaited<ReturnType<RevocationDeps['revoke']['revoke']>>) => ({
  serialNumber: result.revocation.serial,
  issuer: result.revocation.issuerId,
  status: 'revoked' as const,
  revokedAt: result.revocation.revokedAt.toISOString(),
  reason: result.revocation.reason,
  invalidityDate: iso(result.revocation.invalidityDate),
  outcome: result.outcome,
});

export const revocationUnavailable = () =>
  new AppError('revocation.unavailable', 'unavailable', 'Revocation is not available on this server.');

export function revocationsRoutes({
  deps,
  guard,
  idempotent,
  attempts,
  failedAuth,
}: RouteContext): Hono<ApiEnv> {
  const { audit, clock } = deps;
  const app = new Hono<ApiEnv>();

  /** issue #11: revoker (and admin); revoking again answers the standing revocation. */
  app.post(
    '/v1/certificates/:serial/revoke',
    guard({ action: 'certificate.revoke', roles: ['revoker'] }),
    idempotent,
    async (c) => {
      if (!deps.revocation) throw revocationUnavailable();
      const serial = parseRequestSerial(c.req.param('serial'));
      if (!isJsonType(c.req.header('content-type')))
        throw apiErrors.unsupportedMediaType(['application/json']);
      const body = await readJson(c, revokeBodySchema);
      const result = await deps.revocation.revoke.revoke({
        serial,
        reason: body.reason,
        ...(body.invalidityDate ? { invalidityDate: body.invalidityDate } : {}),
      });
      await recordAudit(c, audit, clock, {
        action: 'certificate.revoke',
        decision: 'allowed',
        target: `certificate:${result.revocation.serial}`,
        details: { reason: result.revocation.reason, outcome: result.outcome },
      });
      return c.json(revocationJson(result));
    },
  );

  /**
   * Public: proof of possession of the certified key is the credential (issue #12). A refused
   * proof is a failed authentication: it counts against the client address's budget
   * (rateLimit.failedAuthPerMinute, 429 beyond, before any work) and is audited in aggregate.
   */
  app.post('/v1/revocations/by-key', async (c) => {
    if (!deps.revocation) throw revocationUnavailable();
    const client = addressKey(clientAddress(c));
    await checkAttempts(attempts, client);
    try {
      const type = mediaType(c.req.header('content-type'));
      let jws: string;
      if (type === 'application/jose') jws = (await c.req.text()).trim();
      else if (isJsonType(type)) jws = (await readJson(c, revokeByKeyBodySchema)).jws;
      else throw apiErrors.unsupportedMediaType(['application/jose', 'application/json']);
      const result = await deps.revocation.revokeByKey.revokeByKey(jws);
      await recordAudit(c, audit, clock, {
        action: 'certificate.revoke_by_key',
        decision: 'allowed',
        target: `certificate:${result.revocation.serial}`,
        details: { reason: result.revocation.reason, outcome: result.outcome },
      });
      return c.json(revocationJson(result));
    } catch (error) {
      if (error instanceof AppError && error.category !== 'internal' && error.category !== 'unavailable') {
        const instead = await failedAttempt(
          c,
          { attempts, failedAuth },
          { client, action: 'certificate.revoke_by_key', code: error.code },
        );
        if (instead) throw instead;
      }
      throw error;
    }
  });

  return app;
}
