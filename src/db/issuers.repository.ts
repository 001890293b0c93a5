/** Issuers: the CA certificates Signet signs with, each addressed by a slug (DESIGN.md "Issuers"). */
import { asc, eq } from 'drizzle-orm';
import { type Clock, systemClock } from '../lib/clock.ts';
import type { Db } from './database.ts';
import { IssuerExistsError, IssuerNotFoundError, isUniqueViolation } from './errors.ts';
import { ISSUER_ID_PATTERN, ISSUER_STATUSES, type IssuerStatus, issuers } from './schema/index.ts';

export type IssuerRecord = typeof issuers.$inferSelect;

export interface IssuerInput {
  id: string;
  name: string;
  parentId?: string | null;
  certificateDer: Uint8Array;
  keyUri: string;
  status?: IssuerStatus;
  crlUrls?: string[];
  ocspUrls?: string[];
  caIssuersUrls?: string[];
  crlShards?: number;
}

export interface IssuersRepository {
  /** Inserts a new issuer; IssuerExistsError if the id is taken. */
  create(input: IssuerInput): Promise<IssuerRecord>;
  /** Inserts, or replaces every field (omitted optional ones take their defaults; created_at is kept). */
  upsert(input: IssuerInput): Promise<IssuerRecord>;
  get(id: string): Promise<IssuerRecord | null>;
  /** All issuers, by id. */
  list(): Promise<IssuerRecord[]>;
  /** IssuerNotFoundError if there is no such issuer. */
  setStatus(id: string, status: IssuerStatus): Promise<IssuerRecord>;
  /**
   * Sets how many CRL shards the issuer's new certificates are spread over (signet.yaml
   * `crl.shards`); certificates already issued keep theirs. IssuerNotFoundError if unknown.
   */
  setCrlShards(id: string, shards: number): Promise<IssuerRecord>;
  /** The issuer and its parents up to the root, issuer first; IssuerNotFoundError if unknown. */
  chain(id: string): Promise<IssuerRecord[]>;
}

const SLUG = new RegExp(ISSUER_ID_PATTERN);

export function isIssuerId(value: string): boolean {
  return typeof value === 'string' && SLUG.test(value);
}

function values(input: IssuerInput) {
  if (!isIssuerId(input.id)) {
    throw new TypeError(`issuer id ${JSON.stringify(input.id)} must be a slug (a-z, 0-9, -; at most 64)`);
  }
  if (input.status !== undefined && !ISSUER_STATUSES.includes(input.status)) {
    throw new TypeError(`unknown issuer status ${JSON.stringify(input.status)}`);
  }
  const shards = input.crlShards ?? 1;
  if (!Number.isInteger(shards) || shards < 1 || shards > 65536) {
    throw new TypeError('crlShards must be an integer from 1 to 65536');
  }
  return {
    id: input.id,
    name: input.name,
    parentId: input.parentId ?? null,
    certificateDer: input.certificateDer,
    keyUri: input.keyUri,
    status: input.status ?? 'active',
    crlUrls: input.crlUrls ?? [],
    ocspUrls: input.ocspUrls ?? [],
    caIssuersUrls: input.caIssuersUrls ?? [],
    crlShards: shards,
  };
}

export function createIssuersRepository({ db, clock = systemClock }: { db: Db; clock?: Clock }) {
  const repository: IssuersRepository = {
    async create(input) {
      const now = clock.now();
      try {
        const [row] = await db
          .insert(issuers)
          .values({ ...values(input), createdAt: now, updatedAt: now })
          .returning();
        return row!;
      } catch (error) {
        if (isUniqueViolation(error)) throw new IssuerExistsError(input.id);
        throw error;
      }
    },

    async upsert(input) {
      const now = clock.now();
      const fields = values(input);
      const { id: _id, ...updates } = fields;
      const [row] = await db
        .insert(issuers)
        .values({ ...fields, createdAt: now, updatedAt: now })
        .onConflictDoUpdate({ target: issuers.id, set: { ...updates, updatedAt: now } })
        .returning();
      return row!;
    },

    async get(id) {
      const rows = await db.select().from(issuers).where(eq(issuers.id, id));
      return rows[0] ?? null;
    },

    async list() {
      return db.select().from(issuers).orderBy(asc(issuers.id));
    },

    async setStatus(id, status) {
      if (!ISSUER_STATUSES.includes(status))
        throw new TypeError(`unknown issuer status ${JSON.stringify(status)}`);
      const [row] = await db
        .update(issuers)
        .set({ status, updatedAt: clock.now() })
        .where(eq(issuers.id, id))
        .returning();
      if (!row) throw new IssuerNotFoundError(id);
      return row;
    },

    async setCrlShards(id, shards) {
      if (!Number.isInteger(shards) || shards < 1 || shards > 65536) {
        throw new TypeError('crlShards must be an integer from 1 to 65536');
      }
      const current = await repository.get(id);
      if (!current) throw new IssuerNotFoundError(id);
      if (current.crlShards === shards) return current;
      const [row] = await db
        .update(issuers)
        .set({ crlShards: shards, updatedAt: clock.now() })
        .where(eq(issuers.id, id))
        .returning();
      return row!;
    },

    async chain(id) {
      const all = new Map((await repository.list()).map((issuer) => [issuer.id, issuer]));
      const chain: IssuerRecord[] = [];
      let current = all.get(id);
      if (!current) throw new IssuerNotFoundError(id);
      while (current) {
        // A cycle would be a configuration error; stop rather than loop.
        if (chain.includes(current)) throw new Error(`issuer chain of ${id} has a cycle at ${current.id}`);
        chain.push(current);
        current = current.parentId ? all.get(current.parentId) : undefined;
      }
      return chain;
    },
  };
  return repository;
}
