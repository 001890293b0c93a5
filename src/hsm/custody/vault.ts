import { randomBytes } from 'node:crypto';
import { mkdir, readdir, rename, rm, rmdir, stat } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import type { PartitionStore, PartitionVault, UserRecord } from '../store.ts';
import type { PartitionStatus } from '../types.ts';
import { HsmError } from '../types.ts';
import { fsyncDir, readFileIfExists, writeFileAtomic } from './atomic-file.ts';
import { AuditLog } from './audit-log.ts';
import { type Clock, systemClock, toBase64 } from './codec.ts';
import { SealedFileStore } from './file-store.ts';
import {
  HEADER_FILE,
  PARTITION_NAME,
  type PartitionHeader,
  parseHeader,
  type Sealing,
  sealHeader,
  serializeHeader,
  type UnsealMaterial,
  unsealPartitionKeys,
} from './header.ts';
import { acquireDirLock, type DirLock } from './lock.ts';
import { INDEX_FILE, type IndexContent, KEYS_DIR, sealIndex } from './objects.ts';
import { DEFAULT_PIN_HASH, hashPin, type PinHashParams } from './pin.ts';
import { auditPublicKeyDer, derivePartitionKeys, type PartitionKeys } from './seal.ts';
import { formatSecret, formatShare, newUnsealKey, splitUnsealKey } from './unseal-material.ts';

/** The unseal material a new partition hands out, once: the text of each file to write. */
export interface PartitionSecrets {
  partitionId: string;
  name: string;
  /** The secret file's content (sealing 'secret'). */
  secret?: string;
  /** One file's content per custodian share (sealing 'shares'), share 1 first. */
  shares?: string[];
}

export interface InitPartitionOptions {
  dir: string;
  name: string;
  sealing: { kind: 'secret' } | { kind: 'shares'; shares: number; threshold: number };
  /** The crypto officer's PIN, chosen by the operator. */
  officerPin: string;
  /** The PIN of the crypto user `ca`; without one, `ca` exists but cannot log in until the officer sets its PIN. */
  userPin?: string;
  clock?: Clock;
  /** scrypt cost of the PIN hashes (tests lower it). */
  pinHash?: PinHashParams;
  /**
   * Stores the unseal material before the partition folder appears (write the secret or share
   * files here). If it throws, no partition is created: a partition whose secret was lost could
   * never be unsealed.
   */
  saveSecrets?: (secrets: PartitionSecrets) => Promise<void>;
}

const DEFAULT_USERS = { officer: 'officer', user: 'ca' } as const;

async function checkTarget(dir: string): Promise<'absent' | 'empty'> {
  try {
    const entries = await readdir(dir);
    if (entries.length > 0)
      throw new HsmError('CKR_ARGUMENTS_BAD', `${dir} is not empty: a partition is created in a new folder`);
    return 'empty';
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return 'absent';
    if (code === 'ENOTDIR') throw new HsmError('CKR_ARGUMENTS_BAD', `${dir} is not a folder`);
    throw error;
  }
}

/**
 * Writes a complete partition folder next to `dir`, hands over to `beforePublish`, then renames
 * it into place: the folder appears whole or not at all.
 */
export async function publishPartition(
  dir: string,
  fill: (staging: string) => Promise<void>,
  beforePublish: () => Promise<void> = async () => {},
): Promise<void> {
  const target = resolve(dir);
  const state = await checkTarget(target);
  const parent = dirname(target);
  await stat(parent).catch(() => {
    throw new HsmError('CKR_ARGUMENTS_BAD', `the folder ${parent} does not exist`);
  });
  const staging = join(parent, `.${basename(target)}.${randomBytes(6).toString('hex')}.partial`);
  await mkdir(staging, { mode: 0o700 });
  try {
    await mkdir(join(staging, KEYS_DIR), { mode: 0o700 });
    await fsyncDir(staging);
    await fill(staging);
    await fsyncDir(staging);
    await beforePublish();
    if (state === 'empty') await rmdir(target);
    await rename(staging, target);
    await fsyncDir(parent);
  } catch (error) {
    await rm(staging, { recursive: true, force: true });
    throw error;
  }
}

/**
 * Creates a sealed partition in a new folder: a random master key, sealed under a new unseal
 * secret or split M-of-N; the officer and the crypto user `ca`; an empty key set; an audit log
 * whose first record is the creation. Returns the unseal material, which exists nowhere else.
 */
export async function initPartition(options: InitPartitionOptions): Promise<PartitionSecrets> {
  const { dir, name, sealing, clock = systemClock, pinHash = DEFAULT_PIN_HASH } = options;
  if (typeof name !== 'string' || !PARTITION_NAME.test(name)) {
    throw new HsmError('CKR_ARGUMENTS_BAD', `partition name '${name}' is not [a-z0-9][a-z0-9-]{0,31}`);
  }
  const headerSealing: Sealing =
    sealing.kind === 'secret'
      ? { kind: 'secret' }
      : { kind: 'shares', threshold: sealing.threshold, shares: sealing.shares };
  const users: UserRecord[] = [
    {
      name: DEFAULT_USERS.officer,
      role: 'officer',
      pinHash: await hashPin(options.officerPin, pinHash),
      failedLogins: 0,
      locked: false,
    },
    {
      name: DEFAULT_USERS.user,
      role: 'user',
      pinHash: options.userPin === undefined ? '' : await hashPin(options.userPin, pinHash),
      failedLogins: 0,
      locked: false,
    },
  ];
  const id = randomBytes(16).toString('hex');
  const masterKey = randomBytes(32);
  const unsealKey = newUnsealKey();
  try {
    const secrets: PartitionSecrets = { partitionId: id, name };
    if (sealing.kind === 'secret') {
      secrets.secret = formatSecret(id, name, unsealKey);
    } else {
      const shares = await splitUnsealKey(unsealKey, {
        partitionId: id,
        count: sealing.shares,
        threshold: sealing.threshold,
      });
      secrets.shares = shares.map((share) => formatShare(name, share));
    }
    const keys = derivePartitionKeys(masterKey, Buffer.from(id, 'hex'));
    const createdAt = clock.now().toISOString();
    const header = sealHeader(
      { id, name, createdAt, sealing: headerSealing, auditKey: toBase64(auditPublicKeyDer(keys)) },
      masterKey,
      unsealKey,
    );
    const index: IndexContent = { generation: 1, name, createdAt, users, keys: {} };
    await publishPartition(
      dir,
      (staging) =>
        writeContent(staging, header, keys, index, {
          time: createdAt,
          op: 'initPartition',
          result: 'ok',
          detail:
            sealing.kind === 'secret'
              ? 'sealed under a secret'
              : `sealed under ${sealing.threshold}-of-${sealing.shares} shares`,
        }),
      () => options.saveSecrets?.(secrets) ?? Promise.resolve(),
    );
    return secrets;
  } finally {
    masterKey.fill(0);
    unsealKey.fill(0);
  }
}

/** Writes a partition's files into a fresh folder and starts its audit log with `first`. */
export async function writeContent(
  dir: string,
  header: PartitionHeader,
  keys: PartitionKeys,
  index: IndexContent,
  first: Parameters<AuditLog['append']>[0],
  files: Map<string, Uint8Array> = new Map(),
): Promise<void> {
  await writeFileAtomic(join(dir, HEADER_FILE), serializeHeader(header));
  for (const [file, bytes] of files) await writeFileAtomic(join(dir, file), bytes);
  await writeFileAtomic(join(dir, INDEX_FILE), sealIndex(keys.objects, header.id, index));
  const audit = await AuditLog.open({ dir, partitionId: header.id, auditKey: header.auditKey });
  audit.setSigner(keys.auditSigning);
  try {
    await audit.append(first);
  } finally {
    await audit.close();
  }
}

export async function readHeader(dir: string): Promise<PartitionHeader> {
  const bytes = await readFileIfExists(join(dir, HEADER_FILE));
  if (!bytes) {
    throw new HsmError(
      'CKR_TOKEN_NOT_PRESENT',
      `${dir} holds no partition (no ${HEADER_FILE}): run signet hsm init`,
    );
  }
  return parseHeader(bytes, HEADER_FILE);
}

export interface OpenVaultOptions {
  dir: string;
  clock?: Clock;
}

/**
 * A partition folder opened for use: its lock held, its audit log open, sealed until `unseal`.
 * Implements the PartitionVault the partition process drives.
 */
export class PartitionFolder implements PartitionVault {
  #store: SealedFileStore | undefined;
  #unsealing: Promise<SealedFileStore> | undefined;
  #closed = false;

  private constructor(
    readonly dir: string,
    readonly header: PartitionHeader,
    readonly audit: AuditLog,
    private readonly lock: DirLock,
  ) {}

  static async open({ dir, clock = systemClock }: OpenVaultOptions): Promise<PartitionFolder> {
    const exists = await stat(dir).catch(() => undefined);
    if (!exists?.isDirectory())
      throw new HsmError('CKR_TOKEN_NOT_PRESENT', `${dir} is not a partition folder: run signet hsm init`);
    await readHeader(dir);
    const lock = await acquireDirLock(dir);
    try {
      // Read again under the lock: the header never changes, but a restore may have just finished.
      const header = await readHeader(dir);
      const audit = await AuditLog.open({ dir, partitionId: header.id, auditKey: header.auditKey, clock });
      return new PartitionFolder(dir, header, audit, lock);
    } catch (error) {
      await lock.release();
      throw error;
    }
  }

  get partitionId(): string {
    return this.header.id;
  }

  get name(): string {
    return this.header.name;
  }

  status(): Pick<PartitionStatus, 'state' | 'sealing'> {
    return { state: this.#store ? 'unsealed' : 'sealed', sealing: { ...this.header.sealing } };
  }

  /** The store once unsealed. */
  get store(): SealedFileStore | undefined {
    return this.#store;
  }

  /**
   * Unseals with the secret or M shares, then loads and authenticates every object. Wrong
   * material is CKR_UNSEAL_FAILED; a damaged object or index is CKR_INTEGRITY_FAILED naming the file.
   */
  async unseal(material: UnsealMaterial): Promise<PartitionStore> {
    while (this.#unsealing) await this.#unsealing.catch(() => {});
    if (this.#closed) throw new HsmError('CKR_DEVICE_REMOVED', 'the partition folder is closed');
    if (this.#store) throw new HsmError('CKR_OPERATION_NOT_PERMITTED', 'partition is already unsealed');
    const attempt = (async () => {
      const keys = await unsealPartitionKeys(this.header, material);
      const store = await SealedFileStore.open(this.dir, this.header.id, keys);
      this.audit.setSigner(keys.auditSigning);
      return store;
    })();
    this.#unsealing = attempt;
    try {
      this.#store = await attempt;
      return this.#store;
    } finally {
      this.#unsealing = undefined;
    }
  }

  /** Closes the store and the audit log, then gives up the folder's lock. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    try {
      await this.#store?.close();
      await this.audit.close();
    } finally {
      await this.lock.release();
    }
  }
}

export function openPartitionVault(options: OpenVaultOptions): Promise<PartitionFolder> {
  return PartitionFolder.open(options);
}
