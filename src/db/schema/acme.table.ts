import { sql } from 'drizzle-orm';
import { boolean, check, index, integer, jsonb, pgTable, text, uniqueIndex } from 'drizzle-orm/pg-core';
import { bytea, timestamptz } from './columns.ts';

/**
 * The ACME server's state (RFC 8555, src/acme): accounts, orders, authorisations, challenges and
 * nonces. Everything lives here rather than in a node's memory, so any node answers for an order
 * another node created and accepts a nonce another node issued. Statuses that follow from time
 * (an expired order or authorisation) are derived when read and written by a periodic sweep.
 */

export const ACME_ACCOUNT_STATUSES = ['valid', 'deactivated', 'revoked'] as const;
export type AcmeAccountStatus = (typeof ACME_ACCOUNT_STATUSES)[number];

/** Stored order states; `ready` is derived from the authorisations (RFC 8555 §7.1.6). */
export const ACME_ORDER_STATUSES = ['pending', 'processing', 'valid', 'invalid'] as const;
export type AcmeOrderStatus = (typeof ACME_ORDER_STATUSES)[number];

export const ACME_AUTHORIZATION_STATUSES = [
  'pending',
  'valid',
  'invalid',
  'deactivated',
  'expired',
  'revoked',
] as const;
export type AcmeAuthorizationStatus = (typeof ACME_AUTHORIZATION_STATUSES)[number];

export const ACME_CHALLENGE_STATUSES = ['pending', 'processing', 'valid', 'invalid'] as const;
export type AcmeChallengeStatus = (typeof ACME_CHALLENGE_STATUSES)[number];

/** An ACME problem document as stored with an invalid order or challenge (RFC 8555 §6.7). */
export interface StoredAcmeProblem {
  type: string;
  detail: string;
  status?: number;
  subproblems?: { type: string; detail: string; identifier?: { type: string; value: string } }[];
}

export interface StoredAcmeIdentifier {
  type: 'dns' | 'ip';
  value: string;
}

const inList = (values: readonly string[]) => sql.raw(values.map((v) => `'${v}'`).join(', '));

export const acmeAccounts = pgTable(
  'acme_accounts',
  {
    id: text('id').primaryKey(),
    /** The directory (acme.directories[].name) the account was created in; it lives only there. */
    directory: text('directory').notNull(),
    /** RFC 7638 SHA-256 thumbprint of the account key, base64url: one account per key and directory. */
    keyThumbprint: text('key_thumbprint').notNull(),
    /** The account's public key as a JWK (RFC 7517), as newAccount carried it. */
    keyJwk: jsonb('key_jwk').$type<Record<string, unknown>>().notNull(),
    status: text('status').$type<AcmeAccountStatus>().notNull(),
    contact: jsonb('contact').$type<string[]>().notNull().default(sql`'[]'::jsonb`),
    termsOfServiceAgreed: boolean('terms_of_service_agreed').notNull().default(false),
    /** The external account binding key the account consumed (RFC 8555 §7.3.4), if any. */
    eabKeyId: text('eab_key_id'),
    /**
     * The policies the account may order under (its EAB key's); null: every policy the directory
     * offers.
     */
    policies: jsonb('policies').$type<string[]>(),
    createdAt: timestamptz('created_at').notNull(),
    updatedAt: timestamptz('updated_at').notNull(),
  },
  (t) => [
    uniqueIndex('acme_accounts_directory_key_key').on(t.directory, t.keyThumbprint),
    check('acme_accounts_status_known', sql`${t.status} in (${inList(ACME_ACCOUNT_STATUSES)})`),
  ],
);

export const acmeOrders = pgTable(
  'acme_orders',
  {
    id: text('id').primaryKey(),
    accountId: text('account_id')
      .notNull()
      .references(() => acmeAccounts.id),
    status: text('status').$type<AcmeOrderStatus>().notNull(),
    identifiers: jsonb('identifiers').$type<StoredAcmeIdentifier[]>().notNull(),
    /** The order's authorisations, in the order of its identifiers (one may serve several orders). */
    authorizationIds: jsonb('authorization_ids').$type<string[]>().notNull(),
    expiresAt: timestamptz('expires_at').notNull(),
    /** Why the order became invalid. */
    error: jsonb('error').$type<StoredAcmeProblem>(),
    /** The issued certificate's serial (certificates.serial) once the order is valid. */
    certificateSerial: text('certificate_serial'),
    /** The certificate and the intermediates, PEM, as the certificate URL serves them. */
    certificateChain: text('certificate_chain'),
    /** The policy the certificate is issued under: the directory's, or the profile asked for. */
    profile: text('profile'),
    /** RFC 9773 §5: the serial of the certificate this order replaces. */
    replaces: text('replaces'),
    createdAt: timestamptz('created_at').notNull(),
    updatedAt: timestamptz('updated_at').notNull(),
  },
  (t) => [
    index('acme_orders_account_idx').on(t.accountId, t.createdAt),
    index('acme_orders_certificate_idx').on(t.certificateSerial),
    index('acme_orders_expiry_idx').on(t.status, t.expiresAt),
    // RFC 9773 §5: a certificate is replaced by one order; a failed order frees it again.
    uniqueIndex('acme_orders_replaces_key').on(t.replaces).where(sql`${t.status} <> 'invalid'`),
    check('acme_orders_status_known', sql`${t.status} in (${inList(ACME_ORDER_STATUSES)})`),
  ],
);

export const acmeAuthorizations = pgTable(
  'acme_authorizations',
  {
    id: text('id').primaryKey(),
    accountId: text('account_id')
      .notNull()
      .references(() => acmeAccounts.id),
    identifierType: text('identifier_type').$type<'dns' | 'ip'>().notNull(),
    /** For a wildcard order `*.example.com`, `example.com` with `wildcard` set (RFC 8555 §7.1.4). */
    identifierValue: text('identifier_value').notNull(),
    wildcard: boolean('wildcard').notNull().default(false),
    status: text('status').$type<AcmeAuthorizationStatus>().notNull(),
    expiresAt: timestamptz('expires_at').notNull(),
    createdAt: timestamptz('created_at').notNull(),
    updatedAt: timestamptz('updated_at').notNull(),
  },
  (t) => [
    index('acme_authorizations_account_identifier_idx').on(
      t.accountId,
      t.identifierType,
      t.identifierValue,
      t.status,
    ),
    index('acme_authorizations_expiry_idx').on(t.status, t.expiresAt),
    check('acme_authorizations_status_known', sql`${t.status} in (${inList(ACME_AUTHORIZATION_STATUSES)})`),
    check('acme_authorizations_identifier_type_known', sql`${t.identifierType} in ('dns', 'ip')`),
  ],
);

export const acmeChallenges = pgTable(
  'acme_challenges',
  {
    id: text('id').primaryKey(),
    authorizationId: text('authorization_id')
      .notNull()
      .references(() => acmeAuthorizations.id),
    /** Place in the authorisation's list, as the client sees it. */
    position: integer('position').notNull(),
    type: text('type').notNull(),
    /** RFC 8555 §8.1: at least 128 bits of entropy, base64url. */
    token: text('token').notNull(),
    status: text('status').$type<AcmeChallengeStatus>().notNull(),
    validatedAt: timestamptz('validated_at'),
    error: jsonb('error').$type<StoredAcmeProblem>(),
    /**
     * While processing: until when the node validating it holds it. A challenge still processing
     * after that (its node stopped) is taken up again by any node's sweep.
     */
    leaseUntil: timestamptz('lease_until'),
  },
  (t) => [
    index('acme_challenges_authorization_idx').on(t.authorizationId, t.position),
    index('acme_challenges_lease_idx').on(t.status, t.leaseUntil),
    check('acme_challenges_status_known', sql`${t.status} in (${inList(ACME_CHALLENGE_STATUSES)})`),
  ],
);

/**
 * Nonces issued and not yet used (RFC 8555 §6.5). A request's nonce is deleted as it is
 * accepted, so it is accepted once, by whichever node receives it. Each remembers the client
 * address it was issued to, so that an address keeps at most acme.maxNoncesPerAddress of them
 * (issue #34): every ACME answer issues one, and a flood would otherwise fill the table.
 */
export const acmeNonces = pgTable(
  'acme_nonces',
  {
    nonce: text('nonce').primaryKey(),
    expiresAt: timestamptz('expires_at').notNull(),
    /** addressKey() of the client it was issued to (src/api/client-address.ts). */
    client: text('client').notNull().default('unknown'),
  },
  (t) => [
    index('acme_nonces_expires_idx').on(t.expiresAt),
    index('acme_nonces_client_idx').on(t.client, t.expiresAt),
  ],
);

/**
 * External account binding keys (RFC 8555 §7.3.4), made by an admin for one directory. The HMAC
 * key is never stored in clear: `sealed` is AES-256-GCM under a key only the partition can
 * derive (src/acme/eab.ts). A key binds once, to the account that consumed it.
 */
export const acmeEabKeys = pgTable(
  'acme_eab_keys',
  {
    /** The key identifier clients send as the EAB `kid`. */
    id: text('id').primaryKey(),
    directory: text('directory').notNull(),
    /** The policies the bound account may order under. */
    policies: jsonb('policies').$type<string[]>().notNull(),
    sealed: bytea('sealed').notNull(),
    createdBy: text('created_by').notNull(),
    createdAt: timestamptz('created_at').notNull(),
    expiresAt: timestamptz('expires_at'),
    /** Set once, when an account binds with the key. */
    accountId: text('account_id'),
    usedAt: timestamptz('used_at'),
  },
  (t) => [uniqueIndex('acme_eab_keys_account_key').on(t.accountId)],
);
