import type { CrlEntry } from '../../../src/revocation/crl-builder.ts';
import type {
  CrlStore,
  OwedCrls,
  PublishedCrl,
  RevokedEntrySource,
  Timers,
} from '../../../src/revocation/crl-scheduler.ts';
import type { RevocationReason } from '../../../src/revocation/reasons.ts';

/** Timers driven by the test: `advance` moves the clock and fires what is due, in order. */
export function manualTimers(clock: { now(): Date; advance(ms: number): void }) {
  let nextId = 1;
  const pending = new Map<number, { at: number; callback: () => void }>();
  const timers: Timers & {
    advance(ms: number): void;
    jumpClock(ms: number): void;
    pendingAt(): Date[];
  } = {
    setTimeout(callback, ms) {
      const id = nextId++;
      pending.set(id, { at: clock.now().getTime() + Math.max(0, ms), callback });
      return id;
    },
    clearTimeout(handle) {
      pending.delete(handle as number);
    },
    /** Fires due timers one at a time, moving the clock to each one's time. */
    advance(ms) {
      const end = clock.now().getTime() + ms;
      for (;;) {
        let first: [number, { at: number; callback: () => void }] | undefined;
        for (const entry of pending) if (!first || entry[1].at < first[1].at) first = entry;
        if (!first || first[1].at > end) break;
        pending.delete(first[0]);
        clock.advance(first[1].at - clock.now().getTime());
        first[1].callback();
      }
      clock.advance(end - clock.now().getTime());
    },
    /**
     * The wall clock moves and no time passes for timers, as when a suspended machine resumes or
     * the clock is stepped: real timers count elapsed (monotonic) time, so none becomes due.
     */
    jumpClock(ms) {
      clock.advance(ms);
      for (const entry of pending.values()) entry.at += ms;
    },
    pendingAt: () =>
      [...pending.values()].map((p) => new Date(p.at)).sort((a, b) => a.getTime() - b.getTime()),
  };
  return timers;
}

/** The crls + crl_numbers tables in memory, with snapshot/restore to play a database restored from backup. */
export function memoryCrlStore() {
  let latest = new Map<string, PublishedCrl>();
  let lastNumbers = new Map<string, bigint>();
  const saved: PublishedCrl[] = [];
  const key = (issuerId: string, shard: number, kind = 'full') => `${issuerId}/${shard}/${kind}`;
  const numberKey = (issuerId: string, shard: number) => `${issuerId}/${shard}`;
  const store: CrlStore & {
    saved: PublishedCrl[];
    getLatest(issuerId: string, shard: number, kind?: 'full' | 'delta'): Promise<PublishedCrl | null>;
    snapshot(): () => void;
  } = {
    saved,
    /** max(last + 1, atLeast), as src/db does in one upsert. */
    async allocateNumber(issuerId, shard, { atLeast = 1n } = {}) {
      const last = lastNumbers.get(numberKey(issuerId, shard));
      const next = last === undefined || atLeast > last ? atLeast : last + 1n;
      lastNumbers.set(numberKey(issuerId, shard), next);
      return next;
    },
    async save(crl) {
      const existing = latest.get(key(crl.issuerId, crl.shard, crl.kind));
      if (existing && existing.crlNumber >= crl.crlNumber) return 'stale';
      latest.set(key(crl.issuerId, crl.shard, crl.kind), crl);
      saved.push(crl);
      return 'saved';
    },
    async getLatest(issuerId, shard, kind = 'full') {
      return latest.get(key(issuerId, shard, kind)) ?? null;
    },
    async getLatestInfo(issuerId, shard, kind = 'full') {
      return latest.get(key(issuerId, shard, kind)) ?? null;
    },
    /** Returns a function that puts the tables back as they are now. */
    snapshot() {
      const copyLatest = new Map(latest);
      const copyNumbers = new Map(lastNumbers);
      return () => {
        latest = new Map(copyLatest);
        lastNumbers = new Map(copyNumbers);
      };
    },
  };
  return store;
}

export interface MemoryCertificate {
  serial: string;
  issuerId: string;
  notAfter: Date;
  status: 'pending' | 'good' | 'revoked' | 'failed';
  revokedAt: Date | null;
  revocationReason: RevocationReason | null;
  invalidityDate: Date | null;
  /** Default 0. */
  crlShard?: number;
}

/** The certificates repository's revocation surface in memory (same rules as src/db). */
export function memoryCertificates(initial: MemoryCertificate[] = []) {
  const rows = new Map(initial.map((row) => [row.serial, { ...row }]));
  const repository: RevokedEntrySource & {
    rows: typeof rows;
    add(row: Partial<MemoryCertificate> & { serial: string; issuerId: string; notAfter: Date }): void;
    findStatus(serial: string): Promise<MemoryCertificate | null>;
    revoke(
      serial: string,
      request: { reason: RevocationReason; revokedAt: Date; invalidityDate?: Date | null },
    ): Promise<{
      outcome: 'revoked' | 'unchanged' | 'reason_updated';
      revocation: {
        serial: string;
        issuerId: string;
        revokedAt: Date;
        reason: RevocationReason;
        invalidityDate: Date | null;
      };
    }>;
  } = {
    rows,
    add(row) {
      rows.set(row.serial, {
        status: 'good',
        revokedAt: null,
        revocationReason: null,
        invalidityDate: null,
        ...row,
      });
    },
    async findStatus(serial) {
      return rows.get(serial) ?? null;
    },
    async revoke(serial, request) {
      const row = rows.get(serial);
      if (!row || row.status === 'failed') {
        throw Object.assign(new Error(`no certificate with serial ${serial}`), {
          code: 'certificate.not_found',
        });
      }
      if (row.status === 'revoked') {
        const existing = {
          serial,
          issuerId: row.issuerId,
          revokedAt: row.revokedAt!,
          reason: row.revocationReason!,
          invalidityDate: row.invalidityDate,
        };
        if (request.reason !== 'keyCompromise' || existing.reason === 'keyCompromise') {
          return { outcome: 'unchanged', revocation: existing };
        }
        row.revocationReason = 'keyCompromise';
        row.invalidityDate = request.invalidityDate ?? row.invalidityDate;
        return {
          outcome: 'reason_updated',
          revocation: { ...existing, reason: 'keyCompromise', invalidityDate: row.invalidityDate },
        };
      }
      row.status = 'revoked';
      row.revokedAt = request.revokedAt;
      row.revocationReason = request.reason;
      row.invalidityDate = request.invalidityDate ?? null;
      return {
        outcome: 'revoked',
        revocation: {
          serial,
          issuerId: row.issuerId,
          revokedAt: request.revokedAt,
          reason: request.reason,
          invalidityDate: row.invalidityDate,
        },
      };
    },
    async *streamRevocationChangesSince(issuerId, since, options = {}) {
      const selected = [...rows.values()]
        .filter((row) => row.issuerId === issuerId && row.status === 'revoked')
        .filter((row) => (row.crlShard ?? 0) === (options.shard ?? 0))
        .filter((row) => row.revokedAt!.getTime() > since.getTime())
        .sort((a, b) => a.revokedAt!.getTime() - b.revokedAt!.getTime());
      for (const row of selected) {
        yield {
          serial: row.serial,
          revokedAt: row.revokedAt!,
          reason: row.revocationReason!,
          invalidityDate: row.invalidityDate,
        };
      }
    },
    async *streamRevokedForCrl(issuerId, options = {}) {
      const selected = [...rows.values()]
        .filter((row) => row.issuerId === issuerId && row.status === 'revoked')
        .filter((row) => (row.crlShard ?? 0) === (options.shard ?? 0))
        .filter((row) => !options.expiredBefore || row.notAfter.getTime() >= options.expiredBefore.getTime())
        .sort((a, b) => (a.serial < b.serial ? -1 : 1));
      for (const row of selected) {
        const entry: CrlEntry = {
          serial: row.serial,
          revokedAt: row.revokedAt!,
          reason: row.revocationReason!,
          invalidityDate: row.invalidityDate,
        };
        yield entry;
      }
    },
  };
  return repository;
}

/**
 * The owed_work outbox (kind crl) in memory, with the same rules as src/db: owing again gives a
 * new version and keeps the first owing's time; settle deletes only the claimed version.
 */
export function memoryOwedCrls(clock: { now(): Date }) {
  let nextVersion = 1n;
  const rows = new Map<string, { issuerId: string; shard: number; version: bigint; owedSince: Date }>();
  const failures: { issuerId: string; error: unknown }[] = [];
  const key = (issuerId: string, shard: number) => `${issuerId}/${shard}`;
  const owed: OwedCrls & {
    rows: typeof rows;
    failures: typeof failures;
    owe(issuerId: string, shard?: number): void;
  } = {
    rows,
    failures,
    owe(issuerId, shard = 0) {
      const existing = rows.get(key(issuerId, shard));
      if (existing) existing.version = nextVersion++;
      else
        rows.set(key(issuerId, shard), { issuerId, shard, version: nextVersion++, owedSince: clock.now() });
    },
    async list() {
      return [...rows.values()].map(({ issuerId, shard, owedSince }) => ({ issuerId, shard, owedSince }));
    },
    async claim(issuerId, shard) {
      const row = rows.get(key(issuerId, shard));
      if (!row) return null;
      const { version } = row;
      return {
        owedSince: row.owedSince,
        async settle(claimedAt) {
          const now = rows.get(key(issuerId, shard));
          if (now?.version === version) {
            rows.delete(key(issuerId, shard));
            return 'settled';
          }
          if (!now) return 'settled';
          if (claimedAt > now.owedSince) now.owedSince = claimedAt;
          return 'remaining';
        },
      };
    },
    async recordFailure(issuerId, _shard, error) {
      if (rows.has(key(issuerId, _shard))) failures.push({ issuerId, error });
    },
  };
  return owed;
}
