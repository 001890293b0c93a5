import { describe, expect, it } from 'vitest';
import { createBatcher } from './batcher.ts';

describe('the group-commit batcher', () => {
  it('gathers items submitted together into one flush and answers each in order', async () => {
    const flushed: number[][] = [];
    const batcher = createBatcher<number, number>({
      flush: async (items) => {
        flushed.push(items);
        return items.map((n) => n * 2);
      },
    });
    const results = await Promise.all([1, 2, 3].map((n) => batcher.submit(n)));
    expect(results).toEqual([2, 4, 6]);
    expect(flushed).toEqual([[1, 2, 3]]);
  });

  it('gathers items that arrive during a flush into the next one, up to maxBatch', async () => {
    const flushed: number[][] = [];
    let release!: () => void;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    const batcher = createBatcher<number, number>({
      maxBatch: 2,
      flush: async (items) => {
        flushed.push(items);
        if (flushed.length === 1) await gate;
        return items;
      },
    });
    const first = batcher.submit(1);
    await Promise.resolve();
    await Promise.resolve();
    const later = [2, 3, 4].map((n) => batcher.submit(n));
    release();
    await Promise.all([first, ...later]);
    expect(flushed).toEqual([[1], [2, 3], [4]]);
  });

  it('rejects every item of a failed batch and keeps serving later ones', async () => {
    let fail = true;
    const batcher = createBatcher<number, number>({
      flush: async (items) => {
        if (fail) throw new Error('disk full');
        return items;
      },
    });
    const failed = await Promise.allSettled([batcher.submit(1), batcher.submit(2)]);
    expect(failed.map((r) => r.status)).toEqual(['rejected', 'rejected']);
    fail = false;
    await expect(batcher.submit(3)).resolves.toBe(3);
  });

  it('refuses a batch size that is not a positive integer when created', () => {
    expect(() => createBatcher({ flush: async (x: number[]) => x, maxBatch: 0 })).toThrow(/maxBatch/);
  });
});
