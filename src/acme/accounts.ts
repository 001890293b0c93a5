import { randomBytes } from 'node:crypto';
import { checkEmail } from '../policy/email.ts';
import {
  type AcmeCall,
  type AcmeContext,
  accountOf,
  actorOf,
  authenticate,
  json,
  thumbprintOf,
} from './context.ts';
import { acmeError } from './errors.ts';
import { accountDocument } from './objects.ts';
import type { AcmeResponse } from './types.ts';

/** Accounts (RFC 8555 §7.3): newAccount, and update and deactivation at the account URL. */

const MAX_CONTACTS = 10;

/** RFC 8555 §7.3: `mailto:` contacts, one address each, no hfields (Boulder's rule too). */
export function parseContacts(raw: unknown): string[] {
  if (raw === undefined) return [];
  if (!Array.isArray(raw) || raw.some((c) => typeof c !== 'string')) {
    throw acmeError('malformed', '"contact" must be an array of URLs');
  }
  if (raw.length > MAX_CONTACTS) throw acmeError('invalidContact', `at most ${MAX_CONTACTS} contacts`);
  return (raw as string[]).map((contact) => {
    if (!/^mailto:/i.test(contact)) {
      throw acmeError(
        'unsupportedContact',
        `contact ${JSON.stringify(contact.slice(0, 64))} is not a mailto: URL`,
      );
    }
    const address = contact.slice('mailto:'.length);
    if (address.includes('?') || address.includes(',') || !checkEmail(address).ok) {
      throw acmeError(
        'invalidContact',
        `contact ${JSON.stringify(contact.slice(0, 256))} is not one valid email address`,
      );
    }
    return `mailto:${address}`;
  });
}

export async function newAccount(ctx: AcmeContext, call: AcmeCall): Promise<AcmeResponse> {
  const auth = await authenticate(ctx, call, 'jwk');
  const { repository, limits } = ctx.options;
  const payload = auth.payload;
  if (!payload) throw acmeError('malformed', 'newAccount needs a JSON object payload (RFC 8555 §7.3)');
  const jwk = auth.jwk!;
  const thumbprint = await thumbprintOf(jwk);
  const existing = await repository.findAccountByKey(call.directory.name, thumbprint);
  if (existing) {
    // RFC 8555 §7.3.1: the key already has an account; answer it rather than make another.
    if (existing.status !== 'valid')
      throw acmeError('unauthorized', `the account of this key is ${existing.status}`);
    return json(200, accountDocument(existing), { location: call.urls.account(existing.id) });
  }
  if (payload.onlyReturnExisting === true) {
    throw acmeError('accountDoesNotExist', 'no account exists for this key in this directory');
  }
  const contact = parseContacts(payload.contact);
  // TODO(#31): externalAccountBinding (RFC 8555 §7.3.4) when the directory requires it.
  const budget = await limits.newAccounts.check(call.request.client);
  if (!budget.allowed) {
    throw acmeError('rateLimited', 'too many new accounts from this address; retry later', {
      retryAfter: budget.retryAfterSeconds,
    });
  }
  await limits.newAccounts.fail(call.request.client);
  const { account, created } = await repository.createAccount({
    id: randomBytes(16).toString('base64url'),
    directory: call.directory.name,
    keyThumbprint: thumbprint,
    keyJwk: jwk as Record<string, unknown>,
    contact,
    termsOfServiceAgreed: payload.termsOfServiceAgreed === true,
  });
  if (created) {
    await ctx.audit({
      actor: actorOf(account),
      action: 'acme.account.create',
      target: `acme-account:${account.id}`,
      decision: 'allowed',
      details: { directory: call.directory.name, keyThumbprint: thumbprint, contacts: contact.length },
    });
  }
  return json(created ? 201 : 200, accountDocument(account), { location: call.urls.account(account.id) });
}

/** POST to the account URL: read (POST-as-GET or `{}`), update `contact`, or deactivate. */
export async function updateAccount(ctx: AcmeContext, call: AcmeCall, id: string): Promise<AcmeResponse> {
  const auth = await authenticate(ctx, call, 'kid');
  const account = accountOf(auth);
  if (account.id !== id)
    throw acmeError('unauthorized', 'a request for an account must be signed by that account');
  const payload = auth.payload ?? {};
  const { repository } = ctx.options;
  let updated = account;
  if (payload.status !== undefined) {
    if (payload.status !== 'deactivated') {
      throw acmeError('malformed', 'the only status a client may set is "deactivated" (RFC 8555 §7.3.6)');
    }
    updated = (await repository.updateAccount(account.id, { status: 'deactivated' })) ?? account;
    await ctx.audit({
      actor: actorOf(account),
      action: 'acme.account.deactivate',
      target: `acme-account:${account.id}`,
      decision: 'allowed',
      details: { directory: account.directory },
    });
  } else if (payload.contact !== undefined) {
    const contact = parseContacts(payload.contact);
    updated = (await repository.updateAccount(account.id, { contact })) ?? account;
    await ctx.audit({
      actor: actorOf(account),
      action: 'acme.account.update',
      target: `acme-account:${account.id}`,
      decision: 'allowed',
      details: { directory: account.directory, contacts: contact.length },
    });
  }
  return json(200, accountDocument(updated), { location: call.urls.account(account.id) });
}
