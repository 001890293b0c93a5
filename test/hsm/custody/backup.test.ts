import { createPrivateKey, createPublicKey, sign, verify } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  createBackup,
  openPartitionVault,
  restoreBackup,
  syncBackup,
  verifyAuditLog,
} from '../../../src/hsm/custody/index.ts';
import { HsmError } from '../../../src/hsm/types.ts';
import { makeKey, newPartition, tempDir } from './helpers.ts';

async function addKeys(dir: string, secret: string, labels: string[]) {
  const folder = await openPartitionVault({ dir });
  const store = (await folder.unseal({ secret })) as NonNullable<typeof folder.store>;
  const keys = labels.map((label) => makeKey(label));
  for (const key of keys) await store.putKey(key);
  await folder.close();
  return keys;
}

async function keysOf(dir: string, material: { secret?: string; shares?: string[] }) {
  const folder = await openPartitionVault({ dir });
  await folder.unseal(material);
  const keys = await folder.store!.listKeys();
  await folder.close();
  return keys;
}

async function refusal(promise: Promise<unknown>): Promise<HsmError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(HsmError);
  return error as HsmError;
}

describe('backup and restore', () => {
  it('restores into another folder a partition that signs with the same keys', async () => {
    const { dir, secrets } = await newPartition();
    const [key] = await addKeys(dir, secrets.secret!, ['ca-2026']);
    const blob = await createBackup({ dir });
    const clone = join(tempDir(), 'clone');
    const summary = await restoreBackup({ blob, dir: clone, material: { secret: secrets.secret! } });
    expect(summary).toMatchObject({ name: 'issuing', keys: 1, users: 2 });
    const [restored] = await keysOf(clone, { secret: secrets.secret! });
    // The restored private key makes signatures the original public key verifies.
    const signature = sign(
      'sha256',
      Buffer.from('tbs'),
      createPrivateKey({ key: Buffer.from(restored!.privateKey), format: 'der', type: 'pkcs8' }),
    );
    const publicKey = createPublicKey({ key: Buffer.from(key!.publicKey), format: 'der', type: 'spki' });
    expect(verify('sha256', Buffer.from('tbs'), publicKey, signature)).toBe(true);
    expect(await verifyAuditLog({ dir: clone })).toMatchObject({ ok: true, records: 1 });
  });

  it('holds no key in the clear', async () => {
    const { dir, secrets } = await newPartition();
    const [key] = await addKeys(dir, secrets.secret!, ['ca-2026']);
    const blob = Buffer.from(await createBackup({ dir }));
    const der = Buffer.from(key!.privateKey);
    for (const needle of [der, Buffer.from(der.toString('base64')), Buffer.from(der.toString('hex'))]) {
      expect(blob.includes(needle)).toBe(false);
    }
  });

  it('restores a shares partition with M of its shares', async () => {
    const { dir, secrets } = await newPartition({ sealing: { kind: 'shares', shares: 3, threshold: 2 } });
    const folder = await openPartitionVault({ dir });
    await folder.unseal({ shares: secrets.shares!.slice(1) });
    await folder.store!.putKey(makeKey('ca-2026'));
    await folder.close();
    const clone = join(tempDir(), 'clone');
    await restoreBackup({
      blob: await createBackup({ dir }),
      dir: clone,
      material: { shares: [secrets.shares![2]!, secrets.shares![0]!] },
    });
    expect((await keysOf(clone, { shares: secrets.shares!.slice(0, 2) })).map((k) => k.label)).toEqual([
      'ca-2026',
    ]);
  });

  it('refuses to restore with another partition’s secret and writes nothing', async () => {
    const { dir } = await newPartition();
    const other = await newPartition();
    const clone = join(tempDir(), 'clone');
    const error = await refusal(
      restoreBackup({
        blob: await createBackup({ dir }),
        dir: clone,
        material: { secret: other.secrets.secret! },
      }),
    );
    expect(error.rv).toBe('CKR_UNSEAL_FAILED');
    expect(existsSync(clone)).toBe(false);
  });

  it('refuses to restore over an existing folder', async () => {
    const { dir, secrets } = await newPartition();
    const target = tempDir();
    mkdirSync(join(target, 'x'));
    const error = await refusal(
      restoreBackup({
        blob: await createBackup({ dir }),
        dir: target,
        material: { secret: secrets.secret! },
      }),
    );
    expect(error.message).toMatch(/is not empty/);
  });

  it('refuses a backup with a flipped byte in any of its objects', async () => {
    const { dir, secrets } = await newPartition();
    await addKeys(dir, secrets.secret!, ['ca-2026']);
    const blob = JSON.parse(Buffer.from(await createBackup({ dir })).toString('utf8'));
    for (const file of Object.keys(blob.files)) {
      const bytes = Buffer.from(blob.files[file], 'base64');
      bytes[Math.floor(bytes.length / 3)]! ^= 0x01;
      const damaged = { ...blob, files: { ...blob.files, [file]: bytes.toString('base64') } };
      const error = await refusal(
        restoreBackup({
          blob: Buffer.from(JSON.stringify(damaged)),
          dir: join(tempDir(), 'c'),
          material: { secret: secrets.secret! },
        }),
      );
      expect(error.rv).toBe('CKR_INTEGRITY_FAILED');
      expect(error.message).toContain(file);
    }
  });

  it('refuses a file that is not a backup', async () => {
    const error = await refusal(
      restoreBackup({ blob: Buffer.from('hello'), dir: join(tempDir(), 'c'), material: { secret: 'x' } }),
    );
    expect(error.rv).toBe('CKR_DATA_INVALID');
  });

  it('can be made while the partition is open', async () => {
    const { dir, secrets } = await newPartition();
    const folder = await openPartitionVault({ dir });
    await folder.unseal({ secret: secrets.secret! });
    await folder.store!.putKey(makeKey('ca-2026'));
    const blob = await createBackup({ dir });
    await folder.close();
    const clone = join(tempDir(), 'clone');
    await restoreBackup({ blob, dir: clone, material: { secret: secrets.secret! } });
    expect((await keysOf(clone, { secret: secrets.secret! })).length).toBe(1);
  });
});

describe('sync', () => {
  it('brings keys created since into an existing clone, and only adds', async () => {
    const { dir, secrets } = await newPartition();
    await addKeys(dir, secrets.secret!, ['ca-old']);
    const clone = join(tempDir(), 'clone');
    await restoreBackup({
      blob: await createBackup({ dir }),
      dir: clone,
      material: { secret: secrets.secret! },
    });
    const [local] = await addKeys(clone, secrets.secret!, ['clone-only']);
    const [fresh] = await addKeys(dir, secrets.secret!, ['ca-new']);
    const summary = await syncBackup({
      blob: await createBackup({ dir }),
      dir: clone,
      material: { secret: secrets.secret! },
    });
    expect(summary.added).toEqual([{ id: fresh!.id, label: 'ca-new' }]);
    expect(summary.unchanged).toBe(1);
    expect(summary.notInBackup).toEqual([{ id: local!.id, label: 'clone-only' }]);
    const labels = (await keysOf(clone, { secret: secrets.secret! })).map((k) => k.label).sort();
    expect(labels).toEqual(['ca-new', 'ca-old', 'clone-only']);
    expect(await verifyAuditLog({ dir: clone })).toMatchObject({ ok: true });
    const again = await syncBackup({
      blob: await createBackup({ dir }),
      dir: clone,
      material: { secret: secrets.secret! },
    });
    expect(again.added).toEqual([]);
  });

  it('refuses a backup of another partition', async () => {
    const a = await newPartition();
    const b = await newPartition();
    const error = await refusal(
      syncBackup({
        blob: await createBackup({ dir: a.dir }),
        dir: b.dir,
        material: { secret: b.secrets.secret! },
      }),
    );
    expect(error.message).toMatch(/sync only into a clone of the same partition/);
    expect(readdirSync(join(b.dir, 'keys'))).toEqual([]);
  });

  it('refuses a key label that already names another key in the clone', async () => {
    const { dir, secrets } = await newPartition();
    const clone = join(tempDir(), 'clone');
    await restoreBackup({
      blob: await createBackup({ dir }),
      dir: clone,
      material: { secret: secrets.secret! },
    });
    await addKeys(clone, secrets.secret!, ['same-label']);
    await addKeys(dir, secrets.secret!, ['same-label']);
    const error = await refusal(
      syncBackup({ blob: await createBackup({ dir }), dir: clone, material: { secret: secrets.secret! } }),
    );
    expect(error.rv).toBe('CKR_OBJECT_EXISTS');
  });

  it('refuses while the clone is in use', async () => {
    const { dir, secrets } = await newPartition();
    const clone = join(tempDir(), 'clone');
    await restoreBackup({
      blob: await createBackup({ dir }),
      dir: clone,
      material: { secret: secrets.secret! },
    });
    const held = await openPartitionVault({ dir: clone });
    const error = await refusal(
      syncBackup({ blob: await createBackup({ dir }), dir: clone, material: { secret: secrets.secret! } }),
    );
    expect(error.message).toMatch(/in use by process/);
    await held.close();
  });
});
