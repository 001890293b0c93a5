import { type AcmeCall, type AcmeContext, accountOf, actorOf, authenticate, json } from './context.ts';
import { AcmeError, acmeError } from './errors.ts';
import { acmeUrls, authorizationStatus, challengeDocument } from './objects.ts';
import type { AcmeResponse } from './types.ts';
import type { ChallengeType } from './validation/validator.ts';

/**
 * Challenges (RFC 8555 §7.5.1, §8): a POST of `{}` asks the server to validate; the answer comes
 * at once with the challenge `processing`, and the validation runs in the background queue on
 * this node. Its result lands in the database for whichever node the client polls.
 */

/** How long past its timeout a node keeps a challenge it validates, before another may take it. */
const LEASE_MARGIN_MS = 60_000;

export async function postChallenge(ctx: AcmeContext, call: AcmeCall, id: string): Promise<AcmeResponse> {
  const auth = await authenticate(ctx, call, 'kid');
  const account = accountOf(auth);
  const { repository, validationTimeoutMs } = ctx.options;
  const found = await repository.findChallenge(id);
  if (!found) throw acmeError('malformed', `there is no challenge ${id}`, { status: 404 });
  if (found.authorization.accountId !== account.id) {
    throw acmeError('unauthorized', 'this challenge belongs to another account');
  }
  const up = `<${call.urls.authorization(found.authorization.id)}>;rel="up"`;
  // POST-as-GET reads the challenge; any JSON object (RFC 8555 says `{}`) asks for validation.
  if (auth.payload !== undefined && found.challenge.status === 'pending') {
    const now = ctx.now();
    if (authorizationStatus(found.authorization, now) !== 'pending') {
      throw acmeError(
        'malformed',
        `the authorization is ${authorizationStatus(found.authorization, now)}; its challenges cannot be answered`,
      );
    }
    if (ctx.queue.size >= MAX_QUEUED) {
      throw acmeError('rateLimited', 'too many validations are waiting; answer the challenge again shortly', {
        retryAfter: 5,
      });
    }
    const lease = new Date(now.getTime() + validationTimeoutMs + LEASE_MARGIN_MS);
    if (await repository.startChallenge(id, lease)) {
      ctx.queue.enqueue(id);
      const answer = json(200, challengeDocument({ ...found.challenge, status: 'processing' }, call.urls), {
        links: [up],
      });
      // RFC 8555 §8.2: when to look again (lego waits 5 s without it).
      answer.headers['retry-after'] = '1';
      return answer;
    }
    const again = await repository.findChallenge(id);
    if (again) return json(200, challengeDocument(again.challenge, call.urls), { links: [up] });
  }
  return json(200, challengeDocument(found.challenge, call.urls), { links: [up] });
}

/** Waiting validations beyond which a challenge POST is asked to come back later. */
export const MAX_QUEUED = 10_000;

/** Runs one validation (the queue calls it) and records its outcome with its authorisation. */
export async function runValidation(ctx: AcmeContext, id: string): Promise<void> {
  const { repository, validator, validationTimeoutMs, authorizationLifetimeMs, logger } = ctx.options;
  const found = await repository.findChallenge(id);
  if (found?.challenge.status !== 'processing') return;
  const { challenge, authorization } = found;
  await repository.renewChallengeLease(
    id,
    new Date(ctx.now().getTime() + validationTimeoutMs + LEASE_MARGIN_MS),
  );
  const account = await repository.findAccount(authorization.accountId);
  if (!account) return;
  // RFC 8555 §8.1: token || '.' || base64url(JWK thumbprint of the account key).
  const keyAuthorization = `${challenge.token}.${account.keyThumbprint}`;
  const identifier = { type: authorization.identifierType, value: authorization.identifierValue };
  let problem: AcmeError | undefined;
  try {
    await validator.validate({
      type: challenge.type as ChallengeType,
      identifier,
      token: challenge.token,
      keyAuthorization,
      wildcard: authorization.wildcard,
      accountUri: acmeUrls(ctx.options.publicUrl, account.directory).account(account.id),
    });
  } catch (error) {
    if (error instanceof AcmeError) problem = error;
    else {
      logger?.error({ err: error, challenge: id }, 'ACME validation failed unexpectedly');
      problem = acmeError('serverInternal', 'the validation could not be carried out');
    }
  }
  const finished = await repository.finishChallenge(
    id,
    problem
      ? { status: 'invalid', error: { ...problem.toProblem(), status: problem.status } }
      : { status: 'valid', authorizationExpiresAt: new Date(ctx.now().getTime() + authorizationLifetimeMs) },
  );
  if (!finished) return;
  await ctx.audit({
    actor: actorOf(account),
    action: 'acme.challenge.validate',
    target: `acme-authorization:${authorization.id}`,
    decision: problem ? 'denied' : 'allowed',
    details: {
      directory: account.directory,
      identifier: `${identifier.type}:${identifier.value}${authorization.wildcard ? ' (wildcard)' : ''}`,
      challenge: challenge.type,
      ...(problem ? { error: problem.type, detail: problem.message.slice(0, 500) } : {}),
    },
  });
}
