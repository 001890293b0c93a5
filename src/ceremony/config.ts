import { isAlias, isNode, parseDocument, visit } from 'yaml';
import { z } from 'zod';
import { KEY_USAGE_NAMES } from '../lib/key-usage.ts';
import { REVOCATION_REASONS } from '../lib/revocation-reasons.ts';
import { parseCidr } from '../x509/name-constraints.ts';
import { crossFieldProblems } from './config-checks.ts';
import { type ConfigProblem, configInvalid } from './errors.ts';
/**
 * The ceremony configuration: one strict YAML file per ceremony, reviewed in advance and run
 * unchanged (after Boulder's cmd/ceremony). `ceremony-type` selects the schema; each schema is
 * strict (an unknown key is an error naming its path) and is followed by cross-field checks that
 * also name the path. Checks that need the file system (inputs readable, outputs absent, the
 * issuer's validity) live in validate.ts. Every key is documented in ceremonies/README.md.
 */

export const CEREMONY_TYPES = [
  'root',
  'key',
  'intermediate',
  'cross-certificate',
  'crl',
  'hierarchy',
] as const;

export type CeremonyType = (typeof CEREMONY_TYPES)[number];

export type ProfileKeyUsage = (typeof KEY_USAGE_NAMES)[number];

const EKU_NAMES = [
  'serverAuth',
  'clientAuth',
  'codeSigning',
  'emailProtection',
  'timeStamping',
  'ocspSigning',
];

/** RFC 5280 §5.3.1 reason names (DESIGN.md "Revocation reasons"). */
export const CRL_REASONS = REVOCATION_REASONS;

const nonEmpty = z
  .string()
  .trim()
  .min(1, { message: 'must not be empty' })
  .regex(/^[^\p{Cc}]*$/u, { message: 'must not contain control characters' });

const filePath = z
  .string()
  .min(1, { message: 'must not be empty' })
  .refine((v) => !v.includes('\0'), {
    message: 'must not contain NUL',
  });

const label = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, {
  message: 'must be 1-64 of A-Z a-z 0-9 . _ - starting alphanumeric',
});

const partitionName = z.string().regex(/^[a-z0-9][a-z0-9-]{0,31}$/, { message: 'must be a lowercase slug' });

const userName = z
  .string()
  .regex(/^[a-z0-9][a-z0-9._-]{0,31}$/, { message: 'must be a partition user name' });
// Certificates carry URIs as IA5String (RFC 5280 §4.2.1.6): ASCII only, IDNs in their A-label form.

const httpUrl = z
  .url({ protocol: /^https?$/, message: 'must be an absolute http or https URL' })
  .regex(/^[\x21-\x7e]+$/, { message: 'must be ASCII (write international names as A-labels)' });

/** Exact instants: RFC 3339 in UTC with whole seconds, so the certificate says exactly what was reviewed. */
const instant = z
  .string()
  .regex(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/, {
    message: 'must be an RFC 3339 UTC time such as 2026-01-01T00:00:00Z',
  })
  .refine((v) => !Number.isNaN(Date.parse(v)) && new Date(v).toISOString().replace('.000Z', 'Z') === v, {
    message: 'is not a valid date',
  });

const oid = z
  .string()
  .regex(/^[0-2](\.(0|[1-9]\d*))+$/, { message: 'must be a dotted OID such as 2.23.140.1.2.1' });

// RFC 5280 §4.2.1.10 name constraint forms.

const dnsConstraint = z
  .string()
  .regex(/^\.?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/, {
    message: 'must be a lowercase DNS name (A-labels), optionally with a leading dot',
  });

const ipConstraint = z.string().refine(isCidr, {
  message: 'must be an address range in CIDR form without host bits, e.g. 192.0.2.0/24',
});

const emailConstraint = z.string().regex(/^([^@\s]+@)?\.?[a-z0-9.-]+$/, {
  message: 'must be a mailbox, a host or a .domain',
});

const uriConstraint = z
  .string()
  .regex(/^\.?[a-z0-9.-]+$/, { message: 'must be a host or a .domain (RFC 5280 §4.2.1.10)' });

const nameSet = z.strictObject({
  dns: z.array(dnsConstraint).default([]),
  ip: z.array(ipConstraint).default([]),
  email: z.array(emailConstraint).default([]),
  uri: z.array(uriConstraint).default([]),
});

export type NameSet = z.infer<typeof nameSet>;

const subjectSchema = z.strictObject({
  'common-name': nonEmpty.max(64),
  organization: nonEmpty.max(64).optional(),
  'organizational-unit': nonEmpty.max(64).optional(),
  country: z
    .string()
    .regex(/^[A-Z]{2}$/, { message: 'must be an ISO 3166 two-letter code' })
    .optional(),
  state: nonEmpty.max(128).optional(),
  locality: nonEmpty.max(128).optional(),
});

export type SubjectConfig = z.infer<typeof subjectSchema>;

const keySchema = z.strictObject({
  label,
  type: z.enum(['ecdsa', 'rsa', 'ed25519']),
  'ecdsa-curve': z.enum(['P-256', 'P-384']).optional(),
  'rsa-mod-length': z.literal([2048, 3072, 4096]).optional(),
});

export type KeyConfig = z.infer<typeof keySchema>;

const profileFields = {
  'not-before': instant,
  'not-after': instant,
  'key-usages': z.array(z.enum(KEY_USAGE_NAMES)).min(1),
  'extended-key-usages': z
    .array(z.union([z.enum(EKU_NAMES as [string, ...string[]]), oid]))
    .min(1)
    .optional(),
  'path-length': z.number().int().min(0).max(16).optional(),
  'name-constraints': z
    .strictObject({
      critical: z.boolean().default(true),
      permitted: nameSet.optional(),
      excluded: nameSet.optional(),
    })
    .optional(),
  'policy-oids': z.array(oid).default([]),
  'crl-url': httpUrl.optional(),
  'issuer-url': httpUrl.optional(),
  'ocsp-url': httpUrl.optional(),
};

const profileSchema = z.strictObject({ subject: subjectSchema, ...profileFields });

/** A cross-certificate copies its subject from the other CA's certificate. */
const crossProfileSchema = z.strictObject(profileFields);

export type CertificateProfile = z.infer<typeof profileSchema>;

export type CrossProfile = z.infer<typeof crossProfileSchema>;

const custodianSchema = z.strictObject({ name: nonEmpty, 'share-path': filePath });

const partitionFields = {
  /** An unserved partition folder: the ceremony starts its own partition process. */
  dir: filePath.optional(),
  /** A served partition's socket. */
  socket: filePath.optional(),
  /** The crypto officer, who creates keys. */
  officer: userName.default('officer'),
  /** The crypto user, who signs. */
  user: userName.default('ca'),
};

const partitionSchema = z.strictObject({ ...partitionFields, name: partitionName });

const offlinePartitionSchema = z.strictObject({
  ...partitionFields,
  name: partitionName.default('root'),
  create: z
    .strictObject({
      threshold: z.number().int().min(2).max(255),
      custodians: z.array(custodianSchema).min(2).max(255),
      /**
       * Keep the new partition's keys on a PKCS#11 token (issue #25); its token PIN comes from
       * SIGNET_PKCS11_PIN when the ceremony starts the partition process.
       */
      pkcs11: z
        .strictObject({
          module: z.string().startsWith('/', { message: 'must be an absolute path' }),
          'token-label': z.string().min(1).max(32).optional(),
          'slot-id': z.number().int().min(0).optional(),
        })
        .refine((t) => t['token-label'] !== undefined || t['slot-id'] !== undefined, {
          message: 'names the token by token-label (or slot-id)',
        })
        .optional(),
    })
    .optional(),
});

const existingOfflinePartitionSchema = z.strictObject({
  ...partitionFields,
  name: partitionName.default('root'),
});

export type PartitionConfig = z.infer<typeof partitionSchema>;

export type OfflinePartitionConfig = z.infer<typeof offlinePartitionSchema>;

const participantsSchema = z.array(z.strictObject({ name: nonEmpty, role: nonEmpty })).min(1);

const transcriptSchema = z.strictObject({
  /** The JSON record; its markdown rendering and detached signature sit beside it (.md, .json.sig). */
  path: filePath.refine((p) => p.endsWith('.json'), { message: 'must end in .json' }),
  /** Label of a key this ceremony uses, when the default signer may not sign (digitalSignature). */
  'signing-key': label.optional(),
});

const issuerSchema = z.strictObject({ 'key-label': label, 'certificate-path': filePath });

const subjectKeySchema = z.strictObject({
  'public-key-path': filePath.optional(),
  'csr-path': filePath.optional(),
});

const hierarchySubjectKeySchema = z.strictObject({ ...subjectKeySchema.shape, key: keySchema.optional() });

const crlProfileSchema = z.strictObject({
  'this-update': instant,
  'next-update': instant,
  /**
   * RFC 5280 §5.2.3: a non-negative integer of at most 20 octets; decimal string for large values.
   * Optional when `previous-crl-path` is given (then the previous number + 1), and in a hierarchy
   * (then 1: the first CRL of a new root).
   */
  number: z
    .union([z.number().int().min(0), z.string().regex(/^\d{1,48}$/, { message: 'must be decimal digits' })])
    .optional(),
  /**
   * The CRL published before for this issuer (PEM or DER: the last ceremony's output, the CRL
   * `signet init` made, or the one the online CA serves at /crl/ID.crl). This CRL follows it.
   */
  'previous-crl-path': filePath.optional(),
  'revoked-certificates': z
    .array(
      z.strictObject({
        'certificate-path': filePath.optional(),
        serial: z
          .string()
          .regex(/^(00)?[0-9a-fA-F]{1,40}$|^([0-9a-fA-F]{2}:)+[0-9a-fA-F]{2}$/, {
            message: 'must be a hexadecimal serial number',
          })
          .optional(),
        'revocation-date': instant,
        reason: z.enum(CRL_REASONS).optional(),
      }),
    )
    .default([]),
});

export type CrlProfile = z.infer<typeof crlProfileSchema>;

const common = {
  'policy-url': httpUrl,
  description: z.string().optional(),
  participants: participantsSchema,
  transcript: transcriptSchema,
};

const rootSchema = z.strictObject({
  'ceremony-type': z.literal('root'),
  ...common,
  'offline-partition': offlinePartitionSchema,
  key: keySchema,
  'certificate-profile': profileSchema,
  outputs: z.strictObject({ 'public-key-path': filePath, 'certificate-path': filePath }),
});

const keyCeremonySchema = z.strictObject({
  'ceremony-type': z.literal('key'),
  ...common,
  partition: partitionSchema,
  key: keySchema,
  outputs: z.strictObject({ 'public-key-path': filePath }),
});

const intermediateSchema = z.strictObject({
  'ceremony-type': z.literal('intermediate'),
  ...common,
  'offline-partition': existingOfflinePartitionSchema,
  issuer: issuerSchema,
  'subject-key': subjectKeySchema,
  'certificate-profile': profileSchema,
  outputs: z.strictObject({ 'certificate-path': filePath }),
});

const crossSchema = z.strictObject({
  'ceremony-type': z.literal('cross-certificate'),
  ...common,
  'offline-partition': existingOfflinePartitionSchema,
  issuer: issuerSchema,
  /** The other CA's certificate: its subject and public key are certified. */
  'subject-certificate-path': filePath,
  'certificate-profile': crossProfileSchema,
  outputs: z.strictObject({ 'certificate-path': filePath }),
});

const crlSchema = z.strictObject({
  'ceremony-type': z.literal('crl'),
  ...common,
  'offline-partition': existingOfflinePartitionSchema,
  issuer: issuerSchema,
  'crl-profile': crlProfileSchema,
  outputs: z.strictObject({ 'crl-path': filePath }),
});

const hierarchySchema = z.strictObject({
  'ceremony-type': z.literal('hierarchy'),
  ...common,
  'offline-partition': offlinePartitionSchema,
  /** Where intermediates' keys are created when an intermediate has `subject-key.key`. */
  'online-partition': partitionSchema.optional(),
  root: z.strictObject({
    key: keySchema,
    'certificate-profile': profileSchema,
    outputs: z.strictObject({ 'public-key-path': filePath, 'certificate-path': filePath }),
  }),
  intermediates: z
    .array(
      z.strictObject({
        'subject-key': hierarchySubjectKeySchema,
        'certificate-profile': profileSchema,
        outputs: z.strictObject({ 'certificate-path': filePath, 'public-key-path': filePath.optional() }),
      }),
    )
    .min(1),
  crl: z.strictObject({ 'crl-profile': crlProfileSchema, outputs: z.strictObject({ 'crl-path': filePath }) }),
});

export type RootCeremony = z.infer<typeof rootSchema>;

export type KeyCeremony = z.infer<typeof keyCeremonySchema>;

export type IntermediateCeremony = z.infer<typeof intermediateSchema>;

export type CrossCeremony = z.infer<typeof crossSchema>;

export type CrlCeremony = z.infer<typeof crlSchema>;

export type HierarchyCeremony = z.infer<typeof hierarchySchema>;

export type CeremonyConfig =
  | RootCeremony
  | KeyCeremony
  | IntermediateCeremony
  | CrossCeremony
  | CrlCeremony
  | HierarchyCeremony;

const SCHEMAS: Record<CeremonyType, z.ZodType> = {
  root: rootSchema,
  key: keyCeremonySchema,
  intermediate: intermediateSchema,
  'cross-certificate': crossSchema,
  crl: crlSchema,
  hierarchy: hierarchySchema,
};

/**
 * Parses and checks a ceremony configuration without reading any other file.
 * Throws CeremonyError `ceremony.config_invalid` carrying every problem found.
 */
export function parseCeremonyConfig(text: string, file?: string): CeremonyConfig {
  const doc = parseDocument(text, { uniqueKeys: true, prettyErrors: false, strict: true });
  if (doc.errors.length > 0) {
    throw configInvalid(
      doc.errors.map((e) => ({
        path: '',
        code: 'ceremony.config.yaml',
        message: `not valid YAML: ${e.message}`,
      })),
      file,
    );
  }
  // Anchors and aliases would let one reviewed line silently change several places: refuse them.
  let alias = false;
  visit(doc, {
    Node(_, node) {
      if (isAlias(node) || (isNode(node) && node.anchor !== undefined)) {
        alias = true;
        return visit.BREAK;
      }
      return undefined;
    },
  });
  if (alias) {
    throw configInvalid(
      [{ path: '', code: 'ceremony.config.yaml', message: 'YAML anchors and aliases are not allowed' }],
      file,
    );
  }
  const raw: unknown = doc.toJS({ maxAliasCount: 0 });
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw configInvalid(
      [{ path: '', code: 'ceremony.config.yaml', message: 'must be a YAML mapping' }],
      file,
    );
  }
  const type = (raw as Record<string, unknown>)['ceremony-type'];
  if (type === undefined) {
    throw configInvalid(
      [
        {
          path: 'ceremony-type',
          code: 'ceremony.config.required',
          message: `is required: one of ${CEREMONY_TYPES.join(', ')}`,
        },
      ],
      file,
    );
  }
  if (typeof type !== 'string' || !(CEREMONY_TYPES as readonly string[]).includes(type)) {
    throw configInvalid(
      [
        {
          path: 'ceremony-type',
          code: 'ceremony.config.invalid_value',
          message: `must be one of ${CEREMONY_TYPES.join(', ')}`,
        },
      ],
      file,
    );
  }
  const result = SCHEMAS[type as CeremonyType].safeParse(raw, { reportInput: true });
  if (!result.success) throw configInvalid(result.error.issues.flatMap(toProblems), file);
  const config = result.data as CeremonyConfig;
  const problems = crossFieldProblems(config);
  if (problems.length > 0) throw configInvalid(problems, file);
  return config;
}

const joinPath = (path: PropertyKey[]) => path.map(String).join('.');

function toProblems(issue: z.core.$ZodIssue): ConfigProblem[] {
  const path = joinPath(issue.path);
  switch (issue.code) {
    case 'unrecognized_keys':
      return issue.keys.map((key) => ({
        path: path ? `${path}.${key}` : key,
        code: 'ceremony.config.unknown_key',
        message: 'is not a known key',
      }));
    case 'invalid_type':
      if (!('input' in issue) || issue.input === undefined) {
        return [{ path, code: 'ceremony.config.required', message: 'is required' }];
      }
      return [{ path, code: 'ceremony.config.invalid_type', message: `must be ${issue.expected}` }];
    case 'invalid_value':
      return [
        {
          path,
          code: 'ceremony.config.invalid_value',
          message: `must be one of ${issue.values.map((v) => String(v)).join(', ')}`,
        },
      ];
    case 'invalid_union':
      return [{ path, code: 'ceremony.config.invalid_value', message: 'has no acceptable form' }];
    default:
      return [{ path, code: 'ceremony.config.invalid_value', message: issue.message }];
  }
}

/** The partition key algorithm name (DESIGN.md "Key and algorithm names") for a key block. */
export function keyAlgorithmOf(
  key: KeyConfig,
): 'ecdsa-p256' | 'ecdsa-p384' | 'rsa-2048' | 'rsa-3072' | 'rsa-4096' | 'ed25519' {
  if (key.type === 'ed25519') return 'ed25519';
  if (key.type === 'ecdsa') return key['ecdsa-curve'] === 'P-256' ? 'ecdsa-p256' : 'ecdsa-p384';
  return `rsa-${key['rsa-mod-length'] ?? 4096}` as 'rsa-4096';
}

/**
 * The partition mechanism a key signs with; the issuer's key decides, never a request: P-256 with
 * SHA-256, P-384 with SHA-384 (RFC 5480 §4, BR §7.1.3.2.2), RSA PKCS#1 v1.5 with SHA-256, Ed25519.
 */
export function mechanismForKey(
  algorithm: string,
): 'ecdsa-sha256' | 'ecdsa-sha384' | 'rsa-pkcs1-sha256' | 'ed25519' {
  if (algorithm === 'ecdsa-p256') return 'ecdsa-sha256';
  if (algorithm === 'ecdsa-p384') return 'ecdsa-sha384';
  if (algorithm === 'ed25519') return 'ed25519';
  if (/^rsa-\d+$/.test(algorithm)) return 'rsa-pkcs1-sha256';
  throw new RangeError(`no signature mechanism for key algorithm ${algorithm}`);
}

function isCidr(value: string): boolean {
  try {
    parseCidr(value);
    return true;
  } catch {
    return false;
  }
}
