import { constants, type KeyObject, type SignKeyObjectInput } from 'node:crypto';
import { HsmError, type KeyAlgorithm, type SignMechanism } from './types.ts';

/**
 * Which mechanism fits which key, and how node:crypto performs it. Mechanism names follow
 * PKCS#11 (CKM_ECDSA_SHA256, CKM_SHA256_RSA_PKCS, CKM_SHA256_RSA_PKCS_PSS, CKM_EDDSA).
 */
export type KeyFamily = 'ec' | 'rsa' | 'ed25519';

export interface KeyAlgorithmSpec {
  family: KeyFamily;
  /** Arguments for crypto.generateKeyPair. */
  generate:
    | { type: 'ec'; namedCurve: 'P-256' | 'P-384' }
    | { type: 'rsa'; modulusLength: number }
    | { type: 'ed25519' };
  /** The mechanism a caller gets when it does not choose (the CA signs with these by default). */
  defaultMechanism: SignMechanism;
}

export const KEY_ALGORITHM_SPECS: Record<KeyAlgorithm, KeyAlgorithmSpec> = {
  'ecdsa-p256': {
    family: 'ec',
    generate: { type: 'ec', namedCurve: 'P-256' },
    defaultMechanism: 'ecdsa-sha256',
  },
  'ecdsa-p384': {
    family: 'ec',
    generate: { type: 'ec', namedCurve: 'P-384' },
    defaultMechanism: 'ecdsa-sha384',
  },
  'rsa-2048': {
    family: 'rsa',
    generate: { type: 'rsa', modulusLength: 2048 },
    defaultMechanism: 'rsa-pkcs1-sha256',
  },
  'rsa-3072': {
    family: 'rsa',
    generate: { type: 'rsa', modulusLength: 3072 },
    defaultMechanism: 'rsa-pkcs1-sha256',
  },
  'rsa-4096': {
    family: 'rsa',
    generate: { type: 'rsa', modulusLength: 4096 },
    defaultMechanism: 'rsa-pkcs1-sha384',
  },
  ed25519: { family: 'ed25519', generate: { type: 'ed25519' }, defaultMechanism: 'ed25519' },
};

export interface MechanismSpec {
  family: KeyFamily;
  /** node:crypto digest name; null for pure EdDSA, which hashes internally (RFC 8032 §5.1.6). */
  hash: 'sha256' | 'sha384' | 'sha512' | null;
  /** Octets of the hash, the default PSS salt length (RFC 8017 §9.1 recommends sLen = hLen). */
  hashLength: number;
  padding?: 'pkcs1' | 'pss';
}

export const MECHANISM_SPECS: Record<SignMechanism, MechanismSpec> = {
  'ecdsa-sha256': { family: 'ec', hash: 'sha256', hashLength: 32 },
  'ecdsa-sha384': { family: 'ec', hash: 'sha384', hashLength: 48 },
  'rsa-pkcs1-sha256': { family: 'rsa', hash: 'sha256', hashLength: 32, padding: 'pkcs1' },
  'rsa-pkcs1-sha384': { family: 'rsa', hash: 'sha384', hashLength: 48, padding: 'pkcs1' },
  'rsa-pkcs1-sha512': { family: 'rsa', hash: 'sha512', hashLength: 64, padding: 'pkcs1' },
  'rsa-pss-sha256': { family: 'rsa', hash: 'sha256', hashLength: 32, padding: 'pss' },
  'rsa-pss-sha384': { family: 'rsa', hash: 'sha384', hashLength: 48, padding: 'pss' },
  'rsa-pss-sha512': { family: 'rsa', hash: 'sha512', hashLength: 64, padding: 'pss' },
  ed25519: { family: 'ed25519', hash: null, hashLength: 0 },
};

/**
 * Checks that the mechanism suits the key and its parameters (for any backend); returns the PSS
 * salt length in octets, undefined for other mechanisms.
 */
export function checkSignMechanism(
  keyAlgorithm: KeyAlgorithm,
  mechanism: SignMechanism,
  saltLength: number | undefined,
): number | undefined {
  const spec = MECHANISM_SPECS[mechanism];
  if (!spec) throw new HsmError('CKR_MECHANISM_INVALID', `unknown mechanism '${String(mechanism)}'`);
  const keySpec = KEY_ALGORITHM_SPECS[keyAlgorithm];
  if (spec.family !== keySpec.family) {
    throw new HsmError(
      'CKR_KEY_TYPE_INCONSISTENT',
      `mechanism ${mechanism} does not suit a ${keyAlgorithm} key`,
    );
  }
  if (saltLength !== undefined && spec.padding !== 'pss') {
    throw new HsmError('CKR_MECHANISM_PARAM_INVALID', `mechanism ${mechanism} takes no salt length`);
  }
  if (spec.padding !== 'pss') return undefined;
  const salt = saltLength ?? spec.hashLength;
  // RFC 8017 §9.1.1 step 3: emLen >= hLen + sLen + 2, with emLen = ceil((modBits - 1) / 8).
  const modulusBits = keySpec.generate;
  const emLen = modulusBits.type === 'rsa' ? Math.ceil((modulusBits.modulusLength - 1) / 8) : 0;
  if (!Number.isInteger(salt) || salt < 0 || salt > emLen - spec.hashLength - 2) {
    throw new HsmError(
      'CKR_MECHANISM_PARAM_INVALID',
      `salt length ${salt} is out of range for ${keyAlgorithm}`,
    );
  }
  return salt;
}

/**
 * Checks that the mechanism suits the key and its parameters, and returns the node:crypto
 * signing input (ECDSA as IEEE P1363 r||s, the form WebCrypto returns).
 */
export function signingInput(
  keyAlgorithm: KeyAlgorithm,
  privateKey: KeyObject,
  mechanism: SignMechanism,
  saltLength: number | undefined,
): SignKeyObjectInput {
  const salt = checkSignMechanism(keyAlgorithm, mechanism, saltLength);
  switch (MECHANISM_SPECS[mechanism].padding) {
    case 'pss':
      return { key: privateKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: salt! };
    case 'pkcs1':
      return { key: privateKey, padding: constants.RSA_PKCS1_PADDING };
    default:
      return MECHANISM_SPECS[mechanism].family === 'ec'
        ? { key: privateKey, dsaEncoding: 'ieee-p1363' }
        : { key: privateKey };
  }
}
