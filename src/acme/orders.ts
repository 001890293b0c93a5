import { createPublicKey, randomBytes } from 'node:crypto';
import type { JWK } from 'jose';
import type { AcmeAccountRecord, AcmeOrderRecord, NewAcmeAuthorization } from '../db/acme.repository.ts';
import { AppError, isAppError } from '../lib/errors.ts';
import { evaluateNames } from '../policy/evaluate.ts';
import type { Violation } from '../policy/types.ts';
import { parseCsr } from '../x509/csr.ts';
import type { ParsedCsr, San } from '../x509/types.ts';
import { alternatesOf } from './chains.ts';
import { type AcmeCall, type AcmeContext, accountOf, actorOf, authenticate, json } from './context.ts';
import { offeredPolicies } from './eab.ts';
import { type AcmeIdentifier, type AcmeSubproblem, acmeError } from './errors.ts';
import {
  type AuthorizationTarget,
  authorizationTarget,
  identifierKey,
  normaliseIdentifier,
  parseOrderIdentifiers,
} from './identifiers.ts';
import { authorizationDocument, authorizationStatus, orderDocument, orderStatus } from './objects.ts';
import { findByCertId, parseCertId } from './renewal-info.ts';
import type { AcmeDirectoryConfig, AcmeResponse } from './types.ts';
import type { ChallengeType } from './validation/validator.ts';

/**
 * Orders (RFC 8555 §7.4): newOrder screens its identifiers against the directory's policy and
 * opens (or reuses) an authorisation per identifier; finalize checks the CSR against the order
 * and issues through the issuing core's `issue`, under the directory's policy, as the account.
 */

const newId = () => randomBytes(16).toString('base64url');
const newToken = () => randomBytes(32).toString('base64url');

/** Which challenges an identifier can use here (RFC 8555 §7.1.3, RFC 8738 §7). */
export function challengesFor(target: AuthorizationTarget, directory: AcmeDirectoryConfig): ChallengeType[] {
  // Wildcards only through DNS (RFC 8555 §7.1.3); IP addresses never through DNS (RFC 8738 §7).
  const possible: ChallengeType[] = target.wildcard
    ? ['dns-01']
    : target.type === 'ip'
      ? ['http-01', 'tls-alpn-01']
      : ['http-01', 'dns-01', 'tls-alpn-01'];
  return directory.challenges.filter((type) => possible.includes(type));
}

/** Policy violations on names, as subproblems naming each identifier (RFC 8555 §6.7.1). */
function nameSubproblems(violations: Violation[], identifiers: AcmeIdentifier[]): AcmeSubproblem[] {
  return violations.map((violation) => {
    const index = /^(?:overrides\.)?sans\[(\d+)\]$/.exec(violation.field)?.[1];
    const identifier = index === undefined ? undefined : identifiers[Number(index)];
    return {
      type: 'rejectedIdentifier' as const,
      detail: `${violation.message} (${violation.code})`,
      ...(identifier ? { identifier } : {}),
    };
  });
}

const toSan = (identifier: AcmeIdentifier): San => ({ type: identifier.type, value: identifier.value });

export async function newOrder(ctx: AcmeContext, call: AcmeCall): Promise<AcmeResponse> {
  const auth = await authenticate(ctx, call, 'kid');
  const account = accountOf(auth);
  const payload = auth.payload;
  if (!payload) throw acmeError('malformed', 'newOrder needs a JSON object payload (RFC 8555 §7.4)');
  if (payload.notBefore !== undefined || payload.notAfter !== undefined) {
    throw acmeError(
      'malformed',
      'notBefore and notAfter are not supported: the directory policy sets the validity',
    );
  }
  const identifiers = parseOrderIdentifiers(payload.identifiers);
  const { directory } = call;
  const profile = chooseProfile(directory, account, payload.profile);
  const replaces =
    payload.replaces === undefined
      ? undefined
      : await checkReplaces(ctx, account, identifiers, payload.replaces);
  const targets = identifiers.map(authorizationTarget);

  const unsupported: AcmeSubproblem[] = [];
  for (const [i, target] of targets.entries()) {
    if (challengesFor(target, directory).length === 0) {
      unsupported.push({
        type: 'unsupportedIdentifier',
        detail: target.wildcard
          ? `a wildcard needs dns-01, which directory ${directory.name} does not offer`
          : `directory ${directory.name} offers no challenge for ${target.type} identifiers`,
        identifier: identifiers[i]!,
      });
    }
  }
  if (unsupported.length > 0) {
    throw acmeError('unsupportedIdentifier', 'this directory cannot validate some identifiers', {
      subproblems: unsupported,
    });
  }

  const policy = ctx.options.policies.get(profile);
  if (!policy)
    throw acmeError('serverInternal', `policy ${profile} of directory ${directory.name} is not loaded`);
  const { violations } = evaluateNames(policy, identifiers.map(toSan));
  if (violations.length > 0) {
    throw acmeError(
      'rejectedIdentifier',
      `policy ${policy.name} refuses ${violations.length === 1 ? 'an identifier' : 'identifiers'} of this order`,
      { subproblems: nameSubproblems(violations, identifiers) },
    );
  }

  const limiter = ctx.options.limits.newOrders;
  // Checked, then counted: the count refuses too when another node spent the budget (issue #29).
  const checked = await limiter.check(account.id);
  const budget = checked.allowed ? ((await limiter.fail(account.id)) ?? checked) : checked;
  if (!budget.allowed) {
    throw acmeError('rateLimited', 'too many new orders for this account; retry later', {
      retryAfter: budget.retryAfterSeconds,
    });
  }

  let order: AcmeOrderRecord;
  try {
    order = await createOrder(ctx, account, directory, identifiers, targets, { profile, replaces });
  } catch (error) {
    if (replaces && isUniqueViolation(error)) throw alreadyReplaced();
    throw error;
  }
  await ctx.audit({
    actor: actorOf(account),
    action: 'acme.order.create',
    target: `acme-order:${order.id}`,
    decision: 'allowed',
    details: {
      directory: directory.name,
      identifiers: identifiers.map(identifierKey),
      policy: profile,
      ...(replaces ? { replaces } : {}),
    },
  });
  return orderResponse(ctx, call, order, 201);
}

/**
 * The policy of a new order (draft-ietf-acme-profiles): the `profile` asked for, else the
 * directory's policy, else (for an account bound by EAB to other policies) its key's first one
 * that the directory offers.
 */
export function chooseProfile(
  directory: AcmeDirectoryConfig,
  account: AcmeAccountRecord,
  raw: unknown,
): string {
  const offered = offeredPolicies(directory);
  const allowed = account.policies ? offered.filter((p) => account.policies!.includes(p)) : offered;
  if (raw === undefined) {
    const chosen = allowed.includes(directory.policy) ? directory.policy : allowed[0];
    if (!chosen)
      throw acmeError('unauthorized', 'this account may use none of the profiles of this directory');
    return chosen;
  }
  if (typeof raw !== 'string') throw acmeError('malformed', '"profile" must be a string');
  if (!offered.includes(raw)) {
    throw acmeError(
      'invalidProfile',
      `directory ${directory.name} has no profile ${JSON.stringify(raw.slice(0, 64))}; it offers ${offered.join(', ')}`,
    );
  }
  if (!allowed.includes(raw)) {
    throw acmeError('unauthorized', `the external account key of this account does not allow profile ${raw}`);
  }
  return raw;
}

const alreadyReplaced = () =>
  acmeError('alreadyReplaced', 'another order already replaces this certificate (RFC 9773 §5)');

const isUniqueViolation = (error: unknown): boolean =>
  (error as { cause?: { code?: string } })?.cause?.code === '23505' ||
  (error as { code?: string })?.code === '23505';

/**
 * RFC 9773 §5: `replaces` names a certificate of this CA, ordered by this account, sharing an
 * identifier with the new order, and not replaced by another live order. Answers the certID.
 */
async function checkReplaces(
  ctx: AcmeContext,
  account: AcmeAccountRecord,
  identifiers: AcmeIdentifier[],
  raw: unknown,
): Promise<string> {
  const id = parseCertId(raw);
  const { repository } = ctx.options;
  const found = await findByCertId(ctx, id);
  const previous = found ? await repository.findOrderByCertificate(id.serial) : null;
  if (!found || !previous) {
    throw acmeError('malformed', '"replaces" names no certificate this CA issued through ACME', {
      status: 404,
    });
  }
  if (previous.accountId !== account.id) {
    throw acmeError('unauthorized', 'the certificate to replace was ordered by another account');
  }
  const wanted = new Set(identifiers.map(identifierKey));
  if (!previous.identifiers.some((i) => wanted.has(identifierKey(i)))) {
    throw acmeError(
      'malformed',
      'the new order shares no identifier with the certificate it replaces (RFC 9773 §5)',
    );
  }
  const replacing = await repository.findReplacingOrder(id.text);
  if (replacing) {
    if (replacing.status === 'pending' && replacing.expiresAt <= ctx.now()) await repository.expire();
    else throw alreadyReplaced();
  }
  return id.text;
}

async function createOrder(
  ctx: AcmeContext,
  account: AcmeAccountRecord,
  directory: AcmeDirectoryConfig,
  identifiers: AcmeIdentifier[],
  targets: AuthorizationTarget[],
  extra: { profile: string; replaces: string | undefined },
): Promise<AcmeOrderRecord> {
  const { repository, orderLifetimeMs } = ctx.options;
  const now = ctx.now();
  const expiresAt = new Date(now.getTime() + orderLifetimeMs);
  // RFC 8555 §7.4: a valid authorisation of this account for the identifier serves again.
  const reusable = await repository.findValidAuthorizations(account.id, targets);
  const fresh: NewAcmeAuthorization[] = [];
  const authorizationIds = targets.map((target) => {
    const reused = reusable.find(
      (a) =>
        a.identifierType === target.type &&
        a.identifierValue === target.value &&
        a.wildcard === target.wildcard,
    );
    if (reused) return reused.id;
    const authorization: NewAcmeAuthorization = {
      id: newId(),
      identifierType: target.type,
      identifierValue: target.value,
      wildcard: target.wildcard,
      expiresAt,
      challenges: challengesFor(target, directory).map((type) => ({ id: newId(), type, token: newToken() })),
    };
    fresh.push(authorization);
    return authorization.id;
  });
  return repository.createOrder({
    id: newId(),
    accountId: account.id,
    identifiers,
    expiresAt,
    authorizationIds,
    newAuthorizations: fresh,
    profile: extra.profile,
    ...(extra.replaces ? { replaces: extra.replaces } : {}),
  });
}

async function orderResponse(
  ctx: AcmeContext,
  call: AcmeCall,
  order: AcmeOrderRecord,
  status = 200,
): Promise<AcmeResponse> {
  const now = ctx.now();
  const authorizations = await ctx.options.repository.findAuthorizations(order.authorizationIds);
  const state = orderStatus(order, authorizations, now);
  const answer = json(status, orderDocument(order, state, call.urls, now), {
    location: call.urls.order(order.id),
  });
  // RFC 8555 §7.4: a client polls a processing order, no sooner than Retry-After.
  if (state === 'processing') answer.headers['retry-after'] = '1';
  return answer;
}

async function ownOrder(ctx: AcmeContext, account: AcmeAccountRecord, id: string): Promise<AcmeOrderRecord> {
  const order = await ctx.options.repository.findOrder(id);
  if (!order) throw acmeError('malformed', `there is no order ${id}`, { status: 404 });
  if (order.accountId !== account.id)
    throw acmeError('unauthorized', 'this order belongs to another account');
  return order;
}

export async function getOrder(ctx: AcmeContext, call: AcmeCall, id: string): Promise<AcmeResponse> {
  const account = accountOf(await authenticate(ctx, call, 'kid'));
  return orderResponse(ctx, call, await ownOrder(ctx, account, id));
}

export async function getAuthorization(ctx: AcmeContext, call: AcmeCall, id: string): Promise<AcmeResponse> {
  const auth = await authenticate(ctx, call, 'kid');
  const account = accountOf(auth);
  const payload = auth.payload ?? {};
  const keys = Object.keys(payload);
  if (keys.length > 0 && (keys.length !== 1 || payload.status !== 'deactivated')) {
    throw acmeError(
      'malformed',
      'an authorization is read with POST-as-GET, or deactivated with {"status": "deactivated"} (RFC 8555 §7.5.2)',
    );
  }
  const { repository } = ctx.options;
  const [authorization] = await repository.findAuthorizations([id]);
  if (!authorization) throw acmeError('malformed', `there is no authorization ${id}`, { status: 404 });
  if (authorization.accountId !== account.id)
    throw acmeError('unauthorized', 'this authorization belongs to another account');
  if (keys.length === 0) return json(200, authorizationDocument(authorization, ctx.now(), call.urls));
  // RFC 8555 §7.5.2: a pending or valid authorisation may be deactivated; its orders then fail.
  const status = authorizationStatus(authorization, ctx.now());
  if ((status !== 'pending' && status !== 'valid') || !(await repository.deactivateAuthorization(id))) {
    throw acmeError(
      'malformed',
      `the authorization is ${status}; only a pending or valid one can be deactivated`,
    );
  }
  await ctx.audit({
    actor: actorOf(account),
    action: 'acme.authorization.deactivate',
    target: `acme-authorization:${id}`,
    decision: 'allowed',
    details: {
      directory: account.directory,
      identifier: `${authorization.identifierType}:${authorization.identifierValue}`,
    },
  });
  const [updated] = await repository.findAuthorizations([id]);
  return json(200, authorizationDocument(updated!, ctx.now(), call.urls));
}

/** The names a CSR asks for: its SANs, and its CN (RFC 8555 §7.4 lets a dns name be in either). */
function csrNames(csr: ParsedCsr): { sans: Map<string, AcmeIdentifier>; all: Map<string, AcmeIdentifier> } {
  const sans = new Map<string, AcmeIdentifier>();
  for (const san of csr.sans) {
    if (san.type !== 'dns' && san.type !== 'ip') {
      throw acmeError(
        'badCSR',
        `the CSR asks for a ${san.type} name; ACME orders name dns and ip identifiers only`,
      );
    }
    const normalised = normaliseIdentifier(san as AcmeIdentifier);
    if (!normalised.ok) throw acmeError('badCSR', `the CSR names ${san.value}: ${normalised.reason}`);
    const identifier = { type: san.type, value: normalised.value };
    sans.set(identifierKey(identifier), identifier);
  }
  const all = new Map(sans);
  for (const attribute of csr.subject.filter((a) => a.type === 'CN')) {
    const type = normaliseIdentifier({ type: 'ip', value: attribute.value }).ok ? 'ip' : 'dns';
    const normalised = normaliseIdentifier({ type, value: attribute.value });
    if (!normalised.ok)
      throw acmeError('badCSR', `the CSR common name is not a name of the order: ${normalised.reason}`);
    const identifier = { type, value: normalised.value } as AcmeIdentifier;
    all.set(identifierKey(identifier), identifier);
  }
  return { sans, all };
}

function checkCsrAgainstOrder(
  csr: ParsedCsr,
  order: AcmeOrderRecord,
  accountKey: JWK,
): { overrideSans: boolean } {
  const { sans, all } = csrNames(csr);
  const ordered = new Set(order.identifiers.map(identifierKey));
  const extra = [...all.keys()].filter((key) => !ordered.has(key));
  const missing = [...ordered].filter((key) => !all.has(key));
  if (extra.length > 0 || missing.length > 0) {
    throw acmeError(
      'badCSR',
      `the CSR must name exactly the identifiers of the order (RFC 8555 §7.4)${extra.length ? `; not in the order: ${extra.join(', ')}` : ''}${missing.length ? `; missing: ${missing.join(', ')}` : ''}`,
    );
  }
  // RFC 8555 §11.1: the certificate key must not be the account key.
  const csrKey = createPublicKey({ key: Buffer.from(csr.publicKey), format: 'der', type: 'spki' });
  const account = createPublicKey({ key: accountKey as never, format: 'jwk' });
  if (csrKey.equals(account))
    throw acmeError('badCSR', 'the CSR key is the account key; use another key for the certificate');
  return { overrideSans: sans.size !== ordered.size };
}

export async function finalize(ctx: AcmeContext, call: AcmeCall, id: string): Promise<AcmeResponse> {
  const auth = await authenticate(ctx, call, 'kid');
  const account = accountOf(auth);
  const order = await ownOrder(ctx, account, id);
  const { repository, ca } = ctx.options;
  const authorizations = await repository.findAuthorizations(order.authorizationIds);
  const state = orderStatus(order, authorizations, ctx.now());
  if (state !== 'ready') {
    throw acmeError(
      'orderNotReady',
      `the order is ${state}; it can be finalized once it is ready (RFC 8555 §7.4)`,
    );
  }
  const csrText = auth.payload?.csr;
  if (typeof csrText !== 'string' || !/^[A-Za-z0-9_-]+$/.test(csrText)) {
    throw acmeError('malformed', 'finalize needs "csr": the DER CSR in base64url');
  }
  let csr: ParsedCsr;
  try {
    csr = parseCsr(new Uint8Array(Buffer.from(csrText, 'base64url')));
  } catch (error) {
    throw acmeError('badCSR', isAppError(error) ? error.message : 'the CSR could not be read', {
      cause: error,
    });
  }
  const { overrideSans } = checkCsrAgainstOrder(csr, order, account.keyJwk as JWK);
  if (!(await repository.beginFinalize(order.id))) {
    throw acmeError('orderNotReady', 'the order is being finalized or was finalized already');
  }
  const directory = call.directory;
  const policy = order.profile ?? directory.policy;
  try {
    const issued = await ca.issue({
      csr: csr.der,
      policy,
      // Names only in the CN (RFC 8555 §7.4 allows it) reach the certificate as SANs.
      ...(overrideSans ? { overrides: { sans: order.identifiers.map(toSan) } } : {}),
      requester: { id: actorOf(account), kind: 'acme', policies: [policy] },
    });
    await repository.finishOrder(order.id, {
      status: 'valid',
      certificateSerial: issued.serialNumber,
      certificateChain: `${issued.certificatePem}${issued.chainPem.join('')}`,
    });
    await ctx.audit({
      actor: actorOf(account),
      action: 'acme.order.finalize',
      target: `acme-order:${order.id}`,
      decision: 'allowed',
      details: { directory: directory.name, serial: issued.serialNumber, policy },
    });
  } catch (error) {
    const problem = issuanceProblem(error, order);
    const retry = problem.status === 503;
    await repository.finishOrder(
      order.id,
      retry ? { status: 'pending' } : { status: 'invalid', error: problem.toProblem() },
    );
    await ctx.audit({
      actor: actorOf(account),
      action: 'acme.order.finalize',
      target: `acme-order:${order.id}`,
      decision: retry ? 'failed' : 'denied',
      details: { directory: directory.name, error: problem.type, detail: problem.message.slice(0, 500) },
    });
    throw problem;
  }
  return orderResponse(ctx, call, (await repository.findOrder(order.id))!);
}

/** What the issuing core's refusal means to an ACME client. */
function issuanceProblem(error: unknown, order: AcmeOrderRecord) {
  if (!(error instanceof AppError)) {
    return acmeError('serverInternal', 'the certificate could not be issued', { cause: error });
  }
  if (error.category === 'unavailable') {
    return acmeError('serverInternal', 'the CA cannot sign right now; finalize again later', {
      status: 503,
      retryAfter: 5,
      cause: error,
    });
  }
  if (error.code.startsWith('csr.')) return acmeError('badCSR', error.message, { cause: error });
  if (error.code === 'policy.refused') {
    const violations = ((error.details?.violations ?? []) as Violation[]).filter(
      (v) => v && typeof v.field === 'string',
    );
    const onNames = violations.filter((v) => /^(?:overrides\.)?sans/.test(v.field));
    if (onNames.length > 0 && onNames.length === violations.length) {
      return acmeError('rejectedIdentifier', error.message, {
        subproblems: nameSubproblems(onNames, order.identifiers),
        cause: error,
      });
    }
    return acmeError('badCSR', error.message, { cause: error });
  }
  if (error.code === 'ca.lint_failed') return acmeError('badCSR', error.message, { cause: error });
  if (error.code === 'policy.requester_not_bound')
    return acmeError('unauthorized', error.message, { cause: error });
  return acmeError('serverInternal', 'the certificate could not be issued', { cause: error });
}

/**
 * The certificate chain (RFC 8555 §7.4.2), for the account that ordered it: the default one, or
 * the alternate `index` (1, 2, ...), each answer naming the others with `Link: rel="alternate"`.
 */
export async function getCertificate(
  ctx: AcmeContext,
  call: AcmeCall,
  serial: string,
  index?: string,
): Promise<AcmeResponse> {
  const account = accountOf(await authenticate(ctx, call, 'kid'));
  const order = /^[0-9a-f]{1,42}$/.test(serial)
    ? await ctx.options.repository.findOrderByCertificate(serial)
    : null;
  if (!order?.certificateChain)
    throw acmeError('malformed', `there is no certificate ${serial.slice(0, 64)} here`, { status: 404 });
  if (order.accountId !== account.id)
    throw acmeError('unauthorized', 'this certificate was ordered by another account');
  const chains = [
    order.certificateChain,
    ...alternatesOf(order.certificateChain, ctx.options.alternateChains ?? []),
  ];
  const chosen = index === undefined ? 0 : /^[1-9]\d{0,2}$/.test(index) ? Number(index) : -1;
  if (chosen < 0 || chosen >= chains.length) {
    throw acmeError('malformed', `certificate ${serial} has no alternate chain ${index}`, { status: 404 });
  }
  const url = call.urls.certificate(serial);
  return {
    status: 200,
    headers: { 'content-type': 'application/pem-certificate-chain' },
    links: chains.flatMap((_, i) =>
      i === chosen ? [] : [`<${i === 0 ? url : `${url}/${i}`}>;rel="alternate"`],
    ),
    body: chains[chosen],
  };
}
