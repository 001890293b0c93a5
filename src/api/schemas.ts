import { z } from 'zod';
import { parseDuration } from '../lib/duration.ts';
import { ROLES } from './env.ts';

/** zod schemas of every request body and query (issue #8: every body is validated). */

export const POLICY_NAME = /^[a-z0-9][a-z0-9._-]{0,63}$/;

export const durationSchema = z.string().superRefine((text, ctx) => {
  const parsed = parseDuration(text);
  if (!parsed.ok) ctx.addIssue({ code: 'custom', message: parsed.reason });
});

/** DESIGN.md "SANs in JSON". The CA validates each value; the edge bounds sizes. */
export const sanSchema = z.strictObject({
  type: z.enum(['dns', 'ip', 'email', 'uri']),
  value: z.string().min(1).max(1024),
});

export const issueBodySchema = z.strictObject({
  csr: z
    .string()
    .min(1)
    .max(64 * 1024),
  policy: z.string().regex(POLICY_NAME, { message: 'must be a policy name' }),
  validity: durationSchema.optional(),
  sans: z.array(sanSchema).max(100).optional(),
});

/** As issuance; the policy comes from the path and may be repeated in the body. */
export const evaluateBodySchema = issueBodySchema.extend({ policy: issueBodySchema.shape.policy.optional() });

export const rawIssueQuerySchema = z.strictObject({
  policy: z.string().regex(POLICY_NAME, { message: 'must be a policy name' }),
  validity: durationSchema.optional(),
});

export const createApiKeyBodySchema = z
  .strictObject({
    roles: z.array(z.enum(ROLES)).min(1).max(ROLES.length),
    policies: z
      .array(
        z.union([z.literal('*'), z.string().regex(POLICY_NAME, { message: 'must be a policy name or *' })]),
      )
      .max(100)
      .optional(),
    expiresIn: durationSchema.optional(),
    description: z.string().max(200).optional(),
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
const timestampSchema = z.iso.datetime({ offset: true }).transform((text) => new Date(text));

export const listCertificatesQuerySchema = z.strictObject({
  status: z.enum(['valid', 'revoked', 'expired']).optional(),
  policy: z.string().regex(POLICY_NAME, { message: 'must be a policy name' }).optional(),
  issuer: z.string().min(1).max(64).optional(),
  expiresBefore: timestampSchema.optional(),
  cursor: z.string().min(1).max(512).optional(),
  limit: limitSchema,
});

export const listAuditQuerySchema = z.strictObject({
  actor: z.string().min(1).max(256).optional(),
  action: z.string().min(1).max(128).optional(),
  decision: z.enum(['allowed', 'denied', 'failed']).optional(),
  target: z.string().min(1).max(256).optional(),
  since: timestampSchema.optional(),
  until: timestampSchema.optional(),
  cursor: z.string().min(1).max(512).optional(),
  limit: limitSchema,
});

export const revokeBodySchema = z.strictObject({
  // Any string: the revoke use case answers revocation.reason_invalid with a sentence that says why
  // (certificateHold is not supported, case-sensitive names, the list of reasons).
  reason: z.string().min(1).max(64),
  invalidityDate: z.string().max(64).optional(),
});

export const revokeByKeyBodySchema = z.strictObject({
  jws: z
    .string()
    .min(1)
    .max(16 * 1024),
});
