import { timingSafeEqual } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { HsmError, isHsmError } from '../types.ts';
import { isTempName, readFileIfExists } from './atomic-file.ts';
import { type Clock, fromBase64, isRecord, systemClock, toBase64 } from './codec.ts';
import { type LoadedPartition, loadPartition, type SealedFileStore } from './file-store.ts';
import {
  HEADER_FILE,
  type PartitionHeader,
  parseHeader,
  type UnsealMaterial,
  unsealPartitionKeys,
} from './header.ts';
import { INDEX_FILE, type IndexCertificate, KEYS_DIR, keyFile } from './objects.ts';
import type { PartitionKeys } from './seal.ts';
import { openPartitionVault, publishPartition, writeContent } from './vault.ts';

/**
 * A backup is the partition as stored, in one file: partition.json (with the master key sealed
 * under the unseal secret or shares) and the sealed index and key objects, byte for byte. Nothing
 * in it is in the clear but the header and each key's public attributes, so making one needs no
 * secret and restoring one needs the partition's own unseal secret or shares — as with cloning
 * an HSM into a cluster. The audit log is not part of it: each copy keeps its own chain.
 */
const FORMAT = 'signet-hsm-backup';

export interface BackupSummary {
  partitionId: string;
  name: string;
  keys: number;
  users: number;
}

export interface SyncSummary {
  partitionId: string;
  /** Keys the backup had and the clone lacked, now added. */
  added: { id: string; label: string }[];
  /** Keys both had. */
  unchanged: number;
  /** Keys the clone has that the backup lacks (destroyed at the source, or created on the clone); left alone. */
  notInBackup: { id: string; label: string }[];
  /** Certificates stored beside keys (issue #26) the clone lacked or held an older one of, now copied. */
  certificates: number;
}

interface ParsedBackup {
  header: PartitionHeader;
  createdAt: string;
  files: Map<string, Buffer>;
}

const SAFE_FILE = /^(index\.sealed|keys\/(?:[0-9a-f]{2}){1,32}\.key)$/;

/** Reads the folder's sealed files consistently: the index is read before and after, and must not change. */
async function snapshot(dir: string): Promise<Map<string, Buffer>> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const index = await readFileIfExists(join(dir, INDEX_FILE));
    if (!index) throw new HsmError('CKR_INTEGRITY_FAILED', `${INDEX_FILE} is missing in ${dir}`);
    const files = new Map<string, Buffer>([[INDEX_FILE, index]]);
    let complete = true;
    for (const name of await readdir(join(dir, KEYS_DIR))) {
      if (isTempName(name) || !SAFE_FILE.test(`${KEYS_DIR}/${name}`)) continue;
      const bytes = await readFileIfExists(join(dir, KEYS_DIR, name));
      if (!bytes) {
        complete = false; // deleted while we read: start again
        break;
      }
      files.set(`${KEYS_DIR}/${name}`, bytes);
    }
    const after = await readFileIfExists(join(dir, INDEX_FILE));
    if (complete && after?.equals(index)) return files;
  }
  throw new HsmError('CKR_DEVICE_ERROR', `${dir} kept changing while being backed up; try again`);
}

/**
 * Writes a backup of the partition in `dir`. Needs no secret and no lock: a served partition
 * may be backed up while it runs (its files are replaced atomically and read consistently).
 */
export async function createBackup({
  dir,
  clock = systemClock,
}: {
  dir: string;
  clock?: Clock;
}): Promise<Uint8Array> {
  const headerBytes = await readFileIfExists(join(dir, HEADER_FILE));
  if (!headerBytes)
    throw new HsmError('CKR_TOKEN_NOT_PRESENT', `${dir} holds no partition (no ${HEADER_FILE})`);
  const header = parseHeader(headerBytes, HEADER_FILE);
  const files = await snapshot(dir);
  const blob = {
    format: FORMAT,
    v: 1,
    createdAt: clock.now().toISOString(),
    partition: header,
    files: Object.fromEntries([...files].map(([name, bytes]) => [name, toBase64(bytes)])),
  };
  return Buffer.from(`${JSON.stringify(blob)}\n`);
}

function badBackup(why: string): never {
  throw new HsmError('CKR_DATA_INVALID', `not a usable Signet partition backup: ${why}`);
}

export function parseBackup(blob: Uint8Array): ParsedBackup {
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(blob));
  } catch {
    badBackup('it is not JSON (damaged, or another kind of file)');
  }
  if (!isRecord(value) || value.format !== FORMAT) badBackup('it has no signet-hsm-backup format marker');
  if (value.v !== 1) badBackup(`unsupported version ${String(value.v)}`);
  if (typeof value.createdAt !== 'string' || !isRecord(value.files) || !isRecord(value.partition)) {
    badBackup('it lacks its partition or files');
  }
  let header: PartitionHeader;
  try {
    header = parseHeader(
      Buffer.from(`${JSON.stringify(value.partition, null, 2)}\n`),
      `backup's ${HEADER_FILE}`,
    );
  } catch (error) {
    if (isHsmError(error)) badBackup(error.reason);
    throw error;
  }
  const files = new Map<string, Buffer>();
  for (const [name, data] of Object.entries(value.files)) {
    if (!SAFE_FILE.test(name))
      badBackup(`it holds an unexpected file name ${JSON.stringify(name).slice(0, 80)}`);
    try {
      files.set(name, fromBase64(data, name));
    } catch {
      badBackup(`${name} is not base64`);
    }
  }
  return { header, createdAt: value.createdAt, files };
}

function loadFromBackup(backup: ParsedBackup, keys: PartitionKeys): Promise<LoadedPartition> {
  return loadPartition(
    '(backup)',
    backup.header.id,
    keys,
    async (file) => backup.files.get(file),
    async () =>
      [...backup.files.keys()]
        .filter((name) => name.startsWith(`${KEYS_DIR}/`))
        .map((name) => name.slice(KEYS_DIR.length + 1)),
  ).catch((error: unknown) => {
    if (isHsmError(error, 'CKR_INTEGRITY_FAILED')) {
      throw new HsmError('CKR_INTEGRITY_FAILED', `in the backup, ${error.reason}`);
    }
    throw error;
  });
}

/** What restoreBackup and syncBackup take: the backup, the folder, what unseals it, the clock. */
interface BackupInto {
  blob: Uint8Array;
  dir: string;
  material: UnsealMaterial;
  clock?: Clock;
}

/**
 * Restores a backup into a new folder. Only the partition's own unseal secret or shares open it
 * (CKR_UNSEAL_FAILED otherwise, and nothing is written); every object is authenticated before
 * the folder appears. The restored partition has the same identity, master key, keys and users,
 * and starts its own audit log with the restore.
 */
export async function restoreBackup({
  blob,
  dir,
  material,
  clock = systemClock,
}: BackupInto): Promise<BackupSummary> {
  const backup = parseBackup(blob);
  const keys = await unsealPartitionKeys(backup.header, material);
  const loaded = await loadFromBackup(backup, keys);
  const files = new Map<string, Uint8Array>();
  for (const id of loaded.keys.keys()) files.set(keyFile(id), backup.files.get(keyFile(id))!);
  await publishPartition(dir, (staging) =>
    writeContent(
      staging,
      backup.header,
      keys,
      loaded.index,
      {
        time: clock.now().toISOString(),
        op: 'restoreBackup',
        result: 'ok',
        detail: `restored from a backup made ${backup.createdAt} with ${loaded.keys.size} keys`,
      },
      files,
    ),
  );
  for (const key of loaded.keys.values()) key.privateKey.fill(0);
  return {
    partitionId: backup.header.id,
    name: backup.header.name,
    keys: loaded.keys.size,
    users: loaded.index.users.length,
  };
}

/**
 * Copies the backup's certificates into the clone: those of keys the clone has, where it has none
 * or an older one (a renewal stored at the source since). Answers how many were copied.
 */
async function syncCertificates(
  store: SealedFileStore,
  from: Record<string, IndexCertificate>,
  record: (keyId: string) => Promise<void>,
): Promise<number> {
  const mine = new Map((await store.listCertificates()).map((c) => [c.keyId, c]));
  let copied = 0;
  for (const [keyId, certificate] of Object.entries(from)) {
    const have = mine.get(keyId);
    if ((have && have.storedAt >= certificate.storedAt) || !(await store.getKey(keyId))) continue;
    const der = fromBase64(certificate.der, 'certificate');
    await store.putCertificate({ keyId, label: certificate.label, der, storedAt: certificate.storedAt });
    await record(keyId);
    copied += 1;
  }
  return copied;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

/**
 * Brings keys created since into an existing clone (a folder restored from an earlier backup of
 * the same partition), from a newer backup. The clone must be the same partition under the same
 * master key; it is opened with its lock, so not while served. Keys are only added: users and
 * keys the backup lacks are left as they are. Conflicting objects refuse the whole sync.
 */
export async function syncBackup({
  blob,
  dir,
  material,
  clock = systemClock,
}: BackupInto): Promise<SyncSummary> {
  const backup = parseBackup(blob);
  const folder = await openPartitionVault({ dir, clock });
  const audit = (
    op: string,
    result: string,
    extra: { keyId?: string; keyLabel?: string; detail?: string } = {},
  ) => folder.audit.append({ time: clock.now().toISOString(), op, result, ...extra });
  try {
    if (backup.header.id !== folder.partitionId) {
      throw new HsmError(
        'CKR_ARGUMENTS_BAD',
        `the backup is of partition ${backup.header.name} (${backup.header.id}), but ${dir} holds ${folder.name} (${folder.partitionId}): sync only into a clone of the same partition`,
      );
    }
    await folder.unseal(material);
    const store = folder.store!;
    try {
      // The backup's objects open only under this clone's master key; otherwise it is refused here.
      const loaded = await loadFromBackup(backup, store.keys);
      const local = new Map((await store.listKeys()).map((key) => [key.id, key]));
      const fresh: { id: string; bytes: Uint8Array }[] = [];
      let unchanged = 0;
      for (const [id, key] of loaded.keys) {
        const mine = local.get(id);
        if (!mine) {
          fresh.push({ id, bytes: backup.files.get(keyFile(id))! });
          continue;
        }
        if (
          mine.label !== key.label ||
          !sameBytes(mine.privateKey, key.privateKey) ||
          !sameBytes(mine.publicKey, key.publicKey)
        ) {
          throw new HsmError(
            'CKR_OBJECT_EXISTS',
            `key ${id} differs between the backup and ${dir}: refusing to sync`,
          );
        }
        unchanged += 1;
      }
      const added = await store.importSealedKeys(fresh);
      for (const key of added)
        await audit('syncKey', 'ok', {
          keyId: key.id,
          keyLabel: key.label,
          detail: `from a backup made ${backup.createdAt}`,
        });
      const certificates = await syncCertificates(store, loaded.index.certificates ?? {}, (keyId) =>
        audit('syncCertificate', 'ok', { keyId, detail: `from a backup made ${backup.createdAt}` }),
      );
      const notInBackup = [...local.values()]
        .filter((key) => !loaded.keys.has(key.id))
        .map(({ id, label }) => ({ id, label }));
      for (const key of [...loaded.keys.values(), ...local.values()]) key.privateKey.fill(0);
      return {
        partitionId: folder.partitionId,
        added: added.map(({ id, label }) => ({ id, label })),
        unchanged,
        notInBackup,
        certificates,
      };
    } catch (error) {
      await audit('syncBackup', isHsmError(error) ? error.code : 'hsm.device_error').catch(() => {});
      throw error;
    }
  } finally {
    await folder.close();
  }
}
