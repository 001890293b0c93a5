/**
 * The contract of a key custody backend (DESIGN.md "hsm/"): a small, PKCS#11-shaped surface.
 * Every method takes a request object; keys are addressed by URI
 * (`hsm:partition=issuing;label=intermediate-2026`, RFC 7512 `pkcs11:token=...;object=...`).
 * This folder is a leaf: it knows nothing of certificates, databases or HTTP.
 */

/** Key algorithm names as users write them (DESIGN.md "Key and algorithm names"). */
export const KEY_ALGORITHMS = [
  'ecdsa-p256',
  'ecdsa-p384',
  'rsa-2048',
  'rsa-3072',
  'rsa-4096',
  'ed25519',
] as const;
export type KeyAlgorithm = (typeof KEY_ALGORITHMS)[number];

/** Signature mechanisms, named after their PKCS#11 counterparts (CKM_ECDSA_SHA256, CKM_SHA256_RSA_PKCS, ...). */
export const SIGN_MECHANISMS = [
  'ecdsa-sha256',
  'ecdsa-sha384',
  'rsa-pkcs1-sha256',
  'rsa-pkcs1-sha384',
  'rsa-pkcs1-sha512',
  'rsa-pss-sha256',
  'rsa-pss-sha384',
  'rsa-pss-sha512',
  'ed25519',
] as const;
export type SignMechanism = (typeof SIGN_MECHANISMS)[number];

/** What a signature is for; recorded in the partition's audit log and used by `signet audit reconcile`. */
export const SIGN_PURPOSES = ['certificate', 'crl', 'ocsp', 'other'] as const;
export type SignPurpose = (typeof SIGN_PURPOSES)[number];

/** What a key may be used for (PKCS#11 CKA_SIGN / CKA_VERIFY). */
export const KEY_USAGES = ['sign', 'verify'] as const;
export type KeyUsage = (typeof KEY_USAGES)[number];

export type Role = 'officer' | 'user';

/** How a caller names a key: by URI, by label or by id. Exactly one must be given. */
export interface KeyRef {
  uri?: string;
  label?: string;
  id?: string;
}

/** Public attributes of a key object. Never carries private key material. */
export interface KeyInfo {
  /** Stable object id (CKA_ID), lowercase hex. */
  id: string;
  /** Unique label within the partition (CKA_LABEL). */
  label: string;
  algorithm: KeyAlgorithm;
  usages: KeyUsage[];
  /** Purposes this key may sign for; a signature for another purpose is refused. */
  purposes: SignPurpose[];
  /** False for every CA key. */
  extractable: boolean;
  /** RFC 3339. */
  createdAt: string;
  /** `hsm:partition=NAME;label=LABEL` or `pkcs11:...`. */
  uri: string;
  /** SubjectPublicKeyInfo, DER. */
  publicKey: Uint8Array;
}

export interface CreateKeyRequest {
  label: string;
  algorithm: KeyAlgorithm;
  /** Default false. CA keys are always non-extractable. */
  extractable?: boolean;
  /** Default ['sign', 'verify']. */
  usages?: KeyUsage[];
  /** Default: every purpose. */
  purposes?: SignPurpose[];
}

export interface SignRequest {
  key: KeyRef;
  mechanism: SignMechanism;
  purpose: SignPurpose;
  /** The whole message (the partition hashes it; ECDSA answers IEEE P1363 r||s). */
  data: Uint8Array;
  /** RSA-PSS salt length in octets; default: the hash length. */
  saltLength?: number;
}

export interface SignStreamRequest {
  key: KeyRef;
  mechanism: SignMechanism;
  purpose: SignPurpose;
  saltLength?: number;
  /** Chunks of the message, each under the frame limit (C_SignUpdate). */
  chunks: AsyncIterable<Uint8Array> | Iterable<Uint8Array>;
}

export type PartitionState = 'uninitialized' | 'sealed' | 'unsealed';

export interface PartitionStatus {
  name: string;
  state: PartitionState;
  /** Backend name: 'emulated' or 'pkcs11'. */
  backend: string;
  /** Protocol version the partition speaks. */
  protocolVersion: number;
  /** Present when unsealed and logged in. */
  keyCount?: number;
  /** How the master key is sealed: one secret, or M of N custodian shares. */
  sealing?: { kind: 'secret' } | { kind: 'shares'; threshold: number; shares: number };
  /** The user this connection is logged in as, if any. */
  user?: { name: string; role: Role };
}

/**
 * A key manager (step-ca's kms.KeyManager, PKCS#11's C_* calls). The CA talks to one over the
 * partition socket (RemotePartition in client.ts); the partition process serves one backed by the
 * emulated store or, later, by a PKCS#11 module. One conformance suite runs against every backend.
 */
export interface KeyManager {
  status(): Promise<PartitionStatus>;
  createKey(request: CreateKeyRequest): Promise<KeyInfo>;
  /** Undefined when no key matches. */
  findKey(request: KeyRef): Promise<KeyInfo | undefined>;
  listKeys(): Promise<KeyInfo[]>;
  /** SubjectPublicKeyInfo, DER. */
  getPublicKey(request: KeyRef): Promise<Uint8Array>;
  sign(request: SignRequest): Promise<Uint8Array>;
  /** Multi-part signing (C_SignInit / C_SignUpdate / C_SignFinal). Ed25519 gathers the whole message. */
  signStream(request: SignStreamRequest): Promise<Uint8Array>;
  destroyKey(request: KeyRef): Promise<void>;
  /** Random bytes from the partition's generator (C_GenerateRandom). */
  generateRandom(request: { length: number }): Promise<Uint8Array>;
  close(): Promise<void>;
}

/** PKCS#11-style return values that cross the socket as stable reasons. */
export const HSM_REASONS = {
  CKR_ARGUMENTS_BAD: 'hsm.arguments_bad',
  CKR_KEY_UNEXTRACTABLE: 'hsm.key_unextractable',
  CKR_KEY_FUNCTION_NOT_PERMITTED: 'hsm.key_function_not_permitted',
  CKR_KEY_TYPE_INCONSISTENT: 'hsm.key_type_inconsistent',
  CKR_MECHANISM_INVALID: 'hsm.mechanism_invalid',
  CKR_KEY_HANDLE_INVALID: 'hsm.key_not_found',
  CKR_OBJECT_EXISTS: 'hsm.key_exists',
  CKR_USER_NOT_LOGGED_IN: 'hsm.not_logged_in',
  CKR_PIN_INCORRECT: 'hsm.pin_incorrect',
  CKR_PIN_LOCKED: 'hsm.pin_locked',
  CKR_USER_TYPE_INVALID: 'hsm.user_type_invalid',
  CKR_OPERATION_NOT_PERMITTED: 'hsm.operation_not_permitted',
  CKR_TOKEN_SEALED: 'hsm.sealed',
  CKR_UNSEAL_FAILED: 'hsm.unseal_failed',
  CKR_DATA_INVALID: 'hsm.data_invalid',
  CKR_DATA_LEN_RANGE: 'hsm.data_too_large',
  CKR_OPERATION_ACTIVE: 'hsm.operation_active',
  CKR_OPERATION_NOT_INITIALIZED: 'hsm.operation_not_initialized',
  CKR_FUNCTION_NOT_SUPPORTED: 'hsm.function_not_supported',
  CKR_DEVICE_ERROR: 'hsm.device_error',
  CKR_INTEGRITY_FAILED: 'hsm.integrity_failed',
  CKR_DEVICE_REMOVED: 'hsm.unavailable',
  CKR_PROTOCOL: 'hsm.protocol_error',
} as const;
export type HsmReturnValue = keyof typeof HSM_REASONS;

/** The one error the partition (and its client) raises for reasons a caller handles by type. */
export class HsmError extends Error {
  override readonly name = 'HsmError';
  readonly code: (typeof HSM_REASONS)[HsmReturnValue];
  constructor(
    readonly rv: HsmReturnValue,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(`${rv}: ${message}`, options);
    this.code = HSM_REASONS[rv];
  }
}
