import { partitionUnavailable } from '../hsm/unavailable.ts';
import type { Clock } from '../lib/clock.ts';
import { wholeSeconds } from '../lib/clock.ts';
import { type BuiltCrl, buildCrl } from './crl-builder.ts';
import { timeDerivedCrlNumber } from './crl-number.ts';
import {
  type CrlInfo,
  type CrlIssuer,
  type CrlIssuerSource,
  type CrlStore,
  type CrlWriterLock,
  type OwedCrls,
  type PublishedCrl,
  type RevokedEntrySource,
  realTimers,
  type Timers,
} from './crl-ports.ts';
import { type IssuerFacts, readIssuerFacts } from './issuer.ts';

/**
 * Keeps every issuer's full CRL fresh (RFC 5280 §5; issue #11):
 *
 * - a new CRL at the half-life of the current one (thisUpdate + (nextUpdate - thisUpdate) / 2),
 *   so relying parties that fetch near nextUpdate always find a newer CRL, with room for retries;
 * - a new CRL within `debounceMs` (default 5 s) of a revocation: revocations arriving while one is
 *   pending share it, and a stream of revocations never postpones it past that first deadline;
 * - an issuer that no longer issues keeps publishing until a CRL with thisUpdate after its last
 *   certificate's expiry has been published (that CRL is the "one regularly scheduled CRL issued
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
  CrlStore,
  CrlWriterLock,
  OwedCrlClaim,
  OwedCrls,
  PublishedCrl,
  RevokedEntrySource,
  Timers,
} from './crl-ports.ts';

export interface CrlSchedulerOptions {
  issuers: CrlIssuerSource;
  entries: RevokedEntrySource;
  store: CrlStore;
  clock: Clock;
  /** Without it, nodes may both sign a CRL now and then; the store keeps the newer. */
  lock?: CrlWriterLock;
  /** CRLs owed by committed revocations; without it, only notifyRevocation says one is owed. */
  owed?: OwedCrls;
  /**
   * How often owed CRLs are looked for (owed on other nodes, or by a process that died).
   * Default: the debounce, kept between 1 s and 60 s.
   */
  owedPollMs?: number;
  /**
   * Whether the issuer's key can sign now (its partition answers, unsealed). After a failed run it
   * is asked every `probeMs`, and the CRL is made as soon as it answers true, instead of waiting
   * out the retry delay.
   */
  signerReady?: (issuerId: string) => Promise<boolean>;
  /** Default 1 s. */
  probeMs?: number;
  /** Recorded as generatedBy. */
  nodeId?: string;
  timers?: Timers;
  /** nextUpdate - thisUpdate. Default 24 h (signet.yaml crl.validity). */
  validityMs?: number;
  /** Longest wait between a revocation and the CRL that lists it. Default 5 s (crl.debounce). */
  debounceMs?: number;
  /** How often the issuer list is read again (new issuers, issuers that stopped). Default 60 s. */
  rescanMs?: number;
  /** First retry delay after a failure, doubled up to `maxRetryMs`. Defaults 5 s and 5 min. */
  retryMs?: number;
  maxRetryMs?: number;
  /** How long entries stay past the point RFC 5280 §3.3 allows removing them. Default 1 h. */
  removalMarginMs?: number;
  pageSize?: number;
  onPublished?: (crl: PublishedCrl) => void;
  /** Failures are retried; this hook logs them (never with key material: there is none here). */
  onError?: (error: unknown, issuerId: string) => void;
}

export interface IssuerScheduleStatus {
  issuerId: string;
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
  /** A certificate of this issuer was revoked (or its reason changed): a CRL within the debounce delay. */
  notifyRevocation(issuerId: string): void;
  /** Makes and saves a CRL now, whatever the schedule; undefined if the issuer needs none or is unknown. */
  publishNow(issuerId: string): Promise<CrlInfo | undefined>;
  /** Reads the issuer list again. */
  refresh(): Promise<void>;
  /** Resolves once every CRL run started or queued so far has finished. */
  idle(): Promise<void>;
  status(): IssuerScheduleStatus[];
}

interface IssuerState {
  id: string;
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
  issuer: Pick<CrlIssuer, 'issuing' | 'lastCertificateExpiry'>,
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
    debounceMs = 5_000,
    rescanMs = 60_000,
    retryMs = 5_000,
    maxRetryMs = 5 * 60_000,
    removalMarginMs = HOUR,
    pageSize = 5_000,
    probeMs = 1_000,
    onPublished,
    onError,
  } = options;
  const owedPollMs = options.owedPollMs ?? Math.min(60_000, Math.max(1_000, debounceMs));
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

  const states = new Map<string, IssuerState>();
  let started = false;
  let stopped = false;
  let rescanTimer: unknown;
  let rescanning: Promise<void> = Promise.resolve();
  let pollTimer: unknown;
  let polling: Promise<void> = Promise.resolve();

  const SHARD = 0;
  const now = () => clock.now().getTime();

  function stateOf(id: string): IssuerState {
    let state = states.get(id);
    if (!state) {
      state = {
        id,
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
      states.set(id, state);
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
      const issuer = state.issuer;
      if (!issuer) return undefined;
      const current = (await store.getLatestInfo(issuer.id, SHARD, 'full')) ?? undefined;
      // Issue #18: an imported CRL is the offline CA's; signing over it would replace a CRL
      // made under ceremony with one this node made on its own.
      if (current?.imported) {
        next = undefined;
        return undefined;
      }
      if (!needsCrl(issuer, current)) {
        // Its last CRL is past every certificate's expiry (RFC 5280 §3.3): owing one is moot.
        await (await owed?.claim(issuer.id, SHARD))?.settle(clock.now());
        next = undefined;
        return undefined;
      }
      if (!force && !wasDirty && current && now() < halfLife(current)) {
        // Fresh: made by another node, or this timer was early (a restart).
        next = halfLife(current);
        return undefined;
      }
      const outcome = lock
        ? await lock(`crl-writer:${issuer.id}`, () => publish(state, issuer, force))
        : { acquired: true as const, value: await publish(state, issuer, force) };
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
      next = halfLife(outcome.value.latest);
      return published;
    } catch (error) {
      // Still owed, but on the retry schedule: a deadline already passed must not spin.
      state.dirty ||= wasDirty;
      state.failures += 1;
      next = now() + Math.min(maxRetryMs, retryMs * 2 ** Math.min(state.failures - 1, 20));
      onError?.(error, state.id);
      await owed?.recordFailure(state.id, SHARD, error).catch((failure) => onError?.(failure, state.id));
      // A key that cannot sign (partition down or sealed) is watched, so that the CRL follows as
      // soon as it can sign again rather than after the retry delay (issue #17).
      if (signerReady && (partitionUnavailable(error) || !(await isSignerReady(state.id)))) {
        state.awaitingSigner = true;
        next = now() + probeMs;
      }
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

  /**
   * Runs under the CRL writer lock. Claims the owed CRL (if any) before reading the entries, makes
   * and saves the CRL, then settles the claim. `published` is undefined when no CRL was needed:
   * what was owed is already covered by a CRL saved since (by another node, or an earlier run).
   */
  async function publish(
    state: IssuerState,
    issuer: CrlIssuer,
    force: boolean,
  ): Promise<{ published: CrlInfo | undefined; latest: CrlInfo }> {
    const claimedAt = clock.now();
    const claim = owed ? await owed.claim(issuer.id, SHARD) : null;
    // Read again under the lock: another node may have published since the look before it.
    const current = (await store.getLatestInfo(issuer.id, SHARD, 'full')) ?? undefined;
    if (owed && !claim && !force && current && now() < halfLife(current)) {
      return { published: undefined, latest: current };
    }
    const crl = await makeCrl(state, issuer, current);
    // 'stale' means a CRL with a greater number was saved meanwhile: its number was allocated
    // after ours, so its entries were read after the claim and every revocation that led to this
    // run. It stands, and it covers the claim.
    const saved = (await store.save(crl)) === 'saved';
    if (saved) {
      state.lastPublished = crl;
      onPublished?.(crl);
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
    const latest = saved ? crl : ((await store.getLatestInfo(issuer.id, SHARD, 'full')) ?? crl);
    return { published: latest, latest };
  }

  async function makeCrl(
    state: IssuerState,
    issuer: CrlIssuer,
    current: CrlInfo | undefined,
  ): Promise<PublishedCrl> {
    state.facts ??= readIssuerFacts(issuer.certificate);
    const thisUpdate = wholeSeconds(clock.now());
    const crlNumber = await store.allocateNumber(issuer.id, SHARD, {
      atLeast: timeDerivedCrlNumber(thisUpdate),
    });
    if (current && crlNumber <= current.crlNumber) {
      throw new Error(
        `the CRL number store answered ${crlNumber}, not above the current CRL's ${current.crlNumber}`,
      );
    }
    const expiredBefore = current ? new Date(current.thisUpdate.getTime() - removalMarginMs) : undefined;
    const built: BuiltCrl = await buildCrl({
      issuer: state.facts,
      signer: issuer.signer,
      number: crlNumber,
      thisUpdate,
      nextUpdate: new Date(thisUpdate.getTime() + validityMs),
      entries: entries.streamRevokedForCrl(issuer.id, {
        shard: SHARD,
        pageSize,
        ...(expiredBefore ? { expiredBefore } : {}),
      }),
      ...(issuer.issuingDistributionPoint
        ? { issuingDistributionPoint: issuer.issuingDistributionPoint }
        : {}),
    });
    const crl: PublishedCrl = {
      issuerId: issuer.id,
      shard: SHARD,
      kind: 'full',
      crlNumber: built.number,
      thisUpdate: built.thisUpdate,
      nextUpdate: built.nextUpdate,
      der: built.der,
      sha256: built.sha256,
      generatedAt: clock.now(),
      generatedBy: nodeId ?? null,
    };
    return crl;
  }

  async function refresh(): Promise<void> {
    const list = await issuers.listCrlIssuers();
    const seen = new Set<string>();
    for (const issuer of list) {
      seen.add(issuer.id);
      const state = stateOf(issuer.id);
      if (state.issuer?.certificate !== issuer.certificate) state.facts = undefined;
      state.issuer = issuer;
      // A first look (or a look after a failure) happens now: runOnce decides whether a CRL is due.
      if (started && state.dueAt === undefined && !state.queued) schedule(state, now());
      // Timers count elapsed time, deadlines are wall-clock: after a suspended machine resumes or
      // the clock steps forward, a timer fires late while the CRL it was for expires. Catch up.
      else if (started && state.dueAt !== undefined && state.dueAt < now() && !state.queued) {
        schedule(state, now(), { force: true });
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
      // TODO(#28): only shard 0 is published until sharded CRLs are made; others stay owed.
      if (item.shard !== SHARD) continue;
      const state = states.get(item.issuerId);
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

    notifyRevocation(issuerId) {
      if (stopped) return;
      const state = stateOf(issuerId);
      state.dirty = true;
      // Debounced from the first notification: later ones share its CRL and never postpone it.
      state.revocationDeadline ??= now() + debounceMs;
      schedule(state, state.revocationDeadline);
    },

    async publishNow(issuerId) {
      const state = stateOf(issuerId);
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
