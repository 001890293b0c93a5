import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  createBackup,
  INDEX_FILE,
  openPartitionVault,
  restoreBackup,
} from '../../../src/hsm/custody/index.ts';
import { type Membership, readMembership, signMembership } from '../../../src/hsm/replication/membership.ts';
import { makeKey, newPartition, tempDir } from './helpers.ts';

/**
 * What a cluster member keeps in its sealed index (issue #23): key tombstones, user versions and
 * their per-member failure counts, user tombstones and the signed membership, across a reopen
 * and through a backup, and none of it in the clear.
 */
async function open(dir: string, secret: string) {
  const folder = await openPartitionVault({ dir });
  await folder.unseal({ secret });
  return folder;
}

describe("a cluster member's replicated state in the sealed file store", () => {
  it('keeps tombstones, user versions and the membership across a reopen and a restore', async () => {
    const { dir, secrets } = await newPartition();
    const key = makeKey('doomed');
    let folder = await open(dir, secrets.secret!);
    const store = folder.store!;
    await store.putKey(key);
    await store.deleteKey(key.id, '2026-12-05T12:00:00.000Z');
    await store.buryKey('ab'.repeat(16), { label: 'elsewhere', destroyedAt: '2026-12-05T12:01:00.000Z' });
    const officer = (await store.getUser('officer'))!;
    await store.putUser({
      ...officer,
      version: 7,
      origin: 'm2',
      failures: { m1: 2, m3: 1 },
      failedLogins: 3,
    });
    await store.deleteUser('ca', { version: 4, origin: 'm1' });
    const membership: Membership = {
      partition: folder.partitionId,
      version: 3,
      members: [{ id: 'm1', url: 'tls://127.0.0.1:7001', cert: 'PEM' }],
      signedBy: 'officer',
      signedAt: '2026-12-05T12:02:00.000Z',
    };
    await store.setMembership(signMembership(store.keys.cluster, membership));
    await folder.close();
    expect(readFileSync(join(dir, INDEX_FILE), 'utf8')).not.toMatch(/doomed|elsewhere|tls:\/\//);

    const restored = join(tempDir(), 'restored');
    await restoreBackup({
      blob: await createBackup({ dir }),
      dir: restored,
      material: { secret: secrets.secret! },
    });
    for (const where of [dir, restored]) {
      folder = await open(where, secrets.secret!);
      const s = folder.store!;
      expect(s.keyIds()).toEqual([]);
      expect(s.tombstones()).toEqual({
        [key.id]: { label: 'doomed', destroyedAt: '2026-12-05T12:00:00.000Z' },
        ['ab'.repeat(16)]: { label: 'elsewhere', destroyedAt: '2026-12-05T12:01:00.000Z' },
      });
      expect(await s.getUser('officer')).toMatchObject({
        version: 7,
        origin: 'm2',
        failures: { m1: 2, m3: 1 },
      });
      expect(await s.getUser('ca')).toBeUndefined();
      expect(await s.userTombstone('ca')).toEqual({ version: 4, origin: 'm1' });
      expect(readMembership(s.keys.cluster, folder.partitionId, s.membership)?.membership).toEqual(
        membership,
      );
      await folder.close();
    }
  });
});
