/**
 * The shape of a policy file, strictly: every object rejects unknown keys, every value has one
 * type. What a value means (a name, a CIDR block, an OID) is checked afterwards in compile.ts,
 * where the error can say why. policies/README.md documents every key here; keep them in step.
 */

import { z } from 'zod';
import { parseDuration } from '../lib/duration.ts';
import { KEY_USAGE_NAMES } from '../lib/key-usage.ts';
import type { SubjectAttributeType } from '../x509/types.ts';

export const SUBJECT_ATTRIBUTE_TYPES = [
  'CN',
  'O',
  'OU',
  'C',
  'ST',
  'L',
  'serialNumber',
  'emailAddress',
  'DC',
  'street',
  'postalCode',
] as const satisfies readonly SubjectAttributeType[];

export { KEY_USAGE_NAMES };

const duration = z.string().superRefine((value, ctx) => {
  const parsed = parseDuration(value);
  if (!parsed.ok) ctx.addIssue({ code: 'custom', message: parsed.reason });
});

const strings = z.array(z.string());
const count = (min: number, max: number) => z.number().int().min(min).max(max);

// `CN:` with nothing after it reads as null in YAML; it means "allowed, no further rules".
const subjectAttribute = z.preprocess(
  (value) => (value === null ? {} : value),
  z.strictObject({
    required: z.boolean().default(false),
    fixed: z.string().optional(),
    pattern: z.string().optional(),
    multiple: z.boolean().default(false),
  }),
);

const subjectAttributes = z.strictObject(
  Object.fromEntries(SUBJECT_ATTRIBUTE_TYPES.map((type) => [type, subjectAttribute.optional()])) as Record<
    SubjectAttributeType,
    z.ZodOptional<typeof subjectAttribute>
  >,
);

const nameList = z.strictObject({ exact: strings.default([]), subdomains_of: strings.default([]) });
const emailList = z.strictObject({ exact: strings.default([]), domains: strings.default([]) });
const uriRule = z.strictObject({
  scheme: z.string(),
  host: z.string(),
  port: count(1, 65_535).optional(),
  path: z.string(),
});

export const policySchema = z.strictObject({
  description: z.string().default(''),
  issuer: z.string(),
  validity: z.strictObject({
    default: duration,
    max: duration,
    min: duration.default('PT1M'),
    backdate: duration.default('PT1M'),
  }),
  key_algorithms: z.array(z.string()).min(1),
  subject: z
    .strictObject({
      attributes: subjectAttributes.prefault({}),
      cn_not_in_sans: z.enum(['refuse', 'drop']).default('refuse'),
    })
    .prefault({}),
  sans: z.strictObject({
    min: count(0, 1000).default(1),
    max: count(1, 1000).default(100),
    dns: z
      .strictObject({
        allow: nameList.prefault({}),
        deny: strings.default([]),
        wildcards: z.boolean().default(false),
        max_labels: count(1, 127).optional(),
        max: count(1, 1000).optional(),
      })
      .optional(),
    ip: z
      .strictObject({ allow: strings.default([]), deny: strings.default([]), max: count(1, 1000).optional() })
      .optional(),
    email: z
      .strictObject({
        allow: emailList.prefault({}),
        deny: emailList.prefault({}),
        max: count(1, 1000).optional(),
      })
      .optional(),
    uri: z
      .strictObject({
        allow: z.array(uriRule).default([]),
        deny: z.array(uriRule).default([]),
        max: count(1, 1000).optional(),
      })
      .optional(),
  }),
  extensions: z
    .strictObject({
      passthrough: strings.default([]),
      others: z.enum(['refuse', 'ignore']).default('refuse'),
    })
    .prefault({}),
  key_usage: z.array(z.enum(KEY_USAGE_NAMES)).min(1).default(['digitalSignature', 'keyEncipherment']),
  extended_key_usage: z.array(z.string()).min(1),
  certificate_policies: strings.default([]),
  ocsp_must_staple: z.boolean().default(false),
  overrides: z
    .strictObject({ sans: z.boolean().default(false), validity: z.boolean().default(false) })
    .prefault({}),
});

export type PolicyDocument = z.output<typeof policySchema>;

/** Every key name the schema knows, for "did you mean" hints on unknown keys. */
export const KNOWN_KEYS: ReadonlySet<string> = new Set([
  ...collectKeys(policySchema),
  ...SUBJECT_ATTRIBUTE_TYPES,
]);

function collectKeys(schema: z.ZodType, out = new Set<string>(), depth = 0): Set<string> {
  if (depth > 12) return out;
  const def = (schema as unknown as { _zod: { def: Record<string, unknown> } })._zod.def;
  if (def.type === 'object') {
    for (const [key, child] of Object.entries(def.shape as Record<string, z.ZodType>)) {
      out.add(key);
      collectKeys(child, out, depth + 1);
    }
  }
  for (const inner of ['innerType', 'element', 'in', 'out'] as const) {
    if (def[inner]) collectKeys(def[inner] as z.ZodType, out, depth + 1);
  }
  return out;
}
