/** Delegated OCSP responders per issuer (RFC 6960 §4.2.2.2); `signet ocsp-responder ...` manages them. */
import { and, asc, desc, eq, gt, lte } from 'drizzle-orm';
import { type Clock, systemClock } from '../lib/clock.ts';
import type { Db } from './database.ts';
import { isUniqueViolation, StorageError } from './errors.ts';
import {
  ISSUER_ID_PATTERN,
  OCSP_RESPONDER_STATUSES,
  type OcspResponderStatus,
  ocspResponders,
} from './schema/index.ts';

export type OcspResponderRecord = typeof ocspResponders.$inferSelect;

export interface NewOcspResponder {
  /** A slug, e.g. `dev-intermediate-ocsp-2026`. */
  id: string;
  issuerId: string;
  certificateDer: Uint8Array;
  keyUri: string;
  notBefore: Date;
  notAfter: Date;
}

export interface OcspRespondersRepository {
  /** StorageError `ocsp_responder.exists` if the id is taken. */
  create(input: NewOcspResponder): Promise<OcspResponderRecord>;
  get(id: string): Promise<OcspResponderRecord | null>;
  /** An issuer's responders, newest validity first. */
  listForIssuer(issuerId: string): Promise<OcspResponderRecord[]>;
  /** The active responder valid at `at` with the latest notAfter, or null (the CA key signs). */
  findActive(issuerId: string, at?: Date): Promise<OcspResponderRecord | null>;
  /** False if there is no such responder. */
  setStatus(id: string, status: OcspResponderStatus): Promise<boolean>;
}

const SLUG = new RegExp(ISSUER_ID_PATTERN);

export function createOcspRespondersRepository({ db, clock = systemClock }: { db: Db; clock?: Clock }) {
  const repository: OcspRespondersRepository = {
    async create(input) {
      if (!SLUG.test(input.id))
        throw new TypeError(`responder id ${JSON.stringify(input.id)} must be a slug`);
      if (!(input.notBefore < input.notAfter)) throw new TypeError('notBefore must be before notAfter');
      const now = clock.now();
      try {
        const [row] = await db
          .insert(ocspResponders)
          .values({ ...input, status: 'active', createdAt: now, updatedAt: now })
          .returning();
        return row!;
      } catch (error) {
        if (isUniqueViolation(error)) {
          throw new StorageError(
            'ocsp_responder.exists',
            `an OCSP responder with id ${input.id} already exists`,
          );
        }
        throw error;
      }
    },

    async get(id) {
      const rows = await db.select().from(ocspResponders).where(eq(ocspResponders.id, id));
      return rows[0] ?? null;
    },

    async listForIssuer(issuerId) {
      return db
        .select()
        .from(ocspResponders)
        .where(eq(ocspResponders.issuerId, issuerId))
        .orderBy(desc(ocspResponders.notAfter), asc(ocspResponders.id));
    },

    async findActive(issuerId, at = clock.now()) {
      const rows = await db
        .select()
        .from(ocspResponders)
        .where(
          and(
            eq(ocspResponders.issuerId, issuerId),
            eq(ocspResponders.status, 'active'),
            lte(ocspResponders.notBefore, at),
            gt(ocspResponders.notAfter, at),
          ),
        )
        .orderBy(desc(ocspResponders.notAfter), asc(ocspResponders.id))
        .limit(1);
      return rows[0] ?? null;
    },

    async setStatus(id, status) {
      if (!OCSP_RESPONDER_STATUSES.includes(status)) {
        throw new TypeError(`unknown responder status ${JSON.stringify(status)}`);
      }
      const rows = await db
        .update(ocspResponders)
        .set({ status, updatedAt: clock.now() })
        .where(eq(ocspResponders.id, id))
        .returning({ id: ocspResponders.id });
      return rows.length === 1;
    },
  };
  return repository;
}
