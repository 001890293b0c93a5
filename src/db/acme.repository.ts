/**
 * The ACME server's storage (src/acme, RFC 8555): accounts, orders, authorisations, challenges, EAB
 * keys, and the nonces (acme-nonces.repository.ts). State changes that race between requests or
 * nodes (a nonce used twice, two finalize calls, a challenge answered twice) are single
 * conditional statements, so the database decides which one wins.
 */
import { and, asc, desc, eq, gt, inArray, isNull, lt, lte, or, sql } from 'drizzle-orm';
import { type Clock, systemClock } from '../lib/clock.ts';
import { type AcmeNoncesRepository, createAcmeNoncesRepository } from './acme-nonces.repository.ts';
import type { Db } from './database.ts';
import {
  type AcmeAccountStatus,
  acmeAccounts,
  acmeAuthorizations,
  acmeChallenges,
  acmeEabKeys,
  acmeNonces,
  acmeOrders,
  type StoredAcmeIdentifier,
  type StoredAcmeProblem,
} from './schema/index.ts';
import { checkStorableText } from './text.ts';

export type AcmeAccountRecord = typeof acmeAccounts.$inferSelect;
export type AcmeOrderRecord = typeof acmeOrders.$inferSelect;
export type AcmeAuthorizationRecord = typeof acmeAuthorizations.$inferSelect;
export type AcmeChallengeRecord = typeof acmeChallenges.$inferSelect;
export type AcmeEabKeyRecord = typeof acmeEabKeys.$inferSelect;

/** The EAB key named at newAccount was taken, expired or removed meanwhile (RFC 8555 §7.3.4). */
export class EabKeyUnavailableError extends Error {
  override readonly name = 'EabKeyUnavailableError';
}
export type { StoredAcmeIdentifier, StoredAcmeProblem };

export interface AcmeAuthorizationWithChallenges extends AcmeAuthorizationRecord {
  /** In their position order. */
  challenges: AcmeChallengeRecord[];
}

export interface NewAcmeAccount {
  id: string;
  directory: string;
  keyThumbprint: string;
  keyJwk: Record<string, unknown>;
  contact: string[];
  termsOfServiceAgreed: boolean;
  /** The EAB key consumed by this account and the policies it grants. */
  eab?: { keyId: string; policies: string[] };
}

export interface NewAcmeAuthorization {
  id: string;
  identifierType: 'dns' | 'ip';
  identifierValue: string;
  wildcard: boolean;
  expiresAt: Date;
  challenges: { id: string; type: string; token: string }[];
}

export interface NewAcmeOrder {
  id: string;
  accountId: string;
  identifiers: StoredAcmeIdentifier[];
  expiresAt: Date;
  /** Every authorisation of the order, in identifier order: reused ones and the new ones. */
  authorizationIds: string[];
  /** The authorisations created with the order (with their challenges). */
  newAuthorizations: NewAcmeAuthorization[];
  /** The policy it is issued under. */
  profile?: string;
  /** RFC 9773 §5: the certID of the certificate it replaces. */
  replaces?: string;
}

export type ChallengeOutcome =
  | { status: 'valid'; authorizationExpiresAt: Date }
  | { status: 'invalid'; error: StoredAcmeProblem };

export type OrderOutcome =
  | { status: 'valid'; certificateSerial: string; certificateChain: string }
  | { status: 'invalid'; error: StoredAcmeProblem }
  /** Back to pending (derived ready): the issuance failed for a reason that may pass. */
  | { status: 'pending' };

/** The nonces' part lives in acme-nonces.repository.ts; the rest are accounts, orders and EAB keys. */
export interface AcmeRepository extends AcmeNoncesRepository {
  createEabKey(input: {
    id: string;
    directory: string;
    policies: string[];
    sealed: Uint8Array;
    createdBy: string;
    expiresAt: Date | null;
  }): Promise<AcmeEabKeyRecord>;
  findEabKey(id: string): Promise<AcmeEabKeyRecord | null>;

  /**
   * Creates the account, or finds the one this key already has in that directory. With `eab`,
   * the EAB key is consumed in the same transaction (EabKeyUnavailableError when it is used or
   * expired by then).
   */
  createAccount(input: NewAcmeAccount): Promise<{ account: AcmeAccountRecord; created: boolean }>;
  findAccount(id: string): Promise<AcmeAccountRecord | null>;
  findAccountByKey(directory: string, keyThumbprint: string): Promise<AcmeAccountRecord | null>;
  /** Changes contact or status; null when there is no such account. A deactivated account stays so. */
  updateAccount(
    id: string,
    changes: { contact?: string[]; status?: AcmeAccountStatus },
  ): Promise<AcmeAccountRecord | null>;

  /** The order, its new authorisations and their challenges, in one transaction. */
  createOrder(input: NewAcmeOrder): Promise<AcmeOrderRecord>;
  findOrder(id: string): Promise<AcmeOrderRecord | null>;
  /** The order (not invalid) whose `replaces` is this certID (RFC 9773 §5). */
  findReplacingOrder(certId: string): Promise<AcmeOrderRecord | null>;
  /** The account's orders, newest first, `limit` of them after the cursor (an order id). */
  listOrders(
    accountId: string,
    limit: number,
    after?: { createdAt: Date; id: string },
  ): Promise<AcmeOrderRecord[]>;
  /** The order that produced the certificate with this serial. */
  findOrderByCertificate(serial: string): Promise<AcmeOrderRecord | null>;
  /** The authorisations with these ids and their challenges, in the order of `ids`. */
  findAuthorizations(ids: string[]): Promise<AcmeAuthorizationWithChallenges[]>;
  /**
   * Valid authorisations of the account for these identifiers that have not expired (reuse for
   * a new order, RFC 8555 §7.4; the right to revoke, §7.6).
   */
  findValidAuthorizations(
    accountId: string,
    identifiers: { type: 'dns' | 'ip'; value: string }[],
  ): Promise<AcmeAuthorizationRecord[]>;
  /** pending or valid -> deactivated (RFC 8555 §7.5.2); false when it was in another state. */
  deactivateAuthorization(id: string): Promise<boolean>;
  /**
   * Replaces the account key (RFC 8555 §7.3.5) if it is still `oldThumbprint`; `conflict` when
   * another account of the directory has the new key.
   */
  changeAccountKey(
    id: string,
    oldThumbprint: string,
    key: { thumbprint: string; jwk: Record<string, unknown> },
  ): Promise<'changed' | 'stale' | 'conflict'>;
  findChallenge(
    id: string,
  ): Promise<{ challenge: AcmeChallengeRecord; authorization: AcmeAuthorizationRecord } | null>;
  /**
   * pending -> processing with a lease, while its authorisation is pending and unexpired; false
   * when the challenge or its authorisation is in another state (already answered, expired).
   */
  startChallenge(id: string, leaseUntil: Date): Promise<boolean>;
  /** Renews the lease of a processing challenge (a node about to validate it). */
  renewChallengeLease(id: string, leaseUntil: Date): Promise<boolean>;
  /**
   * processing -> valid or invalid, and its authorisation with it (RFC 8555 §7.1.6: one failed
   * challenge makes the authorisation invalid). False when the challenge was not processing.
   */
  finishChallenge(id: string, outcome: ChallengeOutcome): Promise<boolean>;
  /** Processing challenges whose lease has passed, leased again until `leaseUntil`. */
  claimStaleChallenges(leaseUntil: Date, limit: number): Promise<string[]>;
  /** pending -> processing (the caller has checked that every authorisation is valid). */
  beginFinalize(orderId: string): Promise<boolean>;
  /** processing -> valid, invalid or back to pending. */
  finishOrder(orderId: string, outcome: OrderOutcome): Promise<void>;
  /** Writes the statuses time has decided and forgets used-up nonces; answers the counts. */
  expire(): Promise<{ orders: number; authorizations: number; nonces: number }>;
}

const MAX_ID = 64;

// Longer than 80 lines: a repository factory whose methods, each a statement or two over the
// same handle, are listed in the AcmeRepository interface above.
// biome-ignore lint/complexity/noExcessiveLinesPerFunction: a repository factory: one short method per query over the same handle
export function createAcmeRepository({ db, clock = systemClock }: { db: Db; clock?: Clock }): AcmeRepository {
  const checkId = (name: string, id: string) => checkStorableText(name, id, MAX_ID);

  async function authorizationsWithChallenges(ids: string[]): Promise<AcmeAuthorizationWithChallenges[]> {
    if (ids.length === 0) return [];
    const authorizations = await db
      .select()
      .from(acmeAuthorizations)
      .where(inArray(acmeAuthorizations.id, ids));
    const challenges = await db
      .select()
      .from(acmeChallenges)
      .where(inArray(acmeChallenges.authorizationId, ids))
      .orderBy(asc(acmeChallenges.position));
    const byId = new Map(
      authorizations.map((a) => [a.id, { ...a, challenges: [] as AcmeChallengeRecord[] }]),
    );
    for (const challenge of challenges) byId.get(challenge.authorizationId)?.challenges.push(challenge);
    return ids.flatMap((id) => {
      const found = byId.get(id);
      return found ? [found] : [];
    });
  }

  const repository: AcmeRepository = {
    ...createAcmeNoncesRepository({ db, clock, maxLength: MAX_ID }),
    async createEabKey(input) {
      checkId('id', input.id);
      const [row] = await db
        .insert(acmeEabKeys)
        .values({ ...input, createdAt: clock.now() })
        .returning();
      return row!;
    },

    async findEabKey(id) {
      const rows = await db.select().from(acmeEabKeys).where(eq(acmeEabKeys.id, id));
      return rows[0] ?? null;
    },

    async createAccount(input) {
      checkId('id', input.id);
      const now = clock.now();
      const { eab, ...account } = input;
      const inserted = await db.transaction(async (tx) => {
        const rows = await tx
          .insert(acmeAccounts)
          .values({
            ...account,
            ...(eab ? { eabKeyId: eab.keyId, policies: eab.policies } : {}),
            status: 'valid',
            createdAt: now,
            updatedAt: now,
          })
          .onConflictDoNothing({ target: [acmeAccounts.directory, acmeAccounts.keyThumbprint] })
          .returning();
        if (rows[0] && eab) {
          // RFC 8555 §7.3.4: the key binds one account; the conditional update decides a race.
          const used = await tx
            .update(acmeEabKeys)
            .set({ accountId: input.id, usedAt: now })
            .where(
              and(
                eq(acmeEabKeys.id, eab.keyId),
                isNull(acmeEabKeys.accountId),
                or(isNull(acmeEabKeys.expiresAt), gt(acmeEabKeys.expiresAt, now)),
              ),
            )
            .returning({ id: acmeEabKeys.id });
          if (used.length === 0) throw new EabKeyUnavailableError('the EAB key is used or expired');
        }
        return rows;
      });
      if (inserted[0]) return { account: inserted[0], created: true };
      const existing = await repository.findAccountByKey(input.directory, input.keyThumbprint);
      if (!existing) throw new Error('an ACME account conflicted on its key but cannot be found');
      return { account: existing, created: false };
    },

    async findAccount(id) {
      const rows = await db.select().from(acmeAccounts).where(eq(acmeAccounts.id, id));
      return rows[0] ?? null;
    },

    async findAccountByKey(directory, keyThumbprint) {
      const rows = await db
        .select()
        .from(acmeAccounts)
        .where(and(eq(acmeAccounts.directory, directory), eq(acmeAccounts.keyThumbprint, keyThumbprint)));
      return rows[0] ?? null;
    },

    async updateAccount(id, changes) {
      const set: Partial<AcmeAccountRecord> = { updatedAt: clock.now() };
      if (changes.contact) set.contact = changes.contact;
      if (changes.status) set.status = changes.status;
      // RFC 8555 §7.3.6: deactivation is final; nothing brings an account back.
      const rows = await db
        .update(acmeAccounts)
        .set(set)
        .where(and(eq(acmeAccounts.id, id), eq(acmeAccounts.status, 'valid')))
        .returning();
      return rows[0] ?? (await repository.findAccount(id));
    },

    async createOrder(input) {
      checkId('id', input.id);
      const now = clock.now();
      return db.transaction(async (tx) => {
        if (input.newAuthorizations.length > 0) {
          await tx.insert(acmeAuthorizations).values(
            input.newAuthorizations.map((a) => ({
              id: a.id,
              accountId: input.accountId,
              identifierType: a.identifierType,
              identifierValue: a.identifierValue,
              wildcard: a.wildcard,
              status: 'pending' as const,
              expiresAt: a.expiresAt,
              createdAt: now,
              updatedAt: now,
            })),
          );
          await tx.insert(acmeChallenges).values(
            input.newAuthorizations.flatMap((a) =>
              a.challenges.map((c, position) => ({
                id: c.id,
                authorizationId: a.id,
                position,
                type: c.type,
                token: c.token,
                status: 'pending' as const,
              })),
            ),
          );
        }
        const [order] = await tx
          .insert(acmeOrders)
          .values({
            id: input.id,
            accountId: input.accountId,
            status: 'pending',
            identifiers: input.identifiers,
            authorizationIds: input.authorizationIds,
            expiresAt: input.expiresAt,
            profile: input.profile ?? null,
            replaces: input.replaces ?? null,
            createdAt: now,
            updatedAt: now,
          })
          .returning();
        return order!;
      });
    },

    async findOrder(id) {
      const rows = await db.select().from(acmeOrders).where(eq(acmeOrders.id, id));
      return rows[0] ?? null;
    },

    async findReplacingOrder(certId) {
      const rows = await db
        .select()
        .from(acmeOrders)
        .where(and(eq(acmeOrders.replaces, certId), sql`${acmeOrders.status} <> 'invalid'`))
        .limit(1);
      return rows[0] ?? null;
    },

    async listOrders(accountId, limit, after) {
      const rows = await db
        .select()
        .from(acmeOrders)
        .where(
          and(
            eq(acmeOrders.accountId, accountId),
            // RFC 8555 §7.1.2.1: pending and valid orders, not invalid ones.
            sql`${acmeOrders.status} <> 'invalid'`,
            sql`not (${acmeOrders.status} = 'pending' and ${acmeOrders.expiresAt} <= ${clock.now().toISOString()}::timestamptz)`,
            after
              ? or(
                  lt(acmeOrders.createdAt, after.createdAt),
                  and(eq(acmeOrders.createdAt, after.createdAt), lt(acmeOrders.id, after.id)),
                )
              : undefined,
          ),
        )
        .orderBy(desc(acmeOrders.createdAt), desc(acmeOrders.id))
        .limit(limit);
      return rows;
    },

    async findOrderByCertificate(serial) {
      const rows = await db
        .select()
        .from(acmeOrders)
        .where(eq(acmeOrders.certificateSerial, serial))
        .limit(1);
      return rows[0] ?? null;
    },

    findAuthorizations: authorizationsWithChallenges,

    async findValidAuthorizations(accountId, identifiers) {
      if (identifiers.length === 0) return [];
      const values = [...new Set(identifiers.map((i) => i.value))];
      const rows = await db
        .select()
        .from(acmeAuthorizations)
        .where(
          and(
            eq(acmeAuthorizations.accountId, accountId),
            inArray(acmeAuthorizations.identifierValue, values),
            eq(acmeAuthorizations.status, 'valid'),
            gt(acmeAuthorizations.expiresAt, clock.now()),
          ),
        );
      return rows.filter((row) =>
        identifiers.some((i) => i.type === row.identifierType && i.value === row.identifierValue),
      );
    },

    async deactivateAuthorization(id) {
      const rows = await db
        .update(acmeAuthorizations)
        .set({ status: 'deactivated', updatedAt: clock.now() })
        .where(and(eq(acmeAuthorizations.id, id), inArray(acmeAuthorizations.status, ['pending', 'valid'])))
        .returning({ id: acmeAuthorizations.id });
      return rows.length === 1;
    },

    async changeAccountKey(id, oldThumbprint, key) {
      try {
        const rows = await db
          .update(acmeAccounts)
          .set({ keyThumbprint: key.thumbprint, keyJwk: key.jwk, updatedAt: clock.now() })
          .where(
            and(
              eq(acmeAccounts.id, id),
              eq(acmeAccounts.keyThumbprint, oldThumbprint),
              eq(acmeAccounts.status, 'valid'),
            ),
          )
          .returning({ id: acmeAccounts.id });
        return rows.length === 1 ? 'changed' : 'stale';
      } catch (error) {
        const code =
          (error as { code?: string; cause?: { code?: string } }).cause?.code ??
          (error as { code?: string }).code;
        if (code === '23505') return 'conflict';
        throw error;
      }
    },

    async findChallenge(id) {
      const rows = await db
        .select({ challenge: acmeChallenges, authorization: acmeAuthorizations })
        .from(acmeChallenges)
        .innerJoin(acmeAuthorizations, eq(acmeChallenges.authorizationId, acmeAuthorizations.id))
        .where(eq(acmeChallenges.id, id));
      return rows[0] ?? null;
    },

    async startChallenge(id, leaseUntil) {
      const now = clock.now();
      const rows = await db
        .update(acmeChallenges)
        .set({ status: 'processing', leaseUntil })
        .where(
          and(
            eq(acmeChallenges.id, id),
            eq(acmeChallenges.status, 'pending'),
            sql`exists (select 1 from ${acmeAuthorizations} a where a.id = ${acmeChallenges.authorizationId}
              and a.status = 'pending' and a.expires_at > ${now.toISOString()}::timestamptz)`,
          ),
        )
        .returning({ id: acmeChallenges.id });
      return rows.length === 1;
    },

    async renewChallengeLease(id, leaseUntil) {
      const rows = await db
        .update(acmeChallenges)
        .set({ leaseUntil })
        .where(and(eq(acmeChallenges.id, id), eq(acmeChallenges.status, 'processing')))
        .returning({ id: acmeChallenges.id });
      return rows.length === 1;
    },

    async finishChallenge(id, outcome) {
      const now = clock.now();
      return db.transaction(async (tx) => {
        const [challenge] = await tx
          .update(acmeChallenges)
          .set({
            status: outcome.status,
            leaseUntil: null,
            ...(outcome.status === 'valid' ? { validatedAt: now } : { error: outcome.error }),
          })
          .where(and(eq(acmeChallenges.id, id), eq(acmeChallenges.status, 'processing')))
          .returning();
        if (!challenge) return false;
        await tx
          .update(acmeAuthorizations)
          .set({
            status: outcome.status,
            updatedAt: now,
            ...(outcome.status === 'valid' ? { expiresAt: outcome.authorizationExpiresAt } : {}),
          })
          .where(
            and(
              eq(acmeAuthorizations.id, challenge.authorizationId),
              eq(acmeAuthorizations.status, 'pending'),
            ),
          );
        return true;
      });
    },

    async claimStaleChallenges(leaseUntil, limit) {
      const now = clock.now();
      // FOR UPDATE SKIP LOCKED: two nodes sweeping at once claim different challenges.
      const rows = await db
        .update(acmeChallenges)
        .set({ leaseUntil })
        .where(
          inArray(
            acmeChallenges.id,
            db
              .select({ id: acmeChallenges.id })
              .from(acmeChallenges)
              .where(and(eq(acmeChallenges.status, 'processing'), lte(acmeChallenges.leaseUntil, now)))
              .limit(limit)
              .for('update', { skipLocked: true }),
          ),
        )
        .returning({ id: acmeChallenges.id });
      return rows.map((row) => row.id);
    },

    async beginFinalize(orderId) {
      const now = clock.now();
      const rows = await db
        .update(acmeOrders)
        .set({ status: 'processing', updatedAt: now })
        .where(
          and(eq(acmeOrders.id, orderId), eq(acmeOrders.status, 'pending'), gt(acmeOrders.expiresAt, now)),
        )
        .returning({ id: acmeOrders.id });
      return rows.length === 1;
    },

    async finishOrder(orderId, outcome) {
      const set: Partial<AcmeOrderRecord> = { status: outcome.status, updatedAt: clock.now() };
      if (outcome.status === 'valid') {
        set.certificateSerial = outcome.certificateSerial;
        set.certificateChain = outcome.certificateChain;
      } else if (outcome.status === 'invalid') {
        set.error = outcome.error;
      }
      await db
        .update(acmeOrders)
        .set(set)
        .where(and(eq(acmeOrders.id, orderId), eq(acmeOrders.status, 'processing')));
    },

    async expire() {
      const now = clock.now();
      const expiredOrder: StoredAcmeProblem = {
        type: 'urn:ietf:params:acme:error:malformed',
        detail: 'the order expired before it was finalized',
      };
      return db.transaction(async (tx) => {
        const authorizations = await tx
          .update(acmeAuthorizations)
          .set({ status: 'expired', updatedAt: now })
          .where(
            and(
              inArray(acmeAuthorizations.status, ['pending', 'valid']),
              lte(acmeAuthorizations.expiresAt, now),
            ),
          )
          .returning({ id: acmeAuthorizations.id });
        const orders = await tx
          .update(acmeOrders)
          .set({ status: 'invalid', error: expiredOrder, updatedAt: now })
          .where(and(eq(acmeOrders.status, 'pending'), lte(acmeOrders.expiresAt, now)))
          .returning({ id: acmeOrders.id });
        const nonces = await tx
          .delete(acmeNonces)
          .where(lte(acmeNonces.expiresAt, now))
          .returning({ nonce: acmeNonces.nonce });
        return { orders: orders.length, authorizations: authorizations.length, nonces: nonces.length };
      });
    },
  };
  return repository;
}
