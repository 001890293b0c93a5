import { describe, expect, it } from 'vitest';
import { checkAfterCrash, killDuringKeyCreation } from './crash.ts';
import { newPartition } from './helpers.ts';

describe('crash safety', () => {
  it('keeps every acknowledged key and a sound audit log when killed with SIGKILL mid-write', async () => {
    const { dir, secrets } = await newPartition();
    let total = 0;
    for (const after of [3, 10]) {
      const acked = await killDuringKeyCreation(dir, secrets.secret!, after);
      total += acked.size;
      const result = await checkAfterCrash(dir, secrets.secret!, acked);
      expect(result.missing).toEqual([]);
      expect(result.keys).toBeGreaterThanOrEqual(total);
      expect(result.audit).toMatchObject({ ok: true });
    }
  });
});
