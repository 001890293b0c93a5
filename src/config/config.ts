import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { parseDuration } from '../lib/duration.ts';

/**
 * The service configuration, `DIR/signet.yaml` (DESIGN.md "Data folder"). Parsed strictly: an
 * unknown key or a wrong type stops the service at start with the path of the mistake. Relative
 * paths are relative to the data folder. Every key is documented in README.md "Configuration".
 */

const duration = z.string().regex(/^P(?!$)(\d+Y)?(\d+M)?(\d+W)?(\d+D)?(T(?=\d)(\d+H)?(\d+M)?(\d+S)?)?$/, {
  message: 'must be an ISO 8601 duration such as PT5S, PT1H or P1D',
});

const linkUrl = z.string().regex(/^tls:\/\/(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):[0-9]{1,5}$/, {
  message: 'must be tls://HOST:PORT (IPv6 as tls://[::1]:PORT)',
});

/**
 * One member of a partition (issue #22): a partition process holding the same keys as the others
 * (cloned with `signet hsm backup`/`restore`). The CA reaches it over its Unix socket, or over
 * mutual TLS when `url`, `cert`, `key` and `ca` are given. The one member `signet serve` starts
 * and supervises carries `dir` and `spawn: true`, and with `listen` it serves mutual TLS as well.
 */
const memberSchema = z
  .strictObject({
    /** The member's Unix socket (a spawned member always has one; `signet hsm` commands use it). */
    socket: z.string().min(1).optional(),
    /** tls://HOST:PORT of a member served with `signet hsm serve --listen`. */
    url: linkUrl.optional(),
    /** This node's client certificate, its key, and the link CA the member's certificate chains to. */
    cert: z.string().min(1).optional(),
    key: z.string().min(1).optional(),
    ca: z.string().min(1).optional(),
    /** Folder of the member this node starts (with spawn: true). */
    dir: z.string().min(1).optional(),
    spawn: z.boolean().default(false),
    /** A spawned member also serves mutual TLS at `url` with this certificate and client CA. */
    listen: z
      .strictObject({ cert: z.string().min(1), key: z.string().min(1), clientCa: z.string().min(1) })
      .optional(),
  })
  .refine((m) => m.socket !== undefined || m.url !== undefined, {
    message: 'a member needs socket: PATH or url: tls://HOST:PORT',
  })
  .refine((m) => m.url === undefined || (m.cert !== undefined && m.key !== undefined && m.ca !== undefined), {
    message: 'a member reached at url needs cert, key and ca (the client certificate, its key, the link CA)',
  })
  .refine((m) => m.url !== undefined || (m.cert ?? m.key ?? m.ca) === undefined, {
    message: 'cert, key and ca apply to a member reached at url',
  })
  .refine((m) => !m.spawn || (m.dir !== undefined && m.socket !== undefined), {
    message: 'a spawned member needs dir and socket',
  })
  .refine((m) => m.listen === undefined || (m.spawn && m.url !== undefined), {
    message: 'listen applies to the spawned member, which listens at its url',
  });

export type PartitionMemberConfig = z.infer<typeof memberSchema>;

const partitionSchema = z
  .strictObject({
    /** Folder of the emulated partition (the single-member form). */
    dir: z.string().min(1).optional(),
    /** Unix socket the partition process listens on (the single-member form). */
    socket: z.string().min(1).optional(),
    /** Members holding the same keys, in place of dir/socket/spawn (issue #22). */
    members: z.array(memberSchema).min(1).max(16).optional(),
    /** File holding the unseal secret; absent means the partition is unsealed by an operator. */
    unsealSecretFile: z.string().min(1).optional(),
    /** The crypto user the server logs in as, and its PIN file. */
    user: z.string().min(1).default('ca'),
    pinFile: z.string().min(1),
    /** Start the partition as a child of `signet serve` (embedded default), or connect to a running one. */
    spawn: z.boolean().optional(),
    /**
     * Also serve p11-kit's PKCS#11 RPC protocol on this socket (issue #26): programs using
     * p11-kit-client.so reach the partition's keys of purpose `other`, never the CA's.
     */
    p11Socket: z.string().min(1).optional(),
    /** A group allowed to connect to p11Socket (0660 instead of 0600). */
    p11SocketGroup: z.string().min(1).optional(),
    /** The partition user C_Login(CKU_USER) logs in as; default `ca`. */
    p11User: z.string().min(1).optional(),
    /**
     * For a partition whose keys live on a PKCS#11 token (its folder has pkcs11.json, issue #25):
     * the file holding the token's own user PIN, passed to the partition process it spawns
     * (else the process reads SIGNET_PKCS11_PIN).
     */
    tokenPinFile: z.string().min(1).optional(),
    /**
     * Issue #23: how many members of the cluster must hold a key created through the spawned
     * member before that member acknowledges it (`signet hsm serve --quorum`); default a majority.
     */
    quorum: z.number().int().min(1).max(32).optional(),
  })
  .superRefine((p, context) => {
    if (p.members !== undefined) {
      const single = (['dir', 'socket', 'spawn'] as const).find((key) => p[key] !== undefined);
      if (single)
        context.addIssue({
          code: 'custom',
          path: [single],
          message: 'give either members or the single-member dir/socket/spawn, not both',
        });
      if (p.members.filter((m) => m.spawn).length > 1)
        context.addIssue({
          code: 'custom',
          path: ['members'],
          message: 'at most one member is spawned (spawn: true)',
        });
    } else {
      for (const key of ['dir', 'socket'] as const) {
        if (p[key] === undefined)
          context.addIssue({ code: 'custom', path: [key], message: `${key} is required (or list members)` });
      }
    }
  })
  .transform((p) => {
    const members: PartitionMemberConfig[] = p.members ?? [
      { dir: p.dir!, socket: p.socket!, spawn: p.spawn ?? true },
    ];
    // The single-member form's dir names the partition folder even when it is not spawned (reconcile reads it).
    return { ...p, spawn: members.some((m) => m.spawn), members };
  })
  .refine((p) => p.spawn || (p.p11Socket ?? p.p11SocketGroup ?? p.p11User) === undefined, {
    message:
      'p11Socket, p11SocketGroup and p11User apply to a partition signet serve starts (spawn: true); give a partition served apart `signet hsm serve --p11-socket` instead',
    path: ['p11Socket'],
  })
  .refine((p) => p.spawn || p.tokenPinFile === undefined, {
    message:
      'tokenPinFile applies to a partition signet serve starts (spawn: true); give a partition served apart `signet hsm serve --token-pin-file` instead',
    path: ['tokenPinFile'],
  })
  .refine((p) => p.quorum === undefined || p.members.some((m) => m.spawn && m.listen !== undefined), {
    message:
      'quorum applies to a cluster member signet serve starts (spawn: true with listen); give a member served apart `signet hsm serve --quorum` instead',
    path: ['quorum'],
  })
  .refine((p) => p.p11Socket !== undefined || (p.p11SocketGroup ?? p.p11User) === undefined, {
    message: 'p11SocketGroup and p11User need p11Socket',
    path: ['p11Socket'],
  });

const clientCertificateMapping = z.strictObject({
  /** Match on the client certificate's subject (RFC 4514 string) or one of its SANs. */
  subject: z.string().min(1).optional(),
  san: z.string().min(1).optional(),
  roles: z.array(z.enum(['issuer', 'revoker', 'auditor', 'admin'])).min(1),
  policies: z.array(z.string().min(1)).default([]),
});

/** A duration in whole days, hours, minutes or seconds (lib/duration), e.g. P7D or PT10S. */
const fixedDuration = duration.refine((text) => parseDuration(text).ok, {
  message: 'must be a duration of days, weeks, hours, minutes or seconds such as P7D or PT10S',
});

/** A short timer: seconds may have a fraction down to milliseconds (PT0.1S). */
const shortDuration = z.string().refine((text) => parseDuration(text, { fractionalSeconds: true }).ok, {
  message: 'must be an ISO 8601 duration such as PT0.1S, PT5S or PT1M (fractions of a second to ms)',
});

/** RFC 8555 challenge types a directory may offer (tls-alpn-01 is RFC 8737). */
export const ACME_CHALLENGE_TYPES = ['http-01', 'dns-01', 'tls-alpn-01'] as const;

const acmeDirectory = z.strictObject({
  /** The directory is served at /acme/{name}/directory. */
  name: z.string().regex(/^[a-z0-9][a-z0-9-]{0,62}$/, {
    message: 'must be lower-case letters, digits and hyphens (it is a URL path segment)',
  }),
  /** The policy every certificate of this directory is issued under. */
  policy: z.string().min(1),
  challenges: z
    .array(z.enum(ACME_CHALLENGE_TYPES))
    .min(1)
    .refine((list) => new Set(list).size === list.length, { message: 'lists a challenge type twice' })
    .default([...ACME_CHALLENGE_TYPES]),
  /** `required`: newAccount must carry an external account binding (RFC 8555 §7.3.4). */
  eab: z.enum(['required', 'optional']).default('optional'),
  /** Policies newOrder may select by `profile` (draft-ietf-acme-profiles); `policy` stays the default. */
  profiles: z
    .array(z.string().min(1))
    .refine((list) => new Set(list).size === list.length, { message: 'lists a profile twice' })
    .default([]),
});

/**
 * Addresses ACME validation never connects to: link-local (where cloud metadata services
 * live) and the metadata addresses themselves (AWS, GCP and Azure at 169.254.169.254, AWS
 * over IPv6 at fd00:ec2::254, Alibaba at 100.100.100.200, Oracle at 192.0.0.192). Loopback and
 * private ranges stay allowed: a private CA validates internal hosts.
 */
export const DEFAULT_ACME_DENY_NETWORKS = [
  '169.254.0.0/16',
  'fe80::/10',
  '169.254.169.254/32',
  'fd00:ec2::254/128',
  '100.100.100.200/32',
  '192.0.0.192/32',
];

/** host, host:port, or [IPv6]:port of a DNS server. */
const dnsServer = z
  .string()
  .regex(
    /^(?:\d{1,3}(?:\.\d{1,3}){3}(?::\d{1,5})?|\[[0-9A-Fa-f:.]+\](?::\d{1,5})?|[0-9A-Fa-f:]*:[0-9A-Fa-f:.]+)$/,
    {
      message:
        'must be a DNS server address: 192.0.2.53, 192.0.2.53:8053, 2001:db8::53 or [2001:db8::53]:8053',
    },
  );

const cidr = z.string().regex(/^[0-9A-Fa-f:.]+\/\d{1,3}$/, {
  message: 'must be a network in CIDR notation such as 169.254.0.0/16 or fe80::/10',
});

const acmeSchema = z
  .strictObject({
    directories: z
      .array(acmeDirectory)
      .default([])
      .refine((list) => new Set(list.map((d) => d.name)).size === list.length, {
        message: 'two directories have the same name',
      }),
    /**
     * The partition key EAB HMAC keys are sealed under (src/acme/eab.ts): Ed25519, purposes
     * exactly ['other']; `signet init` creates it.
     */
    eabKey: z.string().min(1).default('hsm:partition=issuing;label=acme-eab'),
    /**
     * The issuer domain names (RFC 8659 §4.2) that stand for this CA in CAA records. Empty: CAA
     * is not checked.
     */
    caaIdentities: z
      .array(
        z.string().regex(/^[A-Za-z0-9](?:[A-Za-z0-9-]{0,62})(?:\.[A-Za-z0-9-]{1,63})*$/, {
          message: 'must be a domain name such as ca.example.com',
        }),
      )
      .default([]),
    /**
     * PEM files, each a cross-signed certificate of one of this CA's issuers followed by the
     * certificates above it: offered as alternate chains (RFC 8555 §7.4.2) for what that issuer
     * signs. Relative to the data folder.
     */
    alternateChains: z.array(z.string().min(1)).default([]),
    /** How long a nonce from newNonce or Replay-Nonce stays usable (once). */
    nonceLifetime: fixedDuration.default('PT10M'),
    /**
     * Unused nonces kept per client address (IPv6: per /64); beyond, the oldest are forgotten, so
     * a flood of ACME requests cannot fill the nonce table (issue #34).
     */
    maxNoncesPerAddress: z.number().int().min(1).max(1_000_000).default(1000),
    /** How long a new order (and its pending authorisations) may take to become valid. */
    orderLifetime: fixedDuration.default('P7D'),
    /** How long a valid authorisation is reused for the same account and identifier. */
    authorizationLifetime: fixedDuration.default('P30D'),
    validation: z
      .strictObject({
        /** Port http-01 connects to (RFC 8555 §8.3 says 80; tests use a high port). */
        httpPort: z.number().int().min(1).max(65535).default(80),
        /** Port tls-alpn-01 connects to (RFC 8737 §3 says 443). */
        tlsPort: z.number().int().min(1).max(65535).default(443),
        /** DNS servers for A/AAAA/TXT lookups; absent: the system's resolver. */
        dnsResolver: z.union([dnsServer, z.array(dnsServer).min(1)]).optional(),
        denyNetworks: z.array(cidr).default(DEFAULT_ACME_DENY_NETWORKS),
        /** The whole of one validation (DNS, connections, redirects). */
        timeout: fixedDuration.default('PT10S'),
        /** Validations running at once on this node; more wait in a queue. */
        concurrency: z.number().int().min(1).max(1024).default(16),
      })
      .prefault({}),
    rateLimit: z
      .strictObject({
        /** New accounts per client address per minute. */
        newAccountsPerMinute: z.number().int().min(1).default(30),
        /** New orders per account per minute. */
        newOrdersPerMinute: z.number().int().min(1).default(300),
      })
      .prefault({}),
  })
  .prefault({});

export const configSchema = z.strictObject({
  server: z
    .strictObject({
      host: z.string().default('127.0.0.1'),
      port: z.number().int().min(0).max(65535).default(8080),
      /** Base URL clients reach this CA at; CRL, OCSP and caIssuers URLs in certificates derive from it. */
      publicUrl: z.url().default('http://127.0.0.1:8080'),
      /** Largest request body accepted, in bytes (413 beyond). */
      bodyLimit: z
        .number()
        .int()
        .min(1024)
        .max(16 * 1024 * 1024)
        .default(64 * 1024),
      requestTimeout: duration.default('PT30S'),
      tls: z
        .strictObject({
          cert: z.string().min(1),
          key: z.string().min(1),
          clientCa: z.string().min(1).optional(),
          clients: z.array(clientCertificateMapping).default([]),
        })
        .optional(),
      /** A separate listener for GET /metrics (e.g. for Prometheus on an internal port). */
      metricsPort: z.number().int().min(0).max(65535).optional(),
      /** HTTP worker processes (PostgreSQL only above 1); default: the number of cores, 1 on PGlite. */
      workers: z.number().int().min(1).max(256).optional(),
    })
    .prefault({}),
  database: z
    .strictObject({
      /** postgres://... selects PostgreSQL; absent means PGlite in DIR/db. DATABASE_URL wins. */
      url: z.string().min(1).optional(),
    })
    .prefault({}),
  partitions: z.record(z.string().regex(/^[a-z][a-z0-9-]*$/), partitionSchema),
  /** The folder of issuance policies (policies/*.yaml). */
  policies: z.strictObject({ dir: z.string().min(1) }).prefault({ dir: 'policies' }),
  /** PEM files of the roots an issuer's chain must reach. */
  trustedRoots: z.array(z.string().min(1)).min(1),
  issuance: z
    .strictObject({
      backdate: duration.default('PT1M'),
      /** A file of SPKI SHA-256 hashes (hex, one per line) refused at intake; reloaded with policies. */
      keyBlocklist: z.string().min(1).optional(),
      maxCsrBytes: z
        .number()
        .int()
        .min(1024)
        .max(1024 * 1024)
        .default(64 * 1024),
    })
    .prefault({}),
  certificates: z
    .strictObject({
      /**
       * How long after its notAfter a certificate may still be renewed by proof of its key
       * (POST /v1/certificates/{serial}/renew, issue #32); PT0S: only until it expires.
       */
      renewGrace: fixedDuration.default('PT0S'),
    })
    .prefault({}),
  crl: z
    .strictObject({
      validity: duration.default('P1D'),
      /**
       * Longest wait between a revocation and the CRL that lists it: revocations inside the window
       * share one CRL. Holds after a crash and on every node (the owed_work outbox, issue #17).
       */
      debounce: shortDuration.default('PT0.1S'),
      /**
       * CRL shards per issuer id (default 1: one complete CRL at /crl/{id}.crl). A certificate's
       * shard is fixed when it is issued; changing a count affects new certificates only.
       */
      shards: z
        .record(
          z.string().regex(/^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$/, { message: 'must be an issuer id' }),
          z.number().int().min(1).max(65_536),
        )
        .default({}),
      /**
       * With it, delta CRLs (RFC 5280 §5.2.4) are published at this interval and on revocation,
       * and certificates and full CRLs point at them (Freshest CRL).
       */
      deltaInterval: fixedDuration.optional(),
      /**
       * /readyz warns when an imported CRL (a root's, from the offline ceremony) is this close to
       * its nextUpdate: time to run the crl ceremony and import its output.
       */
      importedExpiryWarning: duration
        .refine((text) => parseDuration(text).ok, {
          message: 'must be a duration of days, weeks, hours, minutes or seconds such as P30D',
        })
        .default('P30D'),
    })
    .superRefine((crl, context) => {
      if (crl.deltaInterval === undefined) return;
      const delta = parseDuration(crl.deltaInterval);
      const validity = parseDuration(crl.validity);
      // A delta CRL is valid for twice the interval and must not outlive its base's usefulness.
      if (delta.ok && validity.ok && (delta.seconds < 1 || 2 * delta.seconds > validity.seconds)) {
        context.addIssue({
          code: 'custom',
          path: ['deltaInterval'],
          message: 'must be at least PT1S and at most half of crl.validity',
        });
      }
    })
    .prefault({}),
  ocsp: z
    .strictObject({
      validity: duration.default('PT4H'),
      /** Pre-signed responses kept in memory per node (the rest are read from the database). */
      cacheEntries: z.number().int().min(1).max(10_000_000).default(100_000),
      /**
       * requested: a certificate's response is signed the first time it is asked for; all: also in
       * the background for every valid certificate.
       */
      preSign: z.enum(['requested', 'all']).default('requested'),
      nonceRateLimit: z
        .strictObject({
          /** Responses signed on the spot (nonce, several CertIDs) per client address per minute. */
          perMinute: z.number().int().min(1).default(600),
        })
        .prefault({}),
      /** Validity of a delegated responder's certificate (re-issued for the same key before it expires). */
      responderValidity: duration.default('P7D'),
    })
    .prefault({}),
  rateLimit: z
    .strictObject({
      /** Requests per credential per minute before 429. */
      perMinute: z.number().int().min(1).default(6000),
      /** Failed authentications (and refused proofs of key possession) per client address per minute before 429. */
      failedAuthPerMinute: z.number().int().min(1).default(60),
    })
    .prefault({}),
  audit: z
    .strictObject({
      /** At most one audit row of failed authentication per client address per this interval, with a count. */
      failedAuthInterval: duration.default('PT1M'),
    })
    .prefault({}),
  /** The ACME server (RFC 8555): its directories and how it validates challenges. */
  acme: acmeSchema,
  log: z
    .strictObject({
      level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    })
    .prefault({}),
});

export type SignetConfig = z.infer<typeof configSchema>;

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

/** Resolves DESIGN.md's data folder: --data, else $SIGNET_DATA (set and not empty), else ./data. */
export function resolveDataDir(flag?: string): string {
  return path.resolve(flag ?? (process.env.SIGNET_DATA || 'data'));
}

export function parseConfig(text: string, file = 'signet.yaml'): SignetConfig {
  let raw: unknown;
  try {
    raw = parseYaml(text, { prettyErrors: true, uniqueKeys: true });
  } catch (error) {
    throw new ConfigError(`${file}: not valid YAML: ${(error as Error).message}`);
  }
  const result = configSchema.safeParse(raw ?? {});
  if (!result.success) {
    const problems = result.error.issues.map((issue) => {
      const where = issue.path.length > 0 ? issue.path.join('.') : '(top level)';
      return `${file}: ${where}: ${issue.message}`;
    });
    throw new ConfigError(problems.join('\n'));
  }
  return result.data;
}

export function loadConfig(dataDir: string): SignetConfig {
  const file = path.join(dataDir, 'signet.yaml');
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new ConfigError(`${file} does not exist: run 'signet init --data ${dataDir}' first`);
    }
    throw error;
  }
  return parseConfig(text, file);
}

/** A path from the config, resolved against the data folder. */
export const resolveIn = (dataDir: string, p: string): string => path.resolve(dataDir, p);
