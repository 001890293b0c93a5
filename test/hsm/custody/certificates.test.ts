import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  createBackup,
  INDEX_FILE,
  openPartitionVault,
  restoreBackup,
  syncBackup,
} from '../../../src/hsm/custody/index.ts';
import type { StoredCertificate } from '../../../src/hsm/store.ts';
import { HsmError } from '../../../src/hsm/types.ts';
import { makeKey, newPartition, tempDir } from './helpers.ts';

/**
 * Certificates stored beside keys (issue #26) in a partition folder: sealed in the index, kept
 * across reopening, gone with their key, carried by backups, restores and syncs.
 */

/** Not a real certificate: the store keeps octets; the partition checks them before storing. */
const certificate = (
  keyId: string,
  marker: string,
  storedAt = '2026-03-01T12:00:00.000Z',
): StoredCertificate => ({
  keyId,
  label: 'web',
  der: Buffer.from(`0\x82certificate-octets-${marker}`, 'latin1'),
  storedAt,
});

async function open(dir: string, secret: string) {
  const folder = await openPartitionVault({ dir });
  await folder.unseal({ secret });
  return folder;
}

describe('certificates in the sealed file store', () => {
  it('keeps a certificate across a reopen, sealed in the index, and drops it with its key', async () => {
    const { dir, secrets } = await newPartition();
    const [a, b] = [makeKey('web'), makeKey('api')];
    let folder = await open(dir, secrets.secret!);
    await folder.store!.putKey(a);
    await folder.store!.putKey(b);
    await folder.store!.putCertificate(certificate(a.id, 'first'));
    await folder.store!.putCertificate(certificate(a.id, 'renewed'));
    await folder.store!.putCertificate(certificate(b.id, 'api'));
    await folder.close();
    // Sealed: the index holds no octet of it in the clear.
    expect(readFileSync(join(dir, INDEX_FILE)).includes(Buffer.from('certificate-octets'))).toBe(false);

    folder = await open(dir, secrets.secret!);
    const stored = await folder.store!.listCertificates();
    expect(stored.map((c) => [c.keyId, Buffer.from(c.der).toString('latin1').slice(-7)]).sort()).toEqual(
      [
        [a.id, 'renewed'],
        [b.id, 'ets-api'],
      ].sort(),
    );
    await folder.store!.deleteKey(a.id);
    await folder.store!.deleteCertificate(b.id);
    await folder.close();
    folder = await open(dir, secrets.secret!);
    expect(await folder.store!.listCertificates()).toEqual([]);
    await folder.close();
  });

  it('refuses a certificate for a key it does not hold', async () => {
    const { dir, secrets } = await newPartition();
    const folder = await open(dir, secrets.secret!);
    await expect(folder.store!.putCertificate(certificate('00ff', 'x'))).rejects.toBeInstanceOf(HsmError);
    await folder.close();
  });

  it('carries certificates through a backup and its restore, and a sync copies newer ones', async () => {
    const { dir, secrets } = await newPartition();
    const key = makeKey('web');
    let folder = await open(dir, secrets.secret!);
    await folder.store!.putKey(key);
    await folder.store!.putCertificate(certificate(key.id, 'first', '2026-03-01T00:00:00.000Z'));
    await folder.close();
    const clone = join(tempDir(), 'clone');
    await restoreBackup({
      blob: await createBackup({ dir }),
      dir: clone,
      material: { secret: secrets.secret! },
    });
    folder = await open(clone, secrets.secret!);
    expect(
      (await folder.store!.listCertificates()).map((c) => Buffer.from(c.der).toString('latin1')),
    ).toEqual(['0\x82certificate-octets-first']);
    await folder.close();

    // A renewal at the source, and a key with its certificate made there since.
    const fresh = makeKey('api');
    folder = await open(dir, secrets.secret!);
    await folder.store!.putCertificate(certificate(key.id, 'renewed', '2026-04-01T00:00:00.000Z'));
    await folder.store!.putKey(fresh);
    await folder.store!.putCertificate(certificate(fresh.id, 'api', '2026-04-01T00:00:00.000Z'));
    await folder.close();
    const summary = await syncBackup({
      blob: await createBackup({ dir }),
      dir: clone,
      material: { secret: secrets.secret! },
    });
    expect(summary).toMatchObject({ added: [{ id: fresh.id, label: 'api' }], certificates: 2 });
    folder = await open(clone, secrets.secret!);
    const synced = new Map(
      (await folder.store!.listCertificates()).map((c) => [c.keyId, Buffer.from(c.der).toString('latin1')]),
    );
    expect(synced.get(key.id)).toContain('renewed');
    expect(synced.get(fresh.id)).toContain('api');
    await folder.close();
    const again = await syncBackup({
      blob: await createBackup({ dir }),
      dir: clone,
      material: { secret: secrets.secret! },
    });
    expect(again.certificates).toBe(0);
  });
});
