/**
 * ACME resources as clients see them (RFC 8555 §7.1): their URLs, built from server.publicUrl,
 * their JSON, and the statuses that follow from time and from the authorisations (an order is
 * `ready` once every authorisation is valid, `invalid` once one is not or it has expired).
 */
import type {
  AcmeAccountRecord,
  AcmeAuthorizationRecord,
  AcmeAuthorizationWithChallenges,
  AcmeChallengeRecord,
  AcmeOrderRecord,
} from '../db/acme.repository.ts';

export type OrderStatus = 'pending' | 'ready' | 'processing' | 'valid' | 'invalid';
export type AuthorizationStatus = AcmeAuthorizationRecord['status'];

export interface AcmeUrls {
  directory: string;
  newNonce: string;
  newAccount: string;
  newOrder: string;
  revokeCert: string;
  keyChange: string;
  renewalInfo: string;
  account(id: string): string;
  /** RFC 8555 §7.1.2.1: the account's orders list. */
  orders(accountId: string): string;
  order(id: string): string;
  finalize(orderId: string): string;
  authorization(id: string): string;
  challenge(id: string): string;
  certificate(serial: string): string;
  /** The account id a `kid` names in this directory, or undefined. */
  accountIdOf(kid: string): string | undefined;
}

export function acmeUrls(publicUrl: string, directory: string): AcmeUrls {
  const base = `${publicUrl.replace(/\/+$/, '')}/acme/${directory}`;
  const accountPrefix = `${base}/account/`;
  return {
    directory: `${base}/directory`,
    newNonce: `${base}/new-nonce`,
    newAccount: `${base}/new-account`,
    newOrder: `${base}/new-order`,
    revokeCert: `${base}/revoke-cert`,
    keyChange: `${base}/key-change`,
    renewalInfo: `${base}/renewal-info`,
    account: (id) => `${accountPrefix}${id}`,
    orders: (id) => `${accountPrefix}${id}/orders`,
    order: (id) => `${base}/order/${id}`,
    finalize: (id) => `${base}/order/${id}/finalize`,
    authorization: (id) => `${base}/authz/${id}`,
    challenge: (id) => `${base}/chall/${id}`,
    certificate: (serial) => `${base}/cert/${serial}`,
    accountIdOf(kid) {
      if (!kid.startsWith(accountPrefix)) return undefined;
      const id = kid.slice(accountPrefix.length);
      return /^[A-Za-z0-9_-]{1,64}$/.test(id) ? id : undefined;
    },
  };
}

/**
 * RFC 8555 §7.1.1, with renewalInfo (RFC 9773 §3) and meta: externalAccountRequired (§7.3.4)
 * and the profiles with their descriptions (draft-ietf-acme-profiles §3).
 */
export function directoryDocument(
  urls: AcmeUrls,
  meta: { externalAccountRequired: boolean; profiles: Record<string, string> },
): Record<string, unknown> {
  return {
    newNonce: urls.newNonce,
    newAccount: urls.newAccount,
    newOrder: urls.newOrder,
    revokeCert: urls.revokeCert,
    keyChange: urls.keyChange,
    renewalInfo: urls.renewalInfo,
    meta,
  };
}

export function accountDocument(account: AcmeAccountRecord, urls: AcmeUrls): Record<string, unknown> {
  return {
    status: account.status,
    contact: account.contact,
    termsOfServiceAgreed: account.termsOfServiceAgreed,
    orders: urls.orders(account.id),
    createdAt: account.createdAt.toISOString(),
  };
}

export function authorizationStatus(authorization: AcmeAuthorizationRecord, now: Date): AuthorizationStatus {
  if (
    (authorization.status === 'pending' || authorization.status === 'valid') &&
    authorization.expiresAt <= now
  ) {
    return 'expired';
  }
  return authorization.status;
}

export function orderStatus(
  order: AcmeOrderRecord,
  authorizations: AcmeAuthorizationRecord[],
  now: Date,
): OrderStatus {
  if (order.status !== 'pending') return order.status;
  if (order.expiresAt <= now) return 'invalid';
  const statuses = authorizations.map((a) => authorizationStatus(a, now));
  if (statuses.length !== order.authorizationIds.length) return 'invalid';
  if (statuses.some((s) => s !== 'pending' && s !== 'valid')) return 'invalid';
  return statuses.every((s) => s === 'valid') ? 'ready' : 'pending';
}

export function orderDocument(
  order: AcmeOrderRecord,
  status: OrderStatus,
  urls: AcmeUrls,
  now: Date,
): Record<string, unknown> {
  const error =
    order.error ??
    (status === 'invalid'
      ? {
          type: 'urn:ietf:params:acme:error:unauthorized',
          detail:
            order.expiresAt <= now
              ? 'the order expired before it was finalized'
              : 'an authorization of this order is not valid',
        }
      : undefined);
  return {
    status,
    expires: order.expiresAt.toISOString(),
    identifiers: order.identifiers,
    authorizations: order.authorizationIds.map(urls.authorization),
    finalize: urls.finalize(order.id),
    ...(order.profile ? { profile: order.profile } : {}),
    ...(order.replaces ? { replaces: order.replaces } : {}),
    ...(order.certificateSerial && status === 'valid'
      ? { certificate: urls.certificate(order.certificateSerial) }
      : {}),
    ...(error ? { error } : {}),
  };
}

export function challengeDocument(challenge: AcmeChallengeRecord, urls: AcmeUrls): Record<string, unknown> {
  return {
    type: challenge.type,
    url: urls.challenge(challenge.id),
    status: challenge.status,
    token: challenge.token,
    ...(challenge.validatedAt ? { validated: challenge.validatedAt.toISOString() } : {}),
    ...(challenge.error ? { error: challenge.error } : {}),
  };
}

export function authorizationDocument(
  authorization: AcmeAuthorizationWithChallenges,
  now: Date,
  urls: AcmeUrls,
): Record<string, unknown> {
  const status = authorizationStatus(authorization, now);
  // RFC 8555 §7.1.4: a valid authorisation lists only the challenge that validated it.
  const challenges =
    status === 'valid'
      ? authorization.challenges.filter((c) => c.status === 'valid')
      : authorization.challenges;
  return {
    identifier: { type: authorization.identifierType, value: authorization.identifierValue },
    status,
    expires: authorization.expiresAt.toISOString(),
    challenges: challenges.map((c) => challengeDocument(c, urls)),
    ...(authorization.wildcard ? { wildcard: true } : {}),
  };
}
