import { describe, expect, it } from 'vitest';
import { checkAfterCrash, killDuringKeyCreation } from '../hsm/custody/crash.ts';
import { newPartition } from '../hsm/custody/helpers.ts';

describe('crash safety of the sealed file store (many rounds)', () => {
  it('keeps every acknowledged key across 25 SIGKILLs at arbitrary points', async () => {
    const { dir, secrets } = await newPartition();
    let total = 0;
    for (let round = 0; round < 25; round++) {
      const acked = await killDuringKeyCreation(dir, secrets.secret!, 1 + Math.floor(Math.random() * 30));
      total += acked.size;
      const result = await checkAfterCrash(dir, secrets.secret!, acked);
      expect(result.missing, `round ${round}`).toEqual([]);
      expect(result.keys).toBeGreaterThanOrEqual(total);
      expect(result.audit, `round ${round}`).toMatchObject({ ok: true });
    }
  });
});
