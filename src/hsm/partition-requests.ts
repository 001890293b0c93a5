import { generateKeyPair, type Hash, type KeyObject, type Sign, type SignKeyObjectInput } from 'node:crypto';
import { KEY_LABEL } from './key-uri.ts';
import type { KeyAlgorithmSpec } from './mechanisms.ts';
import type { LoadedKey } from './partition.ts';
import type { TokenSignStream } from './token-keys.ts';
import {
  type CreateKeyRequest,
  HsmError,
  isHsmError,
  KEY_ALGORITHMS,
  KEY_USAGES,
  type KeyInfo,
  SIGN_MECHANISMS,
  SIGN_PURPOSES,
  type SignInitRequest,
  type SignMechanism,
  type SignPurpose,
} from './types.ts';

/**
 * Checks of the requests a partition session receives, and the small helpers the partition and
 * its sessions share (key generation, error wrapping, an open multi-part signature).
 */

export function generate(spec: KeyAlgorithmSpec): Promise<{ privateKey: KeyObject }> {
  return new Promise((resolve, reject) => {
    const done = (error: Error | null, _publicKey: KeyObject, privateKey: KeyObject) =>
      error
        ? reject(new HsmError('CKR_DEVICE_ERROR', 'key generation failed', { cause: error }))
        : resolve({ privateKey });
    const g = spec.generate;
    if (g.type === 'ec') generateKeyPair('ec', { namedCurve: g.namedCurve }, done);
    else if (g.type === 'rsa')
      generateKeyPair('rsa', { modulusLength: g.modulusLength, publicExponent: 0x10001 }, done);
    else generateKeyPair('ed25519', {}, done);
  });
}

export const copyInfo = (info: KeyInfo): KeyInfo => ({
  ...info,
  usages: [...info.usages],
  purposes: [...info.purposes],
  publicKey: Uint8Array.from(info.publicKey),
});

export const bad = (message: string) => new HsmError('CKR_ARGUMENTS_BAD', message);

export function toHsmError(error: unknown, partition: { log(line: string): void }, op: string): HsmError {
  if (isHsmError(error)) return error;
  partition.log(`${op} failed: ${error instanceof Error ? error.message : String(error)}`);
  return new HsmError('CKR_DEVICE_ERROR', `${op} failed inside the partition`, { cause: error });
}

export function checkCreateKey(request: CreateKeyRequest): void {
  if (typeof request !== 'object' || request === null) throw bad('createKey takes a request object');
  if (typeof request.label !== 'string' || !KEY_LABEL.test(request.label)) {
    throw bad('label must match [A-Za-z0-9][A-Za-z0-9._-]{0,63}');
  }
  if (!(KEY_ALGORITHMS as readonly string[]).includes(request.algorithm)) {
    throw bad(`algorithm must be one of ${KEY_ALGORITHMS.join(', ')}`);
  }
  if (request.extractable !== undefined && typeof request.extractable !== 'boolean')
    throw bad('extractable is a boolean');
  if (request.extractable) {
    throw new HsmError('CKR_ATTRIBUTE_VALUE_INVALID', 'this partition creates only non-extractable keys');
  }
  checkList('usages', request.usages, KEY_USAGES);
  checkList('purposes', request.purposes, SIGN_PURPOSES);
}

export function checkList(name: string, value: unknown, allowed: readonly string[]): void {
  if (value === undefined) return;
  if (!Array.isArray(value) || value.length === 0 || value.length > allowed.length) {
    throw bad(`${name} must be a non-empty list of ${allowed.join(', ')}`);
  }
  for (const item of value)
    if (!allowed.includes(item)) throw bad(`${name} must be drawn from ${allowed.join(', ')}`);
  if (new Set(value).size !== value.length) throw bad(`${name} lists an entry twice`);
}

export function checkSignParams(request: SignInitRequest): void {
  if (typeof request !== 'object' || request === null) throw bad('sign takes a request object');
  if (!(SIGN_MECHANISMS as readonly string[]).includes(request.mechanism)) {
    throw new HsmError('CKR_MECHANISM_INVALID', `mechanism must be one of ${SIGN_MECHANISMS.join(', ')}`);
  }
  if (!(SIGN_PURPOSES as readonly string[]).includes(request.purpose)) {
    throw bad(`purpose must be one of ${SIGN_PURPOSES.join(', ')}`);
  }
  if (request.saltLength !== undefined && !Number.isSafeInteger(request.saltLength)) {
    throw new HsmError('CKR_MECHANISM_PARAM_INVALID', 'saltLength is an integer');
  }
}

export const asBuffer = (data: Uint8Array): Buffer =>
  Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);

/** An open multi-part signature (C_SignInit ... C_SignFinal) of a session. */
export interface Stream {
  key: LoadedKey;
  mechanism: SignMechanism;
  purpose: SignPurpose;
  input: SignKeyObjectInput | undefined;
  /** A token key's multi-part operation (its own C_SignUpdate, hashing or gathering). */
  token?: TokenSignStream;
  /** RSA and ECDSA hash as they go (C_SignUpdate); Ed25519 gathers the message. */
  signer?: Sign;
  parts?: Buffer[];
  length: number;
  /** SHA-256 of the whole message, for the audit record. */
  digest: Hash;
}

export const MAX_PIN_OCTETS = 256;
