import { calculateJwkThumbprint, type JWK } from 'jose';
import type { AcmeAccountRecord } from '../db/acme.repository.ts';
import type { AuditEventInput } from '../db/audit.repository.ts';
import { acmeError } from './errors.ts';
import { type AcmeProtectedHeader, checkPublicJwk, parseJws, readPayload, verifyJws } from './jws.ts';
import type { NonceService } from './nonces.ts';
import type { AcmeUrls } from './objects.ts';
import type {
  AcmeDirectoryConfig,
  AcmeRequest,
  AcmeResponse,
  AcmeServerOptions,
  EventLimiter,
} from './types.ts';
import type { ValidationQueue } from './validation/queue.ts';

/** What every handler of the ACME server shares. */
export interface AcmeContext {
  options: AcmeServerOptions;
  now(): Date;
  nonces: NonceService;
  /** Appends to the audit log (batched with other requests' events). */
  audit(event: AuditEventInput): Promise<void>;
  queue: ValidationQueue;
}

/** One request on its way through a handler. */
export interface AcmeCall {
  directory: AcmeDirectoryConfig;
  urls: AcmeUrls;
  request: AcmeRequest;
  /** The URL the client used, from server.publicUrl: what the JWS `url` must equal. */
  url: string;
}

export interface Authenticated {
  header: AcmeProtectedHeader;
  /** undefined for POST-as-GET (an empty payload, RFC 8555 §6.3). */
  payload: Record<string, unknown> | undefined;
  /** The account named by `kid`. */
  account?: AcmeAccountRecord;
  /** The key carried as `jwk` (newAccount, revokeCert by certificate key), public parts only. */
  jwk?: JWK;
}

/** `jwk`: newAccount. `kid`: every account request. `either`: revokeCert (RFC 8555 §7.6). */
export type KeyMode = 'jwk' | 'kid' | 'either';

export const actorOf = (account: AcmeAccountRecord): string => `acme:${account.directory}:${account.id}`;

export const thumbprintOf = (jwk: JWK): Promise<string> => calculateJwkThumbprint(jwk, 'sha256');

/**
 * RFC 8555 §6.2-6.5, in an order that spends nothing for a forger: media type, the address's
 * budget of failed authentication, the JWS and its header, `url`, the key (by `jwk` or the
 * account of `kid`), the signature; only then the nonce is spent, and a deactivated account
 * refused. Failed signatures and unknown accounts count against the client's address.
 */
export async function authenticate(ctx: AcmeContext, call: AcmeCall, mode: KeyMode): Promise<Authenticated> {
  const { request, urls } = call;
  const type = (request.contentType ?? '').split(';')[0]!.trim().toLowerCase();
  if (type !== 'application/jose+json') {
    throw acmeError('malformed', 'ACME requests are application/jose+json (RFC 8555 §6.2)', {
      status: 415,
      headers: { 'accept-post': 'application/jose+json' },
    });
  }
  const failedAuth = ctx.options.limits.failedAuth;
  const budget = await failedAuth.check(request.client);
  if (!budget.allowed) {
    throw acmeError('rateLimited', 'too many failed requests from this address; retry later', {
      retryAfter: budget.retryAfterSeconds,
    });
  }
  const parsed = parseJws(request.body);
  const { header } = parsed;
  // RFC 8555 §6.4.1: the signed URL must be the one requested, or the request is unauthorized.
  if (header.url !== call.url) {
    throw acmeError(
      'unauthorized',
      `the JWS "url" ${JSON.stringify(header.url.slice(0, 256))} is not the URL requested, ${call.url}`,
    );
  }
  if (mode === 'jwk' && !header.jwk) {
    throw acmeError(
      'malformed',
      'this request is signed with a new key: carry it as "jwk", not "kid" (RFC 8555 §6.2)',
    );
  }
  if (mode === 'kid' && !header.kid) {
    throw acmeError(
      'malformed',
      'this request is signed with an account key: name the account as "kid", not "jwk" (RFC 8555 §6.2)',
    );
  }

  let account: AcmeAccountRecord | undefined;
  let key: JWK;
  if (header.kid !== undefined) {
    const id = urls.accountIdOf(header.kid);
    const found = id ? await ctx.options.repository.findAccount(id) : null;
    if (!found || found.directory !== call.directory.name) {
      await countFailure(failedAuth, request.client);
      throw acmeError(
        'accountDoesNotExist',
        `there is no account ${header.kid.slice(0, 256)} in this directory`,
      );
    }
    account = found;
    key = checkPublicJwk(found.keyJwk as JWK, header.alg);
  } else {
    key = checkPublicJwk(header.jwk!, header.alg);
  }
  let payloadBytes: Uint8Array;
  try {
    payloadBytes = await verifyJws(parsed, key);
  } catch (error) {
    await countFailure(failedAuth, request.client);
    throw error;
  }
  if (!(await ctx.nonces.consume(header.nonce))) {
    throw acmeError(
      'badNonce',
      'the nonce is unknown, already used or expired; use the one in this response',
    );
  }
  if (account && account.status !== 'valid') {
    // RFC 8555 §7.3.6: a deactivated account's key authorises nothing more.
    throw acmeError('unauthorized', `account ${account.id} is ${account.status}`);
  }
  return {
    header,
    payload: readPayload(payloadBytes),
    ...(account ? { account } : {}),
    ...(header.jwk ? { jwk: key } : {}),
  };
}

/** The account of an authenticated kid request (authenticate with mode `kid` guarantees it). */
/**
 * Counts a failed authentication; when the address's budget was already spent (on another node,
 * issue #29), refuses with rateLimited instead of the failure's own error.
 */
export async function countFailure(failedAuth: EventLimiter, client: string): Promise<void> {
  const counted = await failedAuth.fail(client);
  if (counted && !counted.allowed) {
    throw acmeError('rateLimited', 'too many failed requests from this address; retry later', {
      retryAfter: counted.retryAfterSeconds,
    });
  }
}

export function accountOf(auth: Authenticated): AcmeAccountRecord {
  if (!auth.account) throw new Error('an account request without an account');
  return auth.account;
}

export function json(
  status: number,
  body: unknown,
  extra: { location?: string; links?: string[] } = {},
): AcmeResponse {
  return {
    status,
    headers: {
      'content-type': 'application/json',
      ...(extra.location ? { location: extra.location } : {}),
    },
    links: extra.links ?? [],
    body,
  };
}
