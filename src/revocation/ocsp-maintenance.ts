import type { Clock } from '../lib/clock.ts';
import type { OcspResponder } from './ocsp-responder.ts';

/**
 * The background work of pre-signed OCSP responses (issue #27), once per database at a time
 * (an advisory lock), on a timer and when told:
 *
 * - what revocations owe: each revoked serial's stored responses signed again (the owed_work
 *   outbox, kind `ocsp`, recorded in the revocation's transaction, so a crash loses nothing: the
 *   next start, or another node's next round, does it);
 * - with `preSign: all`, a response for every valid certificate that has none, and a new one for
 *   every stored response past its refresh point, so that even the first request is a hit.
 */

export interface OwedOcsp {
  /** Serials whose responses are owed, oldest first. */
  list(): Promise<string[]>;
  /** Null when nothing is owed for it any more; else settle() after the work. */
  claim(serial: string): Promise<{ settle(claimedAt: Date): Promise<unknown> } | null>;
  recordFailure(serial: string, error: unknown): Promise<void>;
}

export interface PreSignSource {
  /** CertIDs (DER) of valid certificates without a stored response, at most `limit`. */
  unsigned(now: Date, limit: number): Promise<Uint8Array[]>;
  /** CertIDs of stored responses produced before `before` (or stale), at most `limit`. */
  due(before: Date, now: Date, limit: number): Promise<Uint8Array[]>;
}

export interface OcspMaintenanceOptions {
  responder: Pick<OcspResponder, 'resign' | 'prepare'>;
  owed: OwedOcsp;
  clock: Clock;
  lock: <T>(name: string, fn: () => Promise<T>) => Promise<{ acquired: boolean }>;
  /** `ocsp.preSign: all`: also sign ahead for every valid certificate. */
  preSignAll?: PreSignSource;
  /** ocsp.validity: responses are refreshed past 40% of it. */
  validityMs: number;
  /** Between rounds. Default 30 s. */
  intervalMs?: number;
  /** Responses signed ahead per round. Default 500. */
  batch?: number;
  onError?: (error: unknown, serial?: string) => void;
}

export interface OcspMaintenance {
  start(): Promise<void>;
  /** Runs a round soon (after a revocation). */
  kick(): void;
  /** One round now; resolves when it is done (tests, start). */
  runOnce(): Promise<void>;
  stop(): Promise<void>;
}

export function createOcspMaintenance(options: OcspMaintenanceOptions): OcspMaintenance {
  const { responder, owed, clock, onError } = options;
  const intervalMs = options.intervalMs ?? 30_000;
  const batch = options.batch ?? 500;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> | undefined;
  let again = false;
  let stopped = false;

  async function drainOwed(): Promise<void> {
    for (const serial of await owed.list()) {
      if (stopped) return;
      const claimedAt = clock.now();
      const claim = await owed.claim(serial);
      if (!claim) continue;
      try {
        await responder.resign(serial);
        await claim.settle(claimedAt);
      } catch (error) {
        onError?.(error, serial);
        await owed.recordFailure(serial, error).catch(() => {});
      }
    }
  }

  async function preSign(source: PreSignSource): Promise<void> {
    const now = clock.now();
    const before = new Date(now.getTime() - options.validityMs * 0.4);
    const certIds = [...(await source.due(before, now, batch)), ...(await source.unsigned(now, batch))];
    for (const certId of certIds) {
      if (stopped) return;
      await responder.prepare(certId).catch((error) => onError?.(error));
    }
  }

  async function round(): Promise<void> {
    await options.lock('ocsp-maintenance', async () => {
      await drainOwed();
      if (options.preSignAll) await preSign(options.preSignAll);
    });
  }

  function runOnce(): Promise<void> {
    if (running) {
      again = true;
      return running;
    }
    running = (async () => {
      do {
        again = false;
        try {
          await round();
        } catch (error) {
          onError?.(error);
        }
      } while (again && !stopped);
    })().finally(() => {
      running = undefined;
    });
    return running;
  }

  return {
    async start() {
      await runOnce();
      const tick = () => {
        if (stopped) return;
        void runOnce().finally(() => {
          if (!stopped) timer = setTimeout(tick, intervalMs).unref();
        });
      };
      timer = setTimeout(tick, intervalMs).unref();
    },
    kick() {
      if (!stopped) void runOnce();
    },
    runOnce,
    async stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      await running;
    },
  };
}
