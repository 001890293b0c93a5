import type { KeyAlgorithm, KeyUsage, SignMechanism } from './types.ts';

/**
 * Where a partition keeps its key objects when they live on a token rather than in its sealed
 * folder (issue #25): the partition keeps everything else (users, PINs, roles, lockout, audit
 * chain, sessions, the socket) and asks this seam to create, find, destroy and sign. The
 * PKCS#11 implementation is Pkcs11Token (pkcs11/token.ts). Keys are named by CKA_ID (lowercase
 * hexadecimal) and CKA_LABEL; the partition records their purposes in its sealed store.
 */
export interface TokenKeys {
  /** The token and module, as `signet hsm status` shows them. */
  readonly token: { label: string; module: string };
  /** The RFC 7512 URI of the key with this label. */
  uriFor(label: string): string;
  /** Label and/or id named by a `pkcs11:` URI for this token; CKR_ARGUMENTS_BAD for another token. */
  parseUri(uri: string): { label?: string; id?: string };
  list(): Promise<TokenKeyEntry[]>;
  create(request: {
    id: string;
    label: string;
    algorithm: KeyAlgorithm;
    usages: KeyUsage[];
  }): Promise<TokenKeyEntry>;
  destroy(id: string): Promise<void>;
  /** Checks, before anything is audited as signed, that the token offers what this mechanism needs. */
  checkMechanism(mechanism: SignMechanism): void;
  sign(
    id: string,
    algorithm: KeyAlgorithm,
    mechanism: SignMechanism,
    data: Buffer,
    saltLength?: number,
  ): Promise<Uint8Array>;
  startStream(
    id: string,
    algorithm: KeyAlgorithm,
    mechanism: SignMechanism,
    saltLength?: number,
  ): Promise<TokenSignStream>;
  close(): Promise<void>;
}

/** A key pair on the token. */
export interface TokenKeyEntry {
  /** CKA_ID, lowercase hexadecimal. */
  id: string;
  /** CKA_LABEL. */
  label: string;
  algorithm: KeyAlgorithm;
  usages: KeyUsage[];
  extractable: boolean;
  /** SubjectPublicKeyInfo, DER. */
  publicKey: Uint8Array;
}

export interface TokenSignStream {
  /** C_SignUpdate (or hashing / gathering on the host); synchronous, so updates apply in call order. */
  update(chunk: Buffer): void;
  final(): Promise<Uint8Array>;
  cancel(): void;
}
