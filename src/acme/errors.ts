/**
 * ACME errors (RFC 8555 §6.7): problem documents whose `type` is
 * `urn:ietf:params:acme:error:<name>`. ACME is its own protocol, so these are not Signet's
 * `https://signet.dev/problems/` codes; the HTTP edge renders them as they are.
 */

export const ACME_ERROR_PREFIX = 'urn:ietf:params:acme:error:';

/** RFC 8555 §6.7 Table 1, RFC 9773 and draft-ietf-acme-profiles, with the status each is answered with here. */
export const ACME_ERROR_STATUS = {
  accountDoesNotExist: 400,
  /** RFC 9773 §7.4: the certificate named by `replaces` was replaced already. */
  alreadyReplaced: 409,
  alreadyRevoked: 400,
  badCSR: 400,
  badNonce: 400,
  badPublicKey: 400,
  badRevocationReason: 400,
  badSignatureAlgorithm: 400,
  caa: 403,
  compound: 400,
  connection: 400,
  dns: 400,
  externalAccountRequired: 403,
  incorrectResponse: 403,
  invalidContact: 400,
  /** draft-ietf-acme-profiles: a newOrder `profile` the directory does not offer. */
  invalidProfile: 400,
  malformed: 400,
  orderNotReady: 403,
  rateLimited: 429,
  rejectedIdentifier: 400,
  serverInternal: 500,
  tls: 400,
  unauthorized: 403,
  unsupportedContact: 400,
  unsupportedIdentifier: 400,
  userActionRequired: 403,
} as const;

export type AcmeErrorType = keyof typeof ACME_ERROR_STATUS;

export interface AcmeIdentifier {
  type: 'dns' | 'ip';
  value: string;
}

export interface AcmeSubproblem {
  type: AcmeErrorType;
  detail: string;
  identifier?: AcmeIdentifier;
}

export interface AcmeProblemDocument {
  type: string;
  detail: string;
  status: number;
  subproblems?: { type: string; detail: string; identifier?: AcmeIdentifier }[];
  /** badSignatureAlgorithm: the algorithms accepted (RFC 8555 §6.2). */
  algorithms?: string[];
}

export interface AcmeErrorOptions {
  /** Another status than the type's usual one (404 for an unknown resource, 405, 415, 503). */
  status?: number;
  subproblems?: AcmeSubproblem[];
  /** Seconds, sent as Retry-After (rateLimited, unavailability). */
  retryAfter?: number;
  algorithms?: string[];
  /** Extra response headers (Allow for a 405). */
  headers?: Record<string, string>;
  cause?: unknown;
}

export class AcmeError extends Error {
  override readonly name = 'AcmeError';
  readonly status: number;
  readonly subproblems: AcmeSubproblem[] | undefined;
  readonly retryAfter: number | undefined;
  readonly algorithms: string[] | undefined;
  readonly headers: Record<string, string>;

  constructor(
    readonly type: AcmeErrorType,
    detail: string,
    options: AcmeErrorOptions = {},
  ) {
    super(detail, options.cause === undefined ? undefined : { cause: options.cause });
    this.status = options.status ?? ACME_ERROR_STATUS[type];
    this.subproblems = options.subproblems;
    this.retryAfter = options.retryAfter;
    this.algorithms = options.algorithms;
    this.headers = options.headers ?? {};
  }

  toProblem(): AcmeProblemDocument {
    return {
      type: `${ACME_ERROR_PREFIX}${this.type}`,
      detail: this.message,
      status: this.status,
      ...(this.subproblems?.length
        ? {
            subproblems: this.subproblems.map((s) => ({
              type: `${ACME_ERROR_PREFIX}${s.type}`,
              detail: s.detail,
              ...(s.identifier ? { identifier: s.identifier } : {}),
            })),
          }
        : {}),
      ...(this.algorithms ? { algorithms: this.algorithms } : {}),
    };
  }
}

export const acmeError = (type: AcmeErrorType, detail: string, options?: AcmeErrorOptions): AcmeError =>
  new AcmeError(type, detail, options);

export const isAcmeError = (error: unknown): error is AcmeError => error instanceof AcmeError;
