import type { Logger } from 'pino';
import type { AuditRepository } from '../db/audit.repository.ts';
import type { Clock } from '../lib/clock.ts';

/** One failed authentication (or refused proof of key possession) from a client. */
export interface AuthFailure {
  /** addressKey() of the client. */
  client: string;
  /** The audit action of the endpoint, e.g. `policy.list`, `certificate.revoke_by_key`. */
  action: string;
  /** The refusal's code, e.g. `auth.credential_invalid`. */
  code: string;
  requestId: string | undefined;
}

export interface FailedAuthAudit {
  /**
   * Counts one failure. The first failure of a client for which no row was written within the
   * interval is written at once; later ones are counted into the next row of that client.
   */
  record(failure: AuthFailure): Promise<void>;
  /** Writes every counted failure that no row holds yet (at shutdown). */
  flush(): Promise<void>;
}

export interface FailedAuthAuditOptions {
  audit: Pick<AuditRepository, 'append'>;
  clock: Clock;
  /** At most one row per client per interval (config audit.failedAuthInterval). Default one minute. */
  intervalMs?: number;
  /** Where a failure to write a row is told. */
  logger?: Logger;
  /** Clients remembered at once; beyond, the least recently seen is written out and forgotten. */
  maxTracked?: number;
}

interface Pending {
  count: number;
  firstAt: Date;
  lastAt: Date;
  first: AuthFailure;
  actions: Map<string, number>;
  codes: Map<string, number>;
}

interface ClientState {
  /** When the last row of this client was written (ms of the clock). */
  lastRowMs: number | undefined;
  pending: Pending | undefined;
}

/**
 * Aggregates failed authentication in the audit log (issue #19): each failure used to append a
 * row, so a flood of bad credentials grew the log without bound (2,748 rows in 20 s). Now a client
 * address gets at most one row per interval, carrying the number of failures it stands for
 * (`details.count`) and, when it stands for several, when they began and ended and their codes and
 * actions by count. Counts not yet written are written when the interval has passed: at the
 * client's next failure, at any failure once a sweep is due, from a timer, and at `flush()`.
 * A request whose failure writes a row waits for that write, as every refusal did before.
 */
// biome-ignore lint/complexity/noExcessiveLinesPerFunction: a factory: its closures share the per-address counters; each is short
export function createFailedAuthAudit({
  audit,
  clock,
  intervalMs = 60_000,
  logger,
  maxTracked = 100_000,
}: FailedAuthAuditOptions): FailedAuthAudit {
  if (!audit || !clock) throw new Error('createFailedAuthAudit: audit and clock are required');
  if (!Number.isFinite(intervalMs) || intervalMs <= 0)
    throw new Error(`createFailedAuthAudit: intervalMs must be positive, got ${intervalMs}`);
  if (!Number.isInteger(maxTracked) || maxTracked < 1)
    throw new Error('createFailedAuthAudit: maxTracked must be a positive integer');

  // Least recently seen first (a Map keeps insertion order; a seen client is re-inserted).
  const clients = new Map<string, ClientState>();
  let nextSweepMs = Number.NEGATIVE_INFINITY;
  let timer: NodeJS.Timeout | undefined;

  /** Takes the client's pending failures and appends them as one row. */
  async function write(client: string, state: ClientState, nowMs: number): Promise<void> {
    const pending = state.pending;
    state.pending = undefined;
    state.lastRowMs = nowMs;
    if (!pending) return;
    const several = pending.count > 1;
    try {
      await audit.append({
        at: new Date(nowMs),
        actor: 'anonymous',
        action: pending.first.action,
        decision: 'denied',
        details: {
          ...(pending.first.requestId ? { requestId: pending.first.requestId } : {}),
          code: pending.first.code,
          client,
          count: pending.count,
          ...(several
            ? {
                firstAt: pending.firstAt.toISOString(),
                lastAt: pending.lastAt.toISOString(),
                codes: Object.fromEntries(pending.codes),
                actions: Object.fromEntries(pending.actions),
              }
            : {}),
        },
      });
    } catch (error) {
      logger?.error(
        { err: error, client, count: pending.count },
        'could not record failed authentication in the audit log',
      );
    }
  }

  /** Writes the counts of every client whose interval has passed, and forgets idle clients. */
  async function sweep(nowMs: number): Promise<void> {
    nextSweepMs = nowMs + intervalMs;
    const due: Promise<void>[] = [];
    for (const [client, state] of clients) {
      const elapsed = state.lastRowMs === undefined || nowMs - state.lastRowMs >= intervalMs;
      if (!elapsed) continue;
      if (state.pending) due.push(write(client, state, nowMs));
      else clients.delete(client);
    }
    await Promise.all(due);
  }

  function schedule(): void {
    if (timer) return;
    timer = setTimeout(() => {
      timer = undefined;
      void sweep(clock.now().getTime()).then(() => {
        if ([...clients.values()].some((state) => state.pending)) schedule();
      });
    }, intervalMs);
    timer.unref();
  }

  return {
    async record(failure) {
      const now = clock.now();
      const nowMs = now.getTime();
      const state = clients.get(failure.client) ?? { lastRowMs: undefined, pending: undefined };
      clients.delete(failure.client);
      clients.set(failure.client, state);
      state.pending ??= {
        count: 0,
        firstAt: now,
        lastAt: now,
        first: failure,
        actions: new Map(),
        codes: new Map(),
      };
      const pending = state.pending;
      pending.count += 1;
      pending.lastAt = now;
      pending.actions.set(failure.action, (pending.actions.get(failure.action) ?? 0) + 1);
      pending.codes.set(failure.code, (pending.codes.get(failure.code) ?? 0) + 1);

      const writes: Promise<void>[] = [];
      if (state.lastRowMs === undefined || nowMs - state.lastRowMs >= intervalMs) {
        writes.push(write(failure.client, state, nowMs));
      } else {
        schedule();
      }
      if (clients.size > maxTracked) {
        const [oldest, oldestState] = clients.entries().next().value as [string, ClientState];
        clients.delete(oldest);
        writes.push(write(oldest, oldestState, nowMs));
      }
      if (nowMs >= nextSweepMs) writes.push(sweep(nowMs));
      await Promise.all(writes);
    },

    async flush() {
      if (timer) clearTimeout(timer);
      timer = undefined;
      const nowMs = clock.now().getTime();
      await Promise.all(
        [...clients]
          .filter(([, state]) => state.pending)
          .map(([client, state]) => write(client, state, nowMs)),
      );
    },
  };
}
