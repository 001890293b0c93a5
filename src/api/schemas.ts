import { z } from 'zod';
import { ISSUER_ID_PATTERN } from '../db/schema/issuers.table.ts';
import { parseDuration } from '../lib/duration.ts';
import { ROLES } from './env.ts';

/**
 * zod schemas of every request body and query (issue #8: every body is validated). Every string
 * is built with `text()`, so that a character no field can hold is refused here with a 400 naming
 * the field, never by the database with a 500 (issue #19).
 */

export const POLICY_NAME = /^[a-z0-9][a-z0-9._-]{0,63}$/;
export const ISSUER_ID = new RegExp(ISSUER_ID_PATTERN);

/**
 * Whether PostgreSQL text can hold `value` as sent: not U+0000 (text cannot hold it) and no
 * unpaired surrogate (UTF-8 cannot encode one, so the driver would store U+FFFD instead).
 */
const UNPAIRED_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

export const isStorableText = (value: string): boolean =>
  !value.includes('\u0000') && !UNPAIRED_SURROGATE.test(value);

export const UNSTORABLE_MESSAGE = 'must not contain NUL (U+0000) or unpaired surrogate characters';

/** A string a field can hold; every string of a request goes through this. */
export const text = () => z.string().refine(isStorableText, { message: UNSTORABLE_MESSAGE, abort: true });

export const durationSchema = text().superRefine((value, ctx) => {
  const parsed = parseDuration(value);
  if (!parsed.ok) ctx.addIssue({ code: 'custom', message: parsed.reason });
});

/** DESIGN.md "SANs in JSON". The CA validates each value; the edge bounds sizes. */
export const sanSchema = z.strictObject({
  type: z.enum(['dns', 'ip', 'email', 'uri']),
  value: text().min(1).max(1024),
});

export const issueBodySchema = z.strictObject({
  csr: text()
    .min(1)
    .max(64 * 1024),
  policy: text().regex(POLICY_NAME, { message: 'must be a policy name' }),
  validity: durationSchema.optional(),
  sans: z.array(sanSchema).max(100).optional(),
});

/** As issuance; the policy comes from the path and may be repeated in the body. */
export const evaluateBodySchema = issueBodySchema.extend({ policy: issueBodySchema.shape.policy.optional() });

export const rawIssueQuerySchema = z.strictObject({
  policy: text().regex(POLICY_NAME, { message: 'must be a policy name' }),
  validity: durationSchema.optional(),
});

/** `POST /v1/acme/eab-keys`: an external account binding key (RFC 8555 §7.3.4). */
export const createEabKeyBodySchema = z.strictObject({
  directory: text().regex(/^[a-z0-9][a-z0-9-]{0,62}$/, { message: 'must be an ACME directory name' }),
  policies: z
    .array(text().regex(POLICY_NAME, { message: 'must be a policy name' }))
    .min(1)
    .max(100),
  expiresIn: durationSchema.optional(),
});

export const createApiKeyBodySchema = z
  .strictObject({
    roles: z.array(z.enum(ROLES)).min(1).max(ROLES.length),
    policies: z
      .array(z.union([z.literal('*'), text().regex(POLICY_NAME, { message: 'must be a policy name or *' })]))
      .max(100)
      .optional(),
    expiresIn: durationSchema.optional(),
    description: text().max(200).optional(),
  })
  .superRefine((body, ctx) => {
    const issues = body.roles.includes('issuer') && !body.roles.includes('admin');
    if (issues && (body.policies ?? []).length === 0) {
      ctx.addIssue({
        code: 'custom',
        path: ['policies'],
        message: 'an issuer key must be bound to at least one policy (or *)',
      });
    }
  });

const limitSchema = z.coerce.number().int().min(1).max(500).default(100);
// The RFC 3339 pattern admits no NUL or surrogate of its own.
const timestampSchema = z.iso.datetime({ offset: true }).transform((value) => new Date(value));

export const listCertificatesQuerySchema = z.strictObject({
  status: z.enum(['valid', 'revoked', 'expired']).optional(),
  policy: text().regex(POLICY_NAME, { message: 'must be a policy name' }).optional(),
  issuer: text().regex(ISSUER_ID, { message: 'must be an issuer id' }).optional(),
  expiresBefore: timestampSchema.optional(),
  /** A SAN the certificate names: `NAME`, or `dns:`, `ip:`, `email:`, `uri:` then the name. */
  san: text().min(1).max(1024).optional(),
  cursor: text().min(1).max(512).optional(),
  limit: limitSchema,
});

export const listAuditQuerySchema = z.strictObject({
  actor: text().min(1).max(256).optional(),
  action: text().min(1).max(128).optional(),
  decision: z.enum(['allowed', 'denied', 'failed']).optional(),
  target: text().min(1).max(256).optional(),
  since: timestampSchema.optional(),
  until: timestampSchema.optional(),
  cursor: text().min(1).max(512).optional(),
  limit: limitSchema,
});

export const revokeBodySchema = z.strictObject({
  // Any string: the revoke use case answers revocation.reason_invalid with a sentence that says why
  // (certificateHold is not supported, case-sensitive names, the list of reasons).
  reason: text().min(1).max(64),
  invalidityDate: text().max(64).optional(),
});

/** POST /v1/certificates/{serial}/renew as JSON: a JWS (the CSR inside it), or a CSR beside mutual TLS. */
export const renewBodySchema = z.strictObject({
  jws: text()
    .min(1)
    .max(96 * 1024)
    .optional(),
  csr: text()
    .min(1)
    .max(64 * 1024)
    .optional(),
});

export const revokeByKeyBodySchema = z.strictObject({
  jws: text()
    .min(1)
    .max(16 * 1024),
});
