import { readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { PartitionStore, StoredCertificate, StoredKeyObject, UserRecord } from '../store.ts';
import { HsmError } from '../types.ts';
import { fsyncDir, isTempName, readFileIfExists, writeFileAtomic } from './atomic-file.ts';
import { fromBase64, sha256Hex, toBase64 } from './codec.ts';
import {
  checkKeyObject,
  checkUser,
  INDEX_FILE,
  type IndexContent,
  KEY_ID,
  KEYS_DIR,
  type KeyTombstone,
  keyFile,
  openIndex,
  openKeyObject,
  peekLabel,
  sealIndex,
  sealKeyObject,
  userFields,
} from './objects.ts';
import type { PartitionKeys } from './seal.ts';

function copyKey(key: StoredKeyObject): StoredKeyObject {
  return {
    ...key,
    usages: [...key.usages],
    purposes: [...key.purposes],
    publicKey: new Uint8Array(key.publicKey),
    privateKey: new Uint8Array(key.privateKey),
  };
}

const copyUser = userFields;

/** Everything a partition folder holds once checked: the index and every key object it lists. */
export interface LoadedPartition {
  index: IndexContent;
  keys: Map<string, StoredKeyObject>;
  /** Key files present but not in the index: left by a creation or deletion a crash interrupted. */
  orphans: string[];
}

/**
 * Reads and checks a partition folder's sealed content. Any damage (a flipped byte, a missing,
 * swapped or replaced file) is refused with CKR_INTEGRITY_FAILED naming the file: a partition
 * never serves from objects it cannot authenticate.
 */
export async function loadPartition(
  dir: string,
  partitionId: string,
  keys: PartitionKeys,
  read: (file: string) => Promise<Buffer | undefined> = (file) => readFileIfExists(join(dir, file)),
  listKeyFiles: () => Promise<string[]> = () => readdir(join(dir, KEYS_DIR)),
): Promise<LoadedPartition> {
  const indexBytes = await read(INDEX_FILE);
  if (!indexBytes) throw new HsmError('CKR_INTEGRITY_FAILED', `${INDEX_FILE} is missing`);
  const index = openIndex(keys.objects, partitionId, indexBytes);
  const loaded = new Map<string, StoredKeyObject>();
  for (const [id, hash] of Object.entries(index.keys)) {
    const file = keyFile(id);
    const bytes = await read(file);
    if (!bytes) {
      throw new HsmError(
        'CKR_INTEGRITY_FAILED',
        `${file} is missing (deleted or moved) but the index lists it`,
      );
    }
    if (sha256Hex(bytes) !== hash) {
      const label = peekLabel(bytes);
      // Authenticate first so the message says whether the object itself or a substitute is there.
      try {
        openKeyObject(keys.objects, partitionId, id, bytes, file);
      } catch (error) {
        if (error instanceof HsmError) {
          throw new HsmError(
            'CKR_INTEGRITY_FAILED',
            `${error.message.replace(/^CKR_INTEGRITY_FAILED: /, '')}${label ? ` (key ${label})` : ''}`,
          );
        }
        throw error;
      }
      throw new HsmError(
        'CKR_INTEGRITY_FAILED',
        `${file}${label ? ` (key ${label})` : ''} is not the object the index recorded: it was replaced`,
      );
    }
    loaded.set(id, openKeyObject(keys.objects, partitionId, id, bytes, file));
  }
  const labels = new Set<string>();
  for (const key of loaded.values()) {
    if (labels.has(key.label))
      throw new HsmError('CKR_INTEGRITY_FAILED', `${INDEX_FILE} lists label ${key.label} twice`);
    labels.add(key.label);
  }
  const orphans = (await listKeyFiles()).filter((name) => {
    const id = name.endsWith('.key') ? name.slice(0, -4) : undefined;
    return !(id && KEY_ID.test(id) && id in index.keys);
  });
  return { index, keys: loaded, orphans };
}

/**
 * The sealed file store `signet hsm serve` uses: a PartitionStore over a partition folder.
 * Everything is loaded and authenticated when unsealed and then served from memory; each change
 * writes the key file first and the index second, both atomically, and resolves only once both
 * are durable. A crash between the two leaves a key file the index does not list, which is
 * removed on the next open: an unacknowledged creation or an acknowledged deletion's remains.
 */
export class SealedFileStore implements PartitionStore {
  #index: IndexContent;
  readonly #keys: Map<string, StoredKeyObject>;
  #queue: Promise<unknown> = Promise.resolve();
  #closed = false;

  private constructor(
    readonly dir: string,
    readonly partitionId: string,
    private readonly partitionKeys: PartitionKeys,
    loaded: LoadedPartition,
  ) {
    this.#index = loaded.index;
    this.#keys = loaded.keys;
  }

  /** Opens and checks the folder; removes orphans and temporary files (the caller holds the lock). */
  static async open(dir: string, partitionId: string, keys: PartitionKeys): Promise<SealedFileStore> {
    const loaded = await loadPartition(dir, partitionId, keys);
    const stray = (await readdir(dir)).filter(isTempName);
    for (const name of loaded.orphans) await rm(join(dir, KEYS_DIR, name), { force: true, recursive: true });
    for (const name of stray) await rm(join(dir, name), { force: true });
    if (loaded.orphans.length > 0) await fsyncDir(join(dir, KEYS_DIR));
    if (stray.length > 0) await fsyncDir(dir);
    return new SealedFileStore(dir, partitionId, keys, loaded);
  }

  get name(): string {
    return this.#index.name;
  }

  /** How many changes the index has recorded. */
  get generation(): number {
    return this.#index.generation;
  }

  /** The partition's derived keys (objects, audit signing), for backup, sync and the audit log. */
  get keys(): PartitionKeys {
    return this.partitionKeys;
  }

  #serially<T>(work: () => Promise<T>): Promise<T> {
    if (this.#closed)
      return Promise.reject(new HsmError('CKR_DEVICE_REMOVED', 'the partition store is closed'));
    const run = this.#queue.then(work);
    this.#queue = run.catch(() => {});
    return run;
  }

  async #writeIndex(next: IndexContent): Promise<void> {
    await writeFileAtomic(
      join(this.dir, INDEX_FILE),
      sealIndex(this.partitionKeys.objects, this.partitionId, next),
    );
    this.#index = next;
  }

  async listKeys(): Promise<StoredKeyObject[]> {
    return [...this.#keys.values()].map(copyKey);
  }

  /** Ids of the keys held, without copying any key material. */
  keyIds(): string[] {
    return [...this.#keys.keys()];
  }

  async getKey(id: string): Promise<StoredKeyObject | undefined> {
    const key = this.#keys.get(id);
    return key ? copyKey(key) : undefined;
  }

  putKey(key: StoredKeyObject): Promise<void> {
    checkKeyObject(key);
    return this.#serially(async () => {
      if (this.#keys.has(key.id)) throw new HsmError('CKR_OBJECT_EXISTS', `a key with id ${key.id} exists`);
      for (const other of this.#keys.values()) {
        if (other.label === key.label)
          throw new HsmError('CKR_OBJECT_EXISTS', `a key labelled ${key.label} exists`);
      }
      const bytes = sealKeyObject(this.partitionKeys.objects, this.partitionId, key);
      await writeFileAtomic(join(this.dir, keyFile(key.id)), bytes);
      await this.#writeIndex({
        ...this.#index,
        generation: this.#index.generation + 1,
        keys: { ...this.#index.keys, [key.id]: sha256Hex(bytes) },
      });
      this.#keys.set(key.id, copyKey(key));
    });
  }

  /**
   * Adds key files sealed elsewhere under this same master key (sync from a backup): each is
   * authenticated, then all are written and recorded in one index write.
   */
  importSealedKeys(files: { id: string; bytes: Uint8Array }[]): Promise<StoredKeyObject[]> {
    return this.#serially(async () => {
      const opened = files.map(({ id, bytes }) => ({
        bytes,
        key: openKeyObject(this.partitionKeys.objects, this.partitionId, id, bytes),
      }));
      const labels = new Set([...this.#keys.values()].map((key) => key.label));
      for (const { key } of opened) {
        if (this.#keys.has(key.id)) throw new HsmError('CKR_OBJECT_EXISTS', `a key with id ${key.id} exists`);
        if (labels.has(key.label))
          throw new HsmError('CKR_OBJECT_EXISTS', `a key labelled ${key.label} exists`);
        labels.add(key.label);
      }
      const hashes: Record<string, string> = {};
      for (const { key, bytes } of opened) {
        await writeFileAtomic(join(this.dir, keyFile(key.id)), bytes);
        hashes[key.id] = sha256Hex(bytes);
      }
      if (opened.length > 0) {
        await this.#writeIndex({
          ...this.#index,
          generation: this.#index.generation + 1,
          keys: { ...this.#index.keys, ...hashes },
        });
      }
      for (const { key } of opened) this.#keys.set(key.id, key);
      return opened.map(({ key }) => copyKey(key));
    });
  }

  /**
   * Removes a key and leaves its tombstone (issue #23), in one index write: a peer that still holds
   * the key learns from the tombstone to destroy it too, never to copy it back.
   */
  deleteKey(id: string, destroyedAt = new Date().toISOString()): Promise<void> {
    return this.#serially(async () => {
      const key = this.#keys.get(id);
      if (!key) return;
      const keys = { ...this.#index.keys };
      delete keys[id];
      // The key's certificate goes in the same index write.
      const certificates = { ...this.#index.certificates };
      delete certificates[id];
      await this.#writeIndex({
        ...this.#index,
        generation: this.#index.generation + 1,
        keys,
        certificates,
        tombstones: { ...this.#index.tombstones, [id]: { label: key.label, destroyedAt } },
      });
      this.#keys.delete(id);
      // The index no longer lists it, so it is gone for good; remove the bytes too.
      await rm(join(this.dir, keyFile(id)), { force: true });
      await fsyncDir(join(this.dir, KEYS_DIR));
    });
  }

  /** Records the tombstone of a key this member never held (destroyed elsewhere before it got it). */
  buryKey(id: string, tombstone: KeyTombstone): Promise<void> {
    return this.#serially(async () => {
      if (this.#index.tombstones?.[id] || this.#keys.has(id)) return;
      await this.#writeIndex({
        ...this.#index,
        generation: this.#index.generation + 1,
        tombstones: { ...this.#index.tombstones, [id]: { ...tombstone } },
      });
    });
  }

  /** Keys destroyed, by id. */
  tombstones(): Record<string, KeyTombstone> {
    return { ...this.#index.tombstones };
  }

  /** A key's file as stored: sealed under the master key, for a peer to pull (never opened on the way). */
  async sealedKey(id: string): Promise<Buffer | undefined> {
    if (!this.#keys.has(id)) return undefined;
    return readFileIfExists(join(this.dir, keyFile(id)));
  }

  /** The membership the index holds (checked by its reader, replication/membership.ts). */
  get membership(): unknown {
    return this.#index.membership;
  }

  setMembership(membership: unknown): Promise<void> {
    return this.#serially(() =>
      this.#writeIndex({ ...this.#index, generation: this.#index.generation + 1, membership }),
    );
  }

  async listCertificates(): Promise<StoredCertificate[]> {
    return Object.entries(this.#index.certificates ?? {}).map(([keyId, c]) => ({
      keyId,
      label: c.label,
      der: new Uint8Array(fromBase64(c.der, 'der')),
      storedAt: c.storedAt,
    }));
  }

  /** Adds or replaces a key's certificate: one atomic index write. */
  putCertificate(certificate: StoredCertificate): Promise<void> {
    return this.#serially(async () => {
      if (!this.#keys.has(certificate.keyId)) {
        throw new HsmError(
          'CKR_KEY_HANDLE_INVALID',
          `no key ${certificate.keyId} to store a certificate for`,
        );
      }
      const entry = {
        label: certificate.label,
        der: toBase64(certificate.der),
        storedAt: certificate.storedAt,
      };
      await this.#writeIndex({
        ...this.#index,
        generation: this.#index.generation + 1,
        certificates: { ...this.#index.certificates, [certificate.keyId]: entry },
      });
    });
  }

  deleteCertificate(keyId: string): Promise<void> {
    return this.#serially(async () => {
      if (!this.#index.certificates?.[keyId]) return;
      const certificates = { ...this.#index.certificates };
      delete certificates[keyId];
      await this.#writeIndex({ ...this.#index, generation: this.#index.generation + 1, certificates });
    });
  }

  async listUsers(): Promise<UserRecord[]> {
    return this.#index.users.map(copyUser);
  }

  async getUser(name: string): Promise<UserRecord | undefined> {
    const user = this.#index.users.find((candidate) => candidate.name === name);
    return user ? copyUser(user) : undefined;
  }

  putUser(user: UserRecord): Promise<void> {
    checkUser(user);
    return this.#serially(async () => {
      const users = this.#index.users.filter((candidate) => candidate.name !== user.name);
      users.push(copyUser(user));
      users.sort((a, b) => (a.name < b.name ? -1 : 1));
      const userTombstones = { ...this.#index.userTombstones };
      delete userTombstones[user.name];
      await this.#writeIndex({
        ...this.#index,
        generation: this.#index.generation + 1,
        users,
        userTombstones,
      });
    });
  }

  /** Removes a user record, keeping the deletion's version when given (issue #23). */
  deleteUser(name: string, tombstone?: { version: number; origin: string }): Promise<void> {
    return this.#serially(async () => {
      const users = this.#index.users.filter((candidate) => candidate.name !== name);
      if (users.length === this.#index.users.length && !tombstone) return;
      const userTombstones = tombstone
        ? { ...this.#index.userTombstones, [name]: { ...tombstone } }
        : this.#index.userTombstones;
      await this.#writeIndex({
        ...this.#index,
        generation: this.#index.generation + 1,
        users,
        ...(userTombstones ? { userTombstones } : {}),
      });
    });
  }

  async userTombstone(name: string): Promise<{ version: number; origin: string } | undefined> {
    const tombstone = this.#index.userTombstones?.[name];
    return tombstone && { ...tombstone };
  }

  /** Every user tombstone, by name. */
  userTombstones(): Record<string, { version: number; origin: string }> {
    return { ...this.#index.userTombstones };
  }

  /** The files of the partition as stored, read consistently (for backups). */
  async sealedFiles(): Promise<Map<string, Buffer>> {
    return this.#serially(async () => {
      const files = new Map<string, Buffer>();
      files.set(INDEX_FILE, await readFile(join(this.dir, INDEX_FILE)));
      for (const id of Object.keys(this.#index.keys)) {
        files.set(keyFile(id), await readFile(join(this.dir, keyFile(id))));
      }
      return files;
    });
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    await this.#queue;
    this.#closed = true;
    for (const key of this.#keys.values()) key.privateKey.fill(0);
    this.#keys.clear();
  }
}
