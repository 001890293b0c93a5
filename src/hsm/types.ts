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

/**
 * Mechanisms over input the caller prepared, for PKCS#11 clients of the p11-kit front end (p11/):
 * `ecdsa-raw` (CKM_ECDSA, a digest), `ecdsa-sha1` (CKM_ECDSA_SHA1), `rsa-pkcs1-raw` (CKM_RSA_PKCS, a
 * DigestInfo) and `rsa-pss-raw` (CKM_RSA_PKCS_PSS, a digest). Only keys whose purposes are exactly
 * ['other'] sign with them (raw-sign.ts): they could cover a to-be-signed certificate unlinted.
 */
export const RAW_SIGN_MECHANISMS = ['ecdsa-raw', 'ecdsa-sha1', 'rsa-pkcs1-raw', 'rsa-pss-raw'] as const;
export type RawSignMechanism = (typeof RAW_SIGN_MECHANISMS)[number];

export interface RawSignRequest {
  key: KeyRef;
  mechanism: RawSignMechanism;
  /** The digest (ecdsa-raw, rsa-pss-raw), the DigestInfo (rsa-pkcs1-raw) or the message (ecdsa-sha1). */
  data: Uint8Array;
  /** rsa-pss-raw: the hash of the digest (MGF1 uses the same) and the salt length in octets. */
  pss?: { hash: 'sha1' | 'sha256' | 'sha384' | 'sha512'; saltLength: number };
}

/** What a signature is for; recorded in the partition's audit log and used by `signet audit reconcile`. */
export const SIGN_PURPOSES = ['certificate', 'crl', 'ocsp', 'other'] as const;
export type SignPurpose = (typeof SIGN_PURPOSES)[number];

/** What a key may be used for (PKCS#11 CKA_SIGN / CKA_VERIFY). */
export const KEY_USAGES = ['sign', 'verify'] as const;
export type KeyUsage = (typeof KEY_USAGES)[number];

export const ROLES = ['officer', 'user'] as const;
export type Role = (typeof ROLES)[number];

/** Injected time source: the project's one `Clock` (src/lib, which src/hsm may import). */
export type { Clock } from '../lib/clock.ts';

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
  /**
   * Default false. CA keys are always non-extractable. The emulated partition creates only
   * non-extractable keys and refuses `true` (CKR_ATTRIBUTE_VALUE_INVALID); a PKCS#11 backend may honour it.
   */
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

/** The first step of a multi-part signature (C_SignInit); `signStream` drives all three steps. */
export type SignInitRequest = Omit<SignRequest, 'data'>;

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
  /** For backend 'pkcs11': the token the keys live on and the module that reaches it. */
  token?: { label: string; module: string };
  /** Protocol version the partition speaks. */
  protocolVersion: number;
  /** Present when unsealed and logged in. */
  keyCount?: number;
  /** How the master key is sealed: one secret, or M of N custodian shares. */
  sealing?: { kind: 'secret' } | { kind: 'shares'; threshold: number; shares: number };
  /** The user this connection is logged in as, if any. */
  user?: { name: string; role: Role };
}

export interface LoginRequest {
  user: string;
  pin: string;
}

/** Unseal material: the partition's unseal secret, or M custodian shares. */
export interface UnsealRequest {
  secret?: Uint8Array;
  shares?: Uint8Array[];
}

/** A partition user as the officer sees it; never carries the PIN hash. */
export interface UserInfo {
  name: string;
  role: Role;
  failedLogins: number;
  locked: boolean;
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
  /**
   * Asks for the private key (C_WrapKey / reading CKA_VALUE). Exists so that a caller that tries
   * is refused by the partition itself: a non-extractable key fails with CKR_KEY_UNEXTRACTABLE.
   * No backend in this project returns private key material in clear.
   */
  exportKey(request: KeyRef): Promise<Uint8Array>;
  /** Random bytes from the partition's generator (C_GenerateRandom), 1 to 65536 at a time. */
  generateRandom(request: { length: number }): Promise<Uint8Array>;
  close(): Promise<void>;
}

/**
 * Session control of a partition (C_Login / C_Logout, plus the emulated partition's unseal). Kept
 * apart from KeyManager so a KeyManager can be handed to code that must not log in or out.
 */
export interface PartitionSessionControl {
  /** CKR_PIN_INCORRECT (also for an unknown user), CKR_PIN_LOCKED, CKR_USER_ALREADY_LOGGED_IN. */
  login(request: LoginRequest): Promise<{ user: string; role: Role }>;
  logout(): Promise<void>;
  /** CKR_UNSEAL_FAILED on wrong material; CKR_OPERATION_NOT_PERMITTED when already unsealed. */
  unseal(request: UnsealRequest): Promise<PartitionStatus>;
}

/** User management (officer only). PINs are hashed inside the partition; none is ever returned. */
export interface PartitionUserAdmin {
  createUser(request: { name: string; role: Role; pin: string }): Promise<UserInfo>;
  listUsers(): Promise<UserInfo[]>;
  /** Clears the lock and the failed-login count. */
  unlockUser(request: { name: string }): Promise<UserInfo>;
  setUserPin(request: { name: string; pin: string }): Promise<void>;
  deleteUser(request: { name: string }): Promise<void>;
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
  CKR_USER_ALREADY_LOGGED_IN: 'hsm.already_logged_in',
  CKR_ATTRIBUTE_VALUE_INVALID: 'hsm.attribute_value_invalid',
  CKR_MECHANISM_PARAM_INVALID: 'hsm.mechanism_param_invalid',
  CKR_PIN_LEN_RANGE: 'hsm.pin_len_range',
  CKR_TOKEN_NOT_PRESENT: 'hsm.not_initialized',
  CKR_SESSION_CLOSED: 'hsm.session_closed',
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

  /** The message without the `CKR_...: ` prefix, as it crosses the socket. */
  get reason(): string {
    return this.message.slice(this.rv.length + 2);
  }
}

export function isHsmReturnValue(value: unknown): value is HsmReturnValue {
  return typeof value === 'string' && Object.hasOwn(HSM_REASONS, value);
}

/** True for an HsmError, optionally with the given return value. */
export function isHsmError(error: unknown, rv?: HsmReturnValue): error is HsmError {
  return error instanceof HsmError && (rv === undefined || error.rv === rv);
}
