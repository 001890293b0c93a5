/**
 * What the emulated partition keeps, and the seams between the partition's logic (partition.ts,
 * server.ts) and its custody (sealed file store, users and PINs, audit chain).
 * An in-memory store serves unit tests; the sealed file store is what `signet hsm serve` uses.
 *
 * How custody plugs in (see PartitionCustody at the end): `signet hsm serve --dir DIR` loads
 * `src/hsm/custody/index.ts` and calls its `openPartitionCustody({ dir, name, clock })`; the
 * result's vault, audit sink and PIN functions are handed to `EmulatedPartition.open`.
 */
import type {
  Clock,
  KeyAlgorithm,
  KeyUsage,
  PartitionStatus,
  RawSignMechanism,
  Role,
  SignMechanism,
  SignPurpose,
  UnsealRequest,
} from './types.ts';

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

/**
 * An X.509 certificate stored beside its key (PKCS#11 CKO_CERTIFICATE, issue #26), so PKCS#11
 * clients find the pair by label or id. At most one per key; it goes when the key goes.
 */
export interface StoredCertificate {
  /** The key it certifies (CKA_ID of both). */
  keyId: string;
  /** CKA_LABEL of the certificate object. */
  label: string;
  /** The certificate, DER. */
  der: Uint8Array;
  /** RFC 3339. */
  storedAt: string;
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
  /**
   * In a cluster (issue #23, replication/versions.ts): the record's version, the id of the member
   * that wrote it, and the failed logins each member counted against that version (their sum is
   * failedLogins). Absent on records written before, read as version 0.
   */
  version?: number;
  origin?: string;
  failures?: Record<string, number>;
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
  /**
   * Optional: without it the partition answers deleteUser with CKR_FUNCTION_NOT_SUPPORTED. A store
   * that replicates keeps `tombstone` (the deletion's version) so a peer's older copy stays deleted.
   */
  deleteUser?(name: string, tombstone?: { version: number; origin: string }): Promise<void>;
  /** Optional: the version at which a deleted user was deleted (a new user of that name starts above it). */
  userTombstone?(name: string): Promise<{ version: number; origin: string } | undefined>;
  /**
   * Optional, with putCertificate and deleteCertificate: certificates stored beside keys. Without
   * them a store keeps none (importing one answers CKR_FUNCTION_NOT_SUPPORTED). deleteKey also
   * removes the key's certificate.
   */
  listCertificates?(): Promise<StoredCertificate[]>;
  /** Adds or replaces the certificate of `keyId`, which must be a stored key. */
  putCertificate?(certificate: StoredCertificate): Promise<void>;
  deleteCertificate?(keyId: string): Promise<void>;
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
  /** The signature mechanism, for sign operations (raw ones from the PKCS#11 front end too). */
  mechanism?: SignMechanism | RawSignMechanism;
  /** Octets signed (the whole message for a multi-part signature). */
  length?: number;
  /** The name of the user an officer operation acted on (createUser, unlockUser, ...). */
  subject?: string;
  /** Connection (session) number within this run of the partition process. */
  session?: number;
  /** A short, secret-free note (why a multi-part operation was abandoned, ...). */
  detail?: string;
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
  unseal(material: UnsealRequest): Promise<PartitionStore>;
  /**
   * Optional: the store of a vault that is already unsealed when the partition starts (the
   * in-memory vault of tests and benchmarks). The partition calls it once at start when
   * `status().state` is 'unsealed'.
   */
  openUnsealed?(): Promise<PartitionStore>;
}

/** Checks a PIN against a user's stored hash; must compare in constant time. */
export type PinVerifier = (user: UserRecord, pin: string) => Promise<boolean>;
/** Makes the self-describing slow hash stored in UserRecord.pinHash. May throw HsmError CKR_PIN_LEN_RANGE. */
export type PinHasher = (pin: string) => Promise<string>;

/**
 * Everything the partition logic needs from custody, for one partition folder. `signet hsm serve
 * --dir DIR` obtains it from `openPartitionCustody` in src/hsm/custody/index.ts.
 */
export interface PartitionCustody {
  vault: PartitionVault;
  audit: AuditSink;
  verifyPin: PinVerifier;
  hashPin: PinHasher;
  /** Consecutive failed logins that lock a user; the partition's default is 5. */
  maxFailedLogins?: number;
}

/** `name`, when given, must match the name the folder records. */
export type OpenPartitionCustody = (options: {
  dir: string;
  name?: string;
  clock: Clock;
}) => Promise<PartitionCustody>;
