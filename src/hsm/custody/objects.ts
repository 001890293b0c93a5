import type { KeyObject } from 'node:crypto';
import { KEY_ID, USER_NAME } from '../key-uri.ts';
import type { StoredKeyObject, UserRecord } from '../store.ts';
import { HsmError, KEY_ALGORITHMS, KEY_USAGES, SIGN_PURPOSES } from '../types.ts';
import { canonicalJson, fromBase64, isRecord, toBase64 } from './codec.ts';
import { open, seal } from './seal.ts';

/**
 * The two kinds of sealed file in a partition folder.
 *
 * keys/<id>.key holds one key object: its public attributes in the clear and its PKCS#8 private
 * key sealed (AES-256-GCM) with the partition id, object id and every attribute as associated
 * data, so an attribute cannot be changed (say, extractable flipped to true) nor a file renamed
 * to another id without the tag failing.
 *
 * index.sealed holds the partition's metadata, all sealed: its name, the users with their PIN
 * hashes and lockout state, and the SHA-256 of every key file. The index is what makes deleting,
 * swapping or adding a key file detectable; its generation counts writes.
 */
export const INDEX_FILE = 'index.sealed';
export const KEYS_DIR = 'keys';
const KEY_FORMAT = 'signet-hsm-key';
const INDEX_FORMAT = 'signet-hsm-index';

export { KEY_ID, USER_NAME };

export function keyFile(id: string): string {
  return `${KEYS_DIR}/${id}.key`;
}

export interface IndexContent {
  generation: number;
  name: string;
  createdAt: string;
  users: UserRecord[];
  /** Key id -> SHA-256 (hex) of its file as stored. */
  keys: Record<string, string>;
  /**
   * Key id -> the certificate stored beside that key (issue #26). Kept in the index, not in a file
   * of its own, so that adding or replacing one is a single atomic write and it is sealed, backed
   * up and restored with everything else. Absent when there is none.
   */
  certificates?: Record<string, IndexCertificate>;
  /**
   * Issue #23. Keys destroyed (here or on another member of the cluster), kept for good so a member
   * that missed the destruction never brings the key back.
   */
  tombstones?: Record<string, KeyTombstone>;
  /** Users deleted, at the version of the deletion (replication/versions.ts). */
  userTombstones?: Record<string, { version: number; origin: string }>;
  /** The cluster's membership, as the officer last signed it (replication/membership.ts). */
  membership?: unknown;
}

export interface KeyTombstone {
  label: string;
  destroyedAt: string;
}

export interface IndexCertificate {
  label: string;
  /** DER, base64. */
  der: string;
  storedAt: string;
}

function integrity(file: string, why: string): never {
  throw new HsmError('CKR_INTEGRITY_FAILED', `${file} ${why}`);
}

type KeyAttributes = Omit<StoredKeyObject, 'id' | 'privateKey' | 'publicKey'> & { publicKey: string };

function attributesOf(key: StoredKeyObject): KeyAttributes {
  return {
    label: key.label,
    algorithm: key.algorithm,
    usages: [...key.usages],
    purposes: [...key.purposes],
    extractable: key.extractable,
    createdAt: key.createdAt,
    publicKey: toBase64(key.publicKey),
  };
}

function keyAad(partitionId: string, id: string, attributes: KeyAttributes): Buffer {
  return Buffer.from(canonicalJson({ format: KEY_FORMAT, v: 1, partition: partitionId, id, attributes }));
}

export function checkKeyObject(key: StoredKeyObject): void {
  const ok =
    typeof key.id === 'string' &&
    KEY_ID.test(key.id) &&
    typeof key.label === 'string' &&
    key.label.length > 0 &&
    (KEY_ALGORITHMS as readonly string[]).includes(key.algorithm) &&
    Array.isArray(key.usages) &&
    key.usages.every((usage) => (KEY_USAGES as readonly string[]).includes(usage)) &&
    Array.isArray(key.purposes) &&
    key.purposes.every((purpose) => (SIGN_PURPOSES as readonly string[]).includes(purpose)) &&
    typeof key.extractable === 'boolean' &&
    typeof key.createdAt === 'string' &&
    key.publicKey instanceof Uint8Array &&
    // Empty for a key whose private half lives on a PKCS#11 token (issue #25): the record then
    // keeps its purposes and creation time, sealed and authenticated like any other.
    key.privateKey instanceof Uint8Array;
  if (!ok) throw new HsmError('CKR_ARGUMENTS_BAD', 'the key object to store is malformed');
}

export function sealKeyObject(objectsKey: KeyObject, partitionId: string, key: StoredKeyObject): Buffer {
  const attributes = attributesOf(key);
  const { nonce, sealed } = seal(objectsKey, key.privateKey, keyAad(partitionId, key.id, attributes));
  const file = {
    format: KEY_FORMAT,
    v: 1,
    partition: partitionId,
    id: key.id,
    attributes,
    nonce: toBase64(nonce),
    sealed: toBase64(sealed),
  };
  return Buffer.from(`${JSON.stringify(file)}\n`);
}

function parseJson(bytes: Uint8Array, file: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch {
    integrity(file, 'is not valid JSON: it was damaged or altered');
  }
  if (!isRecord(value)) integrity(file, 'is not a sealed object');
  return value;
}

/** The label in a key file's clear attributes, for error messages about a file that fails its checks. */
export function peekLabel(bytes: Uint8Array): string | undefined {
  try {
    const value: unknown = JSON.parse(Buffer.from(bytes).toString('utf8'));
    if (isRecord(value) && isRecord(value.attributes) && typeof value.attributes.label === 'string') {
      return value.attributes.label;
    }
  } catch {}
  return undefined;
}

export function openKeyObject(
  objectsKey: KeyObject,
  partitionId: string,
  id: string,
  bytes: Uint8Array,
  file = keyFile(id),
): StoredKeyObject {
  const value = parseJson(bytes, file);
  if (!Buffer.from(`${JSON.stringify(value)}\n`).equals(Buffer.from(bytes))) {
    integrity(file, 'is not in its canonical form: it was damaged or altered');
  }
  const { attributes } = value;
  if (value.format !== KEY_FORMAT || value.v !== 1 || value.partition !== partitionId || value.id !== id) {
    integrity(file, `is not key object ${id} of this partition`);
  }
  if (!isRecord(attributes)) integrity(file, 'has no attributes');
  let nonce: Buffer;
  let sealed: Buffer;
  let publicKey: Buffer;
  try {
    nonce = fromBase64(value.nonce, 'nonce');
    sealed = fromBase64(value.sealed, 'sealed');
    publicKey = fromBase64(attributes.publicKey, 'publicKey');
  } catch {
    integrity(file, 'has malformed fields: it was damaged or altered');
  }
  const privateKey = open(
    objectsKey,
    { nonce, sealed },
    keyAad(partitionId, id, attributes as unknown as KeyAttributes),
  );
  if (!privateKey) integrity(file, 'fails authentication (AES-GCM): it was damaged or altered');
  const key: StoredKeyObject = {
    id,
    label: attributes.label as string,
    algorithm: attributes.algorithm as StoredKeyObject['algorithm'],
    usages: attributes.usages as StoredKeyObject['usages'],
    purposes: attributes.purposes as StoredKeyObject['purposes'],
    extractable: attributes.extractable as boolean,
    createdAt: attributes.createdAt as string,
    publicKey: new Uint8Array(publicKey),
    privateKey: new Uint8Array(privateKey),
  };
  privateKey.fill(0);
  try {
    checkKeyObject(key);
  } catch {
    integrity(file, 'holds malformed attributes');
  }
  return key;
}

function indexAad(partitionId: string): Buffer {
  return Buffer.from(canonicalJson({ format: INDEX_FORMAT, v: 1, partition: partitionId }));
}

export function checkUser(user: UserRecord): void {
  const ok =
    isRecord(user) &&
    typeof user.name === 'string' &&
    USER_NAME.test(user.name) &&
    (user.role === 'officer' || user.role === 'user') &&
    typeof user.pinHash === 'string' &&
    Number.isSafeInteger(user.failedLogins) &&
    user.failedLogins >= 0 &&
    typeof user.locked === 'boolean' &&
    (user.version === undefined || (Number.isSafeInteger(user.version) && user.version >= 0)) &&
    (user.origin === undefined || typeof user.origin === 'string') &&
    (user.failures === undefined ||
      (isRecord(user.failures) &&
        Object.values(user.failures).every((n) => Number.isSafeInteger(n) && (n as number) >= 0)));
  if (!ok) throw new HsmError('CKR_ARGUMENTS_BAD', 'the user record to store is malformed');
}

/** A user record's stored fields, and only those (the cluster's ones when set). */
export function userFields(user: UserRecord): UserRecord {
  const { name, role, pinHash, failedLogins, locked, version, origin, failures } = user;
  return {
    name,
    role,
    pinHash,
    failedLogins,
    locked,
    ...(version !== undefined ? { version } : {}),
    ...(origin !== undefined ? { origin } : {}),
    ...(failures !== undefined ? { failures: { ...failures } } : {}),
  };
}

export function sealIndex(objectsKey: KeyObject, partitionId: string, index: IndexContent): Buffer {
  const plaintext = Buffer.from(
    JSON.stringify({
      generation: index.generation,
      name: index.name,
      createdAt: index.createdAt,
      users: index.users.map(userFields),
      keys: index.keys,
      ...(index.certificates && Object.keys(index.certificates).length > 0
        ? { certificates: index.certificates }
        : {}),
      ...(index.tombstones && Object.keys(index.tombstones).length > 0
        ? { tombstones: index.tombstones }
        : {}),
      ...(index.userTombstones && Object.keys(index.userTombstones).length > 0
        ? { userTombstones: index.userTombstones }
        : {}),
      ...(index.membership !== undefined ? { membership: index.membership } : {}),
    }),
  );
  const { nonce, sealed } = seal(objectsKey, plaintext, indexAad(partitionId));
  plaintext.fill(0);
  const file = {
    format: INDEX_FORMAT,
    v: 1,
    partition: partitionId,
    nonce: toBase64(nonce),
    sealed: toBase64(sealed),
  };
  return Buffer.from(`${JSON.stringify(file)}\n`);
}

export function openIndex(
  objectsKey: KeyObject,
  partitionId: string,
  bytes: Uint8Array,
  file = INDEX_FILE,
): IndexContent {
  const value = parseJson(bytes, file);
  if (!Buffer.from(`${JSON.stringify(value)}\n`).equals(Buffer.from(bytes))) {
    integrity(file, 'is not in its canonical form: it was damaged or altered');
  }
  if (value.format !== INDEX_FORMAT || value.v !== 1 || value.partition !== partitionId) {
    integrity(file, 'is not the index of this partition');
  }
  let nonce: Buffer;
  let sealed: Buffer;
  try {
    nonce = fromBase64(value.nonce, 'nonce');
    sealed = fromBase64(value.sealed, 'sealed');
  } catch {
    integrity(file, 'has malformed fields: it was damaged or altered');
  }
  const plaintext = open(objectsKey, { nonce, sealed }, indexAad(partitionId));
  if (!plaintext)
    integrity(
      file,
      'fails authentication (AES-GCM): it was damaged, altered or sealed by another master key',
    );
  let content: unknown;
  try {
    content = JSON.parse(plaintext.toString('utf8'));
  } catch {
    integrity(file, 'holds malformed content');
  } finally {
    plaintext.fill(0);
  }
  const index = content as IndexContent;
  const ok =
    isRecord(content) &&
    Number.isSafeInteger(index.generation) &&
    typeof index.name === 'string' &&
    typeof index.createdAt === 'string' &&
    Array.isArray(index.users) &&
    isRecord(index.keys) &&
    Object.entries(index.keys).every(([id, hash]) => KEY_ID.test(id) && typeof hash === 'string') &&
    (index.certificates === undefined ||
      (isRecord(index.certificates) &&
        Object.entries(index.certificates).every(
          ([id, c]) =>
            id in index.keys &&
            isRecord(c) &&
            typeof c.label === 'string' &&
            typeof c.der === 'string' &&
            typeof c.storedAt === 'string',
        ))) &&
    (index.tombstones === undefined ||
      (isRecord(index.tombstones) &&
        Object.entries(index.tombstones).every(
          ([id, t]) => KEY_ID.test(id) && isRecord(t) && typeof t.label === 'string',
        ))) &&
    (index.userTombstones === undefined ||
      (isRecord(index.userTombstones) &&
        Object.values(index.userTombstones).every(
          (t) => isRecord(t) && Number.isSafeInteger(t.version) && typeof t.origin === 'string',
        )));
  if (!ok) integrity(file, 'holds malformed content');
  try {
    for (const user of index.users) checkUser(user);
  } catch {
    integrity(file, 'holds a malformed user record');
  }
  return index;
}
