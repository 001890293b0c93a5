import { describe, expect, it } from 'vitest';
import { openPartitionVault, verifyAuditLog } from '../../src/hsm/custody/index.ts';
import { newPartition } from '../hsm/custody/helpers.ts';
import { killServerDuringKeyCreation } from '../hsm/custody/served.ts';

describe('signet hsm serve --dir killed with SIGKILL (many rounds)', () => {
  it('keeps every acknowledged key and a sound audit log across 12 kills during key creation', async () => {
    const { dir, secrets } = await newPartition();
    const all = new Set<string>();
    for (let round = 0; round < 12; round++) {
      const acked = await killServerDuringKeyCreation(
        dir,
        secrets,
        1 + Math.floor(Math.random() * 25),
        round,
      );
      for (const label of acked) all.add(label);
      const folder = await openPartitionVault({ dir });
      await folder.unseal({ secret: secrets.secret! });
      const labels = new Set((await folder.store!.listKeys()).map((key) => key.label));
      await folder.close();
      expect(
        [...all].filter((label) => !labels.has(label)),
        `round ${round}`,
      ).toEqual([]);
      expect(await verifyAuditLog({ dir }), `round ${round}`).toMatchObject({ ok: true });
    }
  });
});
