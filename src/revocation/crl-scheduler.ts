import { partitionUnavailable } from '../hsm/unavailable.ts';
import {
  type CrlInfo,
  type CrlIssuer,
  type CrlSchedulerOptions,
  type CrlShard,
  type PublishedCrl,
  realTimers,
} from './crl-ports.ts';
import { makeScopeCrl, type ScopeCrlSettings, shardsOf } from './crl-publisher.ts';
import { type IssuerFacts, readIssuerFacts } from './issuer.ts';

/**
 * Keeps every issuer shard's CRLs fresh (RFC 5280 §5; issues #11, #28). Each shard of an issuer
 * (crl-publisher.ts) is scheduled on its own, as below; with `deltaIntervalMs`, a revocation is
 * published in a delta CRL (RFC 5280 §5.2.4) and the complete CRL only at its half-life:
 *
 * - a new CRL at the half-life of the current one (thisUpdate + (nextUpdate - thisUpdate) / 2),
 *   so relying parties that fetch near nextUpdate always find a newer CRL, with room for retries;
 * - a new CRL within `debounceMs` (default 100 ms) of a revocation: revocations arriving while one
 *   is pending share it, and a stream of revocations never postpones it past that first deadline;
 *   it reuses the entries of the CRL before it (crl-entry-cache.ts) instead of re-encoding them;
 * - a shard that takes no new certificates (its issuer stopped, or the shard count shrank) keeps
 *   publishing until a CRL with thisUpdate after its last certificate's expiry has been published (that CRL is the "one regularly scheduled CRL issued
 *   beyond the revoked certificate's validity period" of RFC 5280 §3.3), then stops;
 * - an entry leaves once a CRL past its certificate's expiry has listed it: each CRL asks for the
 *   entries whose certificate expired no earlier than the previous CRL's thisUpdate (less a margin
 *   for clock skew between nodes and revocations committed while a CRL was being built).
 *
 * Several nodes may run it against one database: numbers are taken atomically from the store,
 * a CRL is saved only if no newer one is stored, and a node whose timer fires after another node
 * published simply waits for the next half-life. Time and timers are injected.
 *
 * A revocation is owed durably (issue #17): it commits with a "CRL owed" row (the owed_work outbox,
 * `OwedCrls`), which this scheduler reads at start, every `owedPollMs`, and when signing becomes
 * possible again after a failure (`signerReady`). The row is claimed under the CRL writer lock
 * before the entries are read and deleted only once the CRL covering it is saved, so neither a
 * crash, a restart, a partition outage nor another node can lose a revocation: the CRL follows
 * within `debounceMs` of the owing, or of signing being possible again, plus the start-up.
 */

export type {
  CrlInfo,
  CrlIssuer,
  CrlIssuerSource,
  CrlSchedulerOptions,
  CrlShard,
  CrlStore,
  CrlWriterLock,
  OwedCrlClaim,
  OwedCrls,
  PublishedCrl,
  RevokedEntrySource,
  Timers,
} from './crl-ports.ts';

export interface IssuerScheduleStatus {
  issuerId: string;
  shard: number;
  nextRunAt: Date | null;
  pendingRevocation: boolean;
  /** A run failed and the issuer's key cannot sign: waiting for `signerReady`. */
  awaitingSigner: boolean;
  consecutiveFailures: number;
  lastPublished: CrlInfo | null;
}

export interface CrlScheduler {
  /** Reads the issuers and schedules each (a missing or stale CRL is made right away). */
  start(): Promise<void>;
  /** Cancels every timer and waits for CRLs being made. */
  stop(): Promise<void>;
  /**
   * A certificate of this issuer shard was revoked (or its reason changed): a CRL within the
   * debounce delay.
   */
  notifyRevocation(issuerId: string, shard?: number): void;
  /**
   * Makes and saves a complete CRL of the shard now, whatever the schedule; undefined if it needs
   * none or the issuer is unknown.
   */
  publishNow(issuerId: string, shard?: number): Promise<CrlInfo | undefined>;
  /** Reads the issuer list again. */
  refresh(): Promise<void>;
  /** Resolves once every CRL run started or queued so far has finished. */
  idle(): Promise<void>;
  status(): IssuerScheduleStatus[];
}

interface IssuerState {
  /** The issuer's id. */
  id: string;
  shard: number;
  scope: CrlShard | undefined;
  issuer: CrlIssuer | undefined;
  facts: IssuerFacts | undefined;
  timer: unknown;
  dueAt: number | undefined;
  /** A revocation was notified and no CRL has started since. */
  dirty: boolean;
  /** The latest time the CRL for the first pending revocation may start (notification + debounce). */
  revocationDeadline: number | undefined;
  /** A run is queued on `chain` and has not started: later triggers join it. */
  queued: boolean;
  running: boolean;
  awaitingSigner: boolean;
  probing: Promise<void>;
  chain: Promise<unknown>;
  failures: number;
  lastPublished: CrlInfo | undefined;
}

const HOUR = 3_600_000;

/** When the current CRL is half-way through its validity. */
export function halfLife(crl: Pick<CrlInfo, 'thisUpdate' | 'nextUpdate'>): number {
  const start = crl.thisUpdate.getTime();
  return start + Math.floor((crl.nextUpdate.getTime() - start) / 2);
}

/**
 * Whether an issuer still needs CRLs: while it issues, and afterwards until a CRL with thisUpdate
 * after its last certificate's expiry exists (RFC 5280 §3.3 asks each entry to appear on one).
 */
export function needsCrl(
  issuer: Pick<CrlShard, 'issuing' | 'lastCertificateExpiry'>,
  current: Pick<CrlInfo, 'thisUpdate'> | null | undefined,
): boolean {
  if (issuer.issuing) return true;
  if (issuer.lastCertificateExpiry === null) return false;
  return !current || current.thisUpdate.getTime() <= issuer.lastCertificateExpiry.getTime();
}

// biome-ignore lint/complexity/noExcessiveLinesPerFunction: a factory: its closures share the per-issuer schedule state; each is short
export function createCrlScheduler(options: CrlSchedulerOptions): CrlScheduler {
  const {
    issuers,
    entries,
    store,
    clock,
    lock,
    owed,
    signerReady,
    nodeId,
    timers = realTimers,
    validityMs = 24 * HOUR,
    debounceMs = 100,
    rescanMs = 60_000,
    retryMs = 5_000,
    maxRetryMs = 5 * 60_000,
    removalMarginMs = HOUR,
    pageSize = 5_000,
    probeMs = 1_000,
    onPublished,
    onError,
  } = options;
  // As often as the debounce (at least every 100 ms): a revocation committed on a node that does not
  // hold the CRL writer lock is found by the one that does within the same bound (issue #28).
  const owedPollMs = options.owedPollMs ?? Math.min(60_000, Math.max(100, debounceMs));
  const deltaIntervalMs = options.deltaIntervalMs;
  const deltas = deltaIntervalMs !== undefined;
  // Configuration mistakes fail here, not at the first tick (STYLE.md).
  for (const [name, value] of Object.entries({
    validityMs,
    debounceMs,
    rescanMs,
    retryMs,
    maxRetryMs,
    removalMarginMs,
    probeMs,
    owedPollMs,
  })) {
    if (!Number.isFinite(value) || value < 0) throw new RangeError(`${name} must be a non-negative number`);
  }
  if (validityMs < 2_000) throw new RangeError('validityMs must be at least 2 seconds');
  if (deltas && !(deltaIntervalMs >= 1_000 && 2 * deltaIntervalMs <= validityMs)) {
    throw new RangeError('deltaIntervalMs must be at least 1 second and at most half of validityMs');
  }
  const settings: ScopeCrlSettings = {
    store,
    entries,
    validityMs,
    deltaValidityMs: 2 * (deltaIntervalMs ?? 0),
    removalMarginMs,
    pageSize,
    nodeId,
    now: () => clock.now(),
    cache: new Map(),
  };

  const states = new Map<string, IssuerState>();
  let started = false;
  let stopped = false;
  let rescanTimer: unknown;
  let rescanning: Promise<void> = Promise.resolve();
  let pollTimer: unknown;
  let polling: Promise<void> = Promise.resolve();

  const now = () => clock.now().getTime();
  const keyOf = (id: string, shard: number) => `${id}/${shard}`;

  function stateOf(id: string, shard: number): IssuerState {
    let state = states.get(keyOf(id, shard));
    if (!state) {
      state = {
        id,
        shard,
        scope: undefined,
        issuer: undefined,
        facts: undefined,
        timer: undefined,
        dueAt: undefined,
        dirty: false,
        revocationDeadline: undefined,
        queued: false,
        running: false,
        awaitingSigner: false,
        probing: Promise.resolve(),
        chain: Promise.resolve(),
        failures: 0,
        lastPublished: undefined,
      };
      states.set(keyOf(id, shard), state);
    }
    return state;
  }

  /** Sets the timer to `at` unless it is already due earlier (or `force`: replace it). */
  function schedule(state: IssuerState, at: number | undefined, { force = false } = {}): void {
    if (stopped) return;
    if (at === undefined) {
      if (force) clear(state);
      return;
    }
    if (!force && state.dueAt !== undefined && state.dueAt <= at) return;
    clear(state);
    state.dueAt = at;
    state.timer = timers.setTimeout(
      () => {
        state.timer = undefined;
        state.dueAt = undefined;
        if (state.awaitingSigner) state.probing = probe(state);
        else void trigger(state);
      },
      Math.max(0, at - now()),
    );
  }

  function clear(state: IssuerState): void {
    if (state.timer !== undefined) timers.clearTimeout(state.timer);
    state.timer = undefined;
    state.dueAt = undefined;
  }

  /** Queues one run per issuer at a time; triggers that arrive before it starts share it. */
  function trigger(state: IssuerState, force = false): Promise<CrlInfo | undefined> {
    if (state.queued && !force) return state.chain.then(() => state.lastPublished);
    state.queued = true;
    const run = state.chain.then(() => {
      state.queued = false;
      return runOnce(state, force);
    });
    state.chain = run.catch(() => undefined);
    return run;
  }

  /** While the key cannot sign, asks every probeMs; runs as soon as it can. */
  async function probe(state: IssuerState): Promise<void> {
    const ready = await isSignerReady(state.id);
    if (stopped || !state.awaitingSigner) return;
    if (ready) {
      state.awaitingSigner = false;
      void trigger(state);
    } else {
      schedule(state, now() + probeMs, { force: true });
    }
  }

  async function isSignerReady(issuerId: string): Promise<boolean> {
    if (!signerReady) return true;
    try {
      return await signerReady(issuerId);
    } catch {
      return false;
    }
  }

  /** When the shard's CRLs are next due: the complete CRL's half-life, or its delta's. */
  function nextDue(full: CrlInfo, delta: CrlInfo | undefined): number {
    const fullDue = halfLife(full);
    if (!deltas) return fullDue;
    return Math.min(fullDue, deltaIsCurrent(delta, full) ? halfLife(delta!) : now());
  }

  /** A delta CRL updates the latest complete CRL only if its number is above the base's. */
  function deltaIsCurrent(delta: CrlInfo | undefined, full: CrlInfo): boolean {
    return delta !== undefined && delta.crlNumber > full.crlNumber && delta.baseCrlNumber === full.crlNumber;
  }

  async function latestDelta(issuerId: string, shard: number): Promise<CrlInfo | undefined> {
    return deltas ? ((await store.getLatestInfo(issuerId, shard, 'delta')) ?? undefined) : undefined;
  }

  async function runOnce(state: IssuerState, force: boolean): Promise<CrlInfo | undefined> {
    if (stopped) return undefined;
    // Revocations notified before this point were committed before it, so the entries read below
    // include them; later ones set `dirty` again and get their own run.
    const wasDirty = state.dirty;
    state.dirty = false;
    state.revocationDeadline = undefined;
    state.running = true;
    let next: number | undefined;
    let published: CrlInfo | undefined;
    try {
      if (!state.issuer) await refresh();
      const { issuer, scope } = state;
      if (!issuer || !scope) return undefined;
      const current = (await store.getLatestInfo(issuer.id, state.shard, 'full')) ?? undefined;
      // Issue #18: an imported CRL is the offline CA's; signing over it would replace a CRL
      // made under ceremony with one this node made on its own.
      if (current?.imported) return undefined;
      if (!needsCrl(scope, current)) {
        // Its last CRL is past every certificate's expiry (RFC 5280 §3.3): owing one is moot.
        await (await owed?.claim(issuer.id, state.shard))?.settle(clock.now());
        return undefined;
      }
      const delta = await latestDelta(issuer.id, state.shard);
      if (!force && !wasDirty && current && now() < nextDue(current, delta)) {
        // Fresh: made by another node, or this timer was early (a restart).
        next = nextDue(current, delta);
        return undefined;
      }
      const outcome = lock
        ? await lock(`crl-writer:${issuer.id}:${state.shard}`, () => publish(state, issuer, force, wasDirty))
        : { acquired: true as const, value: await publish(state, issuer, force, wasDirty) };
      if (!outcome.acquired) {
        // Another node is making this CRL now. Its entries may predate a revocation notified
        // here, so a pending revocation keeps its claim; look again shortly.
        state.dirty ||= wasDirty;
        next = now() + retryMs;
        return undefined;
      }
      state.failures = 0;
      state.awaitingSigner = false;
      published = outcome.value.published;
      next = nextDue(outcome.value.latest, outcome.value.latestDelta);
      return published;
    } catch (error) {
      next = await failed(state, wasDirty, error);
      if (force) throw error;
      return undefined;
    } finally {
      state.running = false;
      // A revocation notified while this run was under way keeps its own deadline.
      if (state.dirty && state.revocationDeadline !== undefined) {
        next = Math.min(next ?? Number.POSITIVE_INFINITY, state.revocationDeadline);
      }
      schedule(state, next, { force: true });
    }
  }

  /** Records a failed run; answers when to try again. */
  async function failed(state: IssuerState, wasDirty: boolean, error: unknown): Promise<number> {
    // Still owed, but on the retry schedule: a deadline already passed must not spin.
    state.dirty ||= wasDirty;
    state.failures += 1;
    let next = now() + Math.min(maxRetryMs, retryMs * 2 ** Math.min(state.failures - 1, 20));
    onError?.(error, state.id);
    await owed?.recordFailure(state.id, state.shard, error).catch((failure) => onError?.(failure, state.id));
    // A key that cannot sign (partition down or sealed) is watched, so that the CRL follows as
    // soon as it can sign again rather than after the retry delay (issue #17).
    if (signerReady && (partitionUnavailable(error) || !(await isSignerReady(state.id)))) {
      state.awaitingSigner = true;
      next = now() + probeMs;
    }
    return next;
  }

  /**
   * Runs under the CRL writer lock. Claims the owed CRL (if any) before reading the entries, makes
   * and saves the CRLs due (a complete CRL; with deltas, a delta CRL updating it), then settles
   * the claim. `published` is undefined when no CRL was needed: what was owed is already covered
   * by a CRL saved since (by another node, or an earlier run).
   */
  async function publish(
    state: IssuerState,
    issuer: CrlIssuer,
    force: boolean,
    wasDirty: boolean,
  ): Promise<{ published: CrlInfo | undefined; latest: CrlInfo; latestDelta: CrlInfo | undefined }> {
    const { shard } = state;
    const claimedAt = clock.now();
    const claim = owed ? await owed.claim(issuer.id, shard) : null;
    // Read again under the lock: another node may have published since the look before it.
    let current = (await store.getLatestInfo(issuer.id, shard, 'full')) ?? undefined;
    let delta = await latestDelta(issuer.id, shard);
    const revoked = claim !== null || (!owed && wasDirty);
    const fullDue = force || !current || now() >= halfLife(current) || (!deltas && revoked);
    const deltaDue = deltas && (fullDue || revoked || !current || now() >= nextDue(current, delta));
    let published: CrlInfo | undefined;
    if (fullDue) {
      // A revocation before the half-life: the current CRL's entries with the new ones spliced in.
      const incremental = !force && revoked && current !== undefined && now() < halfLife(current);
      const saved = await makeAndSave(state, issuer, 'full', current, incremental, delta);
      if (saved) state.lastPublished = saved;
      current = saved ?? (await store.getLatestInfo(issuer.id, shard, 'full')) ?? undefined;
      published = current;
    }
    if (deltaDue && current) {
      const saved = await makeAndSave(state, issuer, 'delta', current, false, delta);
      delta = saved ?? (await latestDelta(issuer.id, shard));
      published ??= delta;
    }
    if (claim && (await claim.settle(claimedAt)) === 'remaining') {
      // Owed again during this run, by a revocation this CRL may not list: another CRL is due,
      // counted from the claim (the owing came after it).
      state.dirty = true;
      state.revocationDeadline = Math.min(
        state.revocationDeadline ?? Number.POSITIVE_INFINITY,
        claimedAt.getTime() + debounceMs,
      );
    }
    if (!current) throw new Error(`no complete CRL for ${issuer.id} shard ${shard} after publishing`);
    return { published, latest: current, latestDelta: delta };
  }

  /**
   * Makes one CRL and saves it; undefined when a CRL with a greater number was saved meanwhile
   * ('stale'): its number was allocated after ours, so its entries were read after the claim and
   * every revocation that led to this run. It stands, and it covers the claim.
   */
  async function makeAndSave(
    state: IssuerState,
    issuer: CrlIssuer,
    kind: 'full' | 'delta',
    current: CrlInfo | undefined,
    incremental = false,
    latestDelta?: CrlInfo,
  ): Promise<PublishedCrl | undefined> {
    state.facts ??= readIssuerFacts(issuer.certificate);
    // A clock stepped back (NTP, a node whose clock is behind the others'): thisUpdate stays at
    // the scope's latest, never before it, or relying parties would take the newer CRL for the
    // older (RFC 5280 §5.1.2.4; the number has its own guard, crl-number.ts). Issue #29.
    const latest = Math.max(current?.thisUpdate.getTime() ?? 0, latestDelta?.thisUpdate.getTime() ?? 0);
    const crl = await makeScopeCrl(settings, {
      issuer,
      facts: state.facts,
      shard: state.shard,
      kind,
      thisUpdate: new Date(Math.max(clock.now().getTime(), latest)),
      current,
      deltas,
      incremental,
    });
    if ((await store.save(crl)) !== 'saved') return undefined;
    onPublished?.(crl);
    return crl;
  }

  async function refresh(): Promise<void> {
    const list = await issuers.listCrlIssuers();
    const seen = new Set<string>();
    for (const issuer of list) {
      for (const scope of shardsOf(issuer)) {
        seen.add(keyOf(issuer.id, scope.shard));
        const state = stateOf(issuer.id, scope.shard);
        if (state.issuer?.certificate !== issuer.certificate) state.facts = undefined;
        state.issuer = issuer;
        state.scope = scope;
        // A first look (or a look after a failure) happens now: runOnce decides whether a CRL is due.
        if (started && state.dueAt === undefined && !state.queued) schedule(state, now());
        // Timers count elapsed time, deadlines are wall-clock: after a suspended machine resumes or
        // the clock steps forward, a timer fires late while the CRL it was for expires. Catch up.
        else if (started && state.dueAt !== undefined && state.dueAt < now() && !state.queued) {
          schedule(state, now(), { force: true });
        }
      }
    }
    for (const [id, state] of states) {
      if (!seen.has(id)) {
        clear(state);
        states.delete(id);
      }
    }
  }

  /**
   * Marks every issuer with an owed CRL: a run within the debounce of the owing (at once when that
   * has passed, e.g. owed before a crash or by a node that died). An issuer with a run under way
   * is left alone: the run claims the row, and finds it remaining if it was owed again.
   */
  async function pollOwed(): Promise<void> {
    if (!owed || stopped) return;
    for (const item of await owed.list()) {
      const state = states.get(keyOf(item.issuerId, item.shard));
      if (!state?.issuer || state.running || state.queued) continue;
      state.dirty = true;
      state.revocationDeadline = Math.min(
        state.revocationDeadline ?? Number.POSITIVE_INFINITY,
        item.owedSince.getTime() + debounceMs,
      );
      schedule(state, state.revocationDeadline);
    }
  }

  function schedulePoll(): void {
    if (stopped || !owed) return;
    pollTimer = timers.setTimeout(() => {
      polling = pollOwed()
        .catch((error) => onError?.(error, '*'))
        .finally(schedulePoll);
    }, owedPollMs);
  }

  function scheduleRescan(): void {
    if (stopped) return;
    rescanTimer = timers.setTimeout(() => {
      rescanning = refresh()
        .catch((error) => onError?.(error, '*'))
        .finally(scheduleRescan);
    }, rescanMs);
  }

  return {
    async start() {
      if (started) return;
      started = true;
      await refresh();
      // What was owed before this start (a crash, a restart) is found now, not at the first poll.
      await pollOwed();
      scheduleRescan();
      schedulePoll();
    },

    async stop() {
      stopped = true;
      if (rescanTimer !== undefined) timers.clearTimeout(rescanTimer);
      if (pollTimer !== undefined) timers.clearTimeout(pollTimer);
      for (const state of states.values()) clear(state);
      // A look at the outbox under way ends before the database may close.
      await polling.catch(() => {});
      await Promise.all([...states.values()].flatMap((state) => [state.chain, state.probing]));
    },

    notifyRevocation(issuerId, shard = 0) {
      if (stopped) return;
      const state = stateOf(issuerId, shard);
      state.dirty = true;
      // Debounced from the first notification: later ones share its CRL and never postpone it.
      state.revocationDeadline ??= now() + debounceMs;
      schedule(state, state.revocationDeadline);
    },

    async publishNow(issuerId, shard = 0) {
      const state = stateOf(issuerId, shard);
      state.dirty = true;
      return trigger(state, true);
    },

    refresh,

    async idle() {
      await rescanning;
      await polling;
      await Promise.all([...states.values()].map((state) => state.probing));
      // A run may queue another (a revocation during it): wait until nothing is queued.
      for (;;) {
        const chains = [...states.values()].map((state) => state.chain);
        await Promise.all(chains);
        if ([...states.values()].every((state, i) => state.chain === chains[i] && !state.queued)) return;
      }
    },

    status() {
      return [...states.values()].map((state) => ({
        issuerId: state.id,
        shard: state.shard,
        nextRunAt: state.dueAt === undefined ? null : new Date(state.dueAt),
        pendingRevocation: state.dirty,
        awaitingSigner: state.awaitingSigner,
        consecutiveFailures: state.failures,
        lastPublished: state.lastPublished
          ? {
              crlNumber: state.lastPublished.crlNumber,
              thisUpdate: state.lastPublished.thisUpdate,
              nextUpdate: state.lastPublished.nextUpdate,
            }
          : null,
      }));
    },
  };
}
