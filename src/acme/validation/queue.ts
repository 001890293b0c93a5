/**
 * Validations run in the background with bounded concurrency (acme.validation.concurrency): a
 * challenge POST enqueues its id and answers at once (RFC 8555 §7.5.1: the client polls).
 */
export interface ValidationQueue {
  /** False when the queue is full (the caller answers rateLimited). */
  enqueue(id: string): boolean;
  /** Waiting plus running. */
  readonly size: number;
  /** Resolves when nothing is waiting or running. */
  idle(): Promise<void>;
  /** Stops taking new work and waits for the running validations. */
  close(): Promise<void>;
}

export function createValidationQueue({
  concurrency,
  maxQueued = 10_000,
  run,
  onError,
}: {
  concurrency: number;
  maxQueued?: number;
  run: (id: string) => Promise<void>;
  onError?: (error: unknown, id: string) => void;
}): ValidationQueue {
  if (!Number.isInteger(concurrency) || concurrency < 1)
    throw new Error('createValidationQueue: concurrency must be a positive integer');
  const waiting: string[] = [];
  const queued = new Set<string>();
  let running = 0;
  let closed = false;
  let idleWaiters: (() => void)[] = [];

  const settleIdle = () => {
    if (running > 0 || waiting.length > 0) return;
    const waiters = idleWaiters;
    idleWaiters = [];
    for (const resolve of waiters) resolve();
  };

  const pump = () => {
    while (!closed && running < concurrency && waiting.length > 0) {
      const id = waiting.shift()!;
      running++;
      run(id)
        .catch((error) => onError?.(error, id))
        .finally(() => {
          running--;
          queued.delete(id);
          pump();
          settleIdle();
        });
    }
  };

  return {
    enqueue(id) {
      if (closed) return false;
      // The same challenge twice (a client retrying, a sweep) is validated once.
      if (queued.has(id)) return true;
      if (waiting.length >= maxQueued) return false;
      queued.add(id);
      waiting.push(id);
      pump();
      return true;
    },
    get size() {
      return waiting.length + running;
    },
    idle() {
      if (running === 0 && waiting.length === 0) return Promise.resolve();
      return new Promise((resolve) => idleWaiters.push(resolve));
    },
    async close() {
      closed = true;
      waiting.length = 0;
      if (running === 0) {
        settleIdle();
        return;
      }
      await new Promise<void>((resolve) => idleWaiters.push(resolve));
    },
  };
}
