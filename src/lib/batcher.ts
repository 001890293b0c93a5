/**
 * Group commit: callers each submit one item and await its own result; items arriving while a
 * flush runs are gathered into the next flush. One database transaction then carries many
 * issuances (NOTES.md: single-row durable commits are bounded by fsync; batching is how to go
 * faster). A flush that throws rejects every item of that batch with the same error.
 */
export interface Batcher<T, R> {
  submit(item: T): Promise<R>;
  /** Resolves when everything submitted so far has been flushed. */
  drain(): Promise<void>;
}

export interface BatcherOptions<T, R> {
  /** Writes a batch; returns one result per item, in order. */
  flush(items: T[]): Promise<R[]>;
  /** Largest batch; more waits for the next flush. */
  maxBatch?: number;
}

export function createBatcher<T, R>({ flush, maxBatch = 256 }: BatcherOptions<T, R>): Batcher<T, R> {
  if (!Number.isInteger(maxBatch) || maxBatch < 1) throw new Error('maxBatch must be a positive integer');
  type Entry = { item: T; resolve: (r: R) => void; reject: (e: unknown) => void };
  let queue: Entry[] = [];
  let running: Promise<void> | undefined;

  const run = async (): Promise<void> => {
    while (queue.length > 0) {
      const batch = queue.slice(0, maxBatch);
      queue = queue.slice(batch.length);
      try {
        const results = await flush(batch.map((e) => e.item));
        if (results.length !== batch.length) {
          throw new Error(`batch flush returned ${results.length} results for ${batch.length} items`);
        }
        for (const [i, entry] of batch.entries()) entry.resolve(results[i] as R);
      } catch (error) {
        for (const entry of batch) entry.reject(error);
      }
    }
  };

  const kick = () => {
    if (running) return;
    // Start on the next microtask turn so callers submitting in the same tick share a batch.
    running = Promise.resolve()
      .then(run)
      .finally(() => {
        running = undefined;
        if (queue.length > 0) kick();
      });
  };

  return {
    submit(item) {
      return new Promise<R>((resolve, reject) => {
        queue.push({ item, resolve, reject });
        kick();
      });
    },
    async drain() {
      while (running) await running;
    },
  };
}
