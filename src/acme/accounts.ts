import { randomBytes } from 'node:crypto';
import type { JWK } from 'jose';
import { EabKeyUnavailableError } from '../db/acme.repository.ts';
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
import { checkExternalAccountBinding } from './eab.ts';
import { acmeError } from './errors.ts';
import { checkPublicJwk, parseJws, readPayload, verifyJws } from './jws.ts';
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
    return json(200, accountDocument(existing, call.urls), { location: call.urls.account(existing.id) });
  }
  if (payload.onlyReturnExisting === true) {
    throw acmeError('accountDoesNotExist', 'no account exists for this key in this directory');
  }
  const contact = parseContacts(payload.contact);
  let eab: { kid: string; policies: string[] } | undefined;
  if (payload.externalAccountBinding !== undefined) {
    eab = await checkExternalAccountBinding(ctx, call, payload.externalAccountBinding, jwk);
  } else if (call.directory.eab === 'required') {
    throw acmeError(
      'externalAccountRequired',
      `directory ${call.directory.name} requires an external account binding (RFC 8555 §7.3.4); ask its administrator for an EAB key`,
    );
  }
  // Checked, then counted: the count refuses too when another node spent the budget (issue #29).
  const checked = await limits.newAccounts.check(call.request.client);
  const budget = checked.allowed
    ? ((await limits.newAccounts.fail(call.request.client)) ?? checked)
    : checked;
  if (!budget.allowed) {
    throw acmeError('rateLimited', 'too many new accounts from this address; retry later', {
      retryAfter: budget.retryAfterSeconds,
    });
  }
  let stored: Awaited<ReturnType<typeof repository.createAccount>>;
  try {
    stored = await repository.createAccount({
      id: randomBytes(16).toString('base64url'),
      directory: call.directory.name,
      keyThumbprint: thumbprint,
      keyJwk: jwk as Record<string, unknown>,
      contact,
      termsOfServiceAgreed: payload.termsOfServiceAgreed === true,
      ...(eab ? { eab: { keyId: eab.kid, policies: eab.policies } } : {}),
    });
  } catch (error) {
    if (error instanceof EabKeyUnavailableError) {
      throw acmeError('unauthorized', 'this external account key has already been used', { cause: error });
    }
    throw error;
  }
  const { account, created } = stored;
  if (created) {
    await ctx.audit({
      actor: actorOf(account),
      action: 'acme.account.create',
      target: `acme-account:${account.id}`,
      decision: 'allowed',
      details: {
        directory: call.directory.name,
        keyThumbprint: thumbprint,
        contacts: contact.length,
        ...(eab ? { eabKey: eab.kid, policies: eab.policies } : {}),
      },
    });
  }
  return json(created ? 201 : 200, accountDocument(account, call.urls), {
    location: call.urls.account(account.id),
  });
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
  return json(200, accountDocument(updated, call.urls), { location: call.urls.account(account.id) });
}

/**
 * keyChange (RFC 8555 §7.3.5): the outer JWS is signed by the account's current key, its payload
 * an inner JWS signed by the new key (`jwk`, the same `url`, no nonce) over
 * `{ account, oldKey }`. A new key another account of the directory holds is refused with 409
 * and that account's URL.
 */
export async function keyChange(ctx: AcmeContext, call: AcmeCall): Promise<AcmeResponse> {
  const auth = await authenticate(ctx, call, 'kid');
  const account = accountOf(auth);
  if (!auth.payload)
    throw acmeError('malformed', 'keyChange needs an inner JWS as its payload (RFC 8555 §7.3.5)');
  let inner: ReturnType<typeof parseJws>;
  try {
    inner = parseJws(JSON.stringify(auth.payload), { inner: true });
  } catch (error) {
    throw acmeError('malformed', `the inner JWS of keyChange: ${(error as Error).message}`, { cause: error });
  }
  if (!inner.header.jwk || inner.header.kid !== undefined) {
    throw acmeError(
      'malformed',
      'the inner JWS must carry the new key as "jwk" and no "kid" (RFC 8555 §7.3.5)',
    );
  }
  if (inner.header.url !== call.url) {
    throw acmeError('malformed', 'the inner JWS "url" must be the keyChange URL, as the outer one');
  }
  const newKey = checkPublicJwk(inner.header.jwk, inner.header.alg);
  const payload = readPayload(
    await verifyJws(inner, newKey).catch((error) => {
      throw acmeError('malformed', 'the inner JWS signature does not verify with its "jwk"', {
        cause: error,
      });
    }),
  );
  if (!payload || payload.account !== auth.header.kid) {
    throw acmeError(
      'malformed',
      'the inner JWS payload "account" must be the URL of the account signing the outer JWS',
    );
  }
  const oldKey = payload.oldKey;
  if (
    typeof oldKey !== 'object' ||
    oldKey === null ||
    (await thumbprintOf(oldKey as JWK).catch(() => '')) !== account.keyThumbprint
  ) {
    throw acmeError('malformed', 'the inner JWS payload "oldKey" must be the current account key');
  }
  const thumbprint = await thumbprintOf(newKey);
  const { repository } = ctx.options;
  const holder = await repository.findAccountByKey(account.directory, thumbprint);
  // RFC 8555 §7.3.5: 409 with the Location of the account that has the key.
  const conflict = (holderId: string) =>
    acmeError(
      'malformed',
      holderId === account.id
        ? 'the new key is the current key'
        : 'another account of this directory has the new key',
      { status: 409, headers: { location: call.urls.account(holderId) } },
    );
  if (holder) throw conflict(holder.id);
  const outcome = await repository.changeAccountKey(account.id, account.keyThumbprint, {
    thumbprint,
    jwk: newKey as Record<string, unknown>,
  });
  if (outcome === 'conflict') {
    throw conflict((await repository.findAccountByKey(account.directory, thumbprint))?.id ?? account.id);
  }
  if (outcome === 'stale')
    throw acmeError('malformed', 'the account key changed meanwhile; sign with the current key');
  await ctx.audit({
    actor: actorOf(account),
    action: 'acme.account.key_change',
    target: `acme-account:${account.id}`,
    decision: 'allowed',
    details: {
      directory: account.directory,
      oldKeyThumbprint: account.keyThumbprint,
      keyThumbprint: thumbprint,
    },
  });
  const updated = (await repository.findAccount(account.id)) ?? account;
  return json(200, accountDocument(updated, call.urls), { location: call.urls.account(account.id) });
}

/** Orders per page of the orders list (RFC 8555 §7.1.2.1). */
export const ORDERS_PAGE_SIZE = 100;

/**
 * The account's orders list (RFC 8555 §7.1.2.1), newest first; `Link: rel="next"` names the
 * next page, whose last path segment is the id of the last order of this one.
 */
export async function listOrders(
  ctx: AcmeContext,
  call: AcmeCall,
  id: string,
  cursor?: string,
): Promise<AcmeResponse> {
  const auth = await authenticate(ctx, call, 'kid');
  const account = accountOf(auth);
  if (account.id !== id) throw acmeError('unauthorized', 'an orders list is read by its own account');
  const { repository } = ctx.options;
  const pageSize = ctx.options.ordersPageSize ?? ORDERS_PAGE_SIZE;
  let after: { createdAt: Date; id: string } | undefined;
  if (cursor !== undefined) {
    const last = await repository.findOrder(cursor);
    if (!last || last.accountId !== account.id) {
      throw acmeError('malformed', 'there is no such page of the orders list', { status: 404 });
    }
    after = { createdAt: last.createdAt, id: last.id };
  }
  const rows = await repository.listOrders(account.id, pageSize + 1, after);
  const page = rows.slice(0, pageSize);
  const links =
    rows.length > pageSize ? [`<${call.urls.orders(account.id)}/${page.at(-1)!.id}>;rel="next"`] : [];
  return json(200, { orders: page.map((o) => call.urls.order(o.id)) }, { links });
}
