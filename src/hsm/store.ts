/**
 * What the emulated partition keeps, and the seams between the partition's logic (partition.ts,
 * server.ts) and its custody (sealed file store, users and PINs, audit chain).
 * An in-memory store serves unit tests; the sealed file store is what `signet hsm serve` uses.
 */
import type { KeyAlgorithm, KeyUsage, PartitionStatus, Role, SignPurpose } from './types.ts';

/** A key object as the partition holds it once unsealed. Only ever encrypted at rest. */
export interface StoredKeyObject {
  id: string;
  label: string;
  algorithm: KeyAlgorithm;
  usages: KeyUsage[];
  purposes: SignPurpose[];
  extractable: boolean;
  createdAt: string;
  /** SubjectPublicKeyInfo, DER. */
  publicKey: Uint8Array;
  /** PKCS#8 PrivateKeyInfo, DER. Never leaves the partition process for a non-extractable key. */
  privateKey: Uint8Array;
}

export interface UserRecord {
  name: string;
  role: Role;
  /** A slow hash (scrypt) with its parameters and salt, self-describing. */
  pinHash: string;
  /** Consecutive failed logins; reset on success. */
  failedLogins: number;
  /** Locked after too many failures, until an officer unlocks. Survives restarts. */
  locked: boolean;
}

/** Durable storage of an unsealed partition. Each write is atomic and durable before it resolves. */
export interface PartitionStore {
  listKeys(): Promise<StoredKeyObject[]>;
  getKey(id: string): Promise<StoredKeyObject | undefined>;
  putKey(key: StoredKeyObject): Promise<void>;
  deleteKey(id: string): Promise<void>;
  listUsers(): Promise<UserRecord[]>;
  getUser(name: string): Promise<UserRecord | undefined>;
  putUser(user: UserRecord): Promise<void>;
  close(): Promise<void>;
}

/** One audit record as the partition produces it; the log adds sequence numbers and the hash chain. */
export interface AuditEvent {
  /** RFC 3339. */
  time: string;
  user?: string;
  op: string;
  keyId?: string;
  keyLabel?: string;
  purpose?: SignPurpose;
  /** SHA-256 (hex) of the data signed. */
  digest?: string;
  /** 'ok', or the failure's reason code (hsm.*). */
  result: string;
}

/** Append-only, hash-chained; `append` resolves only once the record is durable (group commit allowed). */
export interface AuditSink {
  append(event: AuditEvent): Promise<void>;
  close(): Promise<void>;
}

/** How the partition process learns whether it is sealed and unseals itself. */
export interface PartitionVault {
  status(): Pick<PartitionStatus, 'state' | 'sealing'>;
  /** Opens the store with the unseal secret or M custodian shares; throws HsmError CKR_UNSEAL_FAILED otherwise. */
  unseal(material: { secret?: Uint8Array; shares?: Uint8Array[] }): Promise<PartitionStore>;
}
