import { CKG, CKK, CKO, CKM as FRONT_END_CKM } from '../p11/pkcs11.ts';
import type { KeyAlgorithm, SignMechanism } from '../types.ts';

// PKCS#11 v2.40 numbers (pkcs11t.h), shared with the p11-kit front end, plus what only a
// module client needs: the PSS and EdDSA mechanisms and Edwards keys (PKCS#11 3.0).
export const CKO_PUBLIC_KEY = CKO.PUBLIC_KEY;
export const CKO_PRIVATE_KEY = CKO.PRIVATE_KEY;
export const CKK_RSA = CKK.RSA;
export const CKK_EC = CKK.EC;
export const CKK_EC_EDWARDS = 0x40;
export const CKM = {
  ...FRONT_END_CKM,
  SHA256_RSA_PKCS_PSS: 0x43,
  SHA384_RSA_PKCS_PSS: 0x44,
  SHA512_RSA_PKCS_PSS: 0x45,
  EC_EDWARDS_KEY_PAIR_GEN: 0x1055,
  EDDSA: 0x1057,
} as const;
export const MECHANISM_NAMES: Record<number, string> = Object.fromEntries(
  Object.entries(CKM).map(([name, value]) => [value, `CKM_${name}`]),
);
export const CKG_MGF1 = {
  sha256: CKG.MGF1_SHA256,
  sha384: CKG.MGF1_SHA384,
  sha512: CKG.MGF1_SHA512,
} as const;
export const CKU_USER = 1;
export const CKF_RW_SESSION = 2;
export const CKF_SERIAL_SESSION = 4;
export const CK_PARAMS_RSA_PSS = 5;
export const CKF_OS_LOCKING_OK = 2;

/** DER OIDs for CKA_EC_PARAMS (RFC 5480 §2.1.1.1, RFC 8410 §3). */
export const EC_PARAMS = {
  'ecdsa-p256': Buffer.from('06082a8648ce3d030107', 'hex'),
  'ecdsa-p384': Buffer.from('06052b81040022', 'hex'),
  ed25519: Buffer.from('06032b6570', 'hex'),
} as const;
/** PKCS#11 3.0 also allows the curve's name as a PrintableString for Edwards curves. */
export const ED25519_NAME = Buffer.from('130c656477617264733235353139', 'hex');

/** Which key-pair generation and signing mechanisms each operation needs. */
export const GENERATE_MECHANISM: Record<KeyAlgorithm, number> = {
  'ecdsa-p256': CKM.EC_KEY_PAIR_GEN,
  'ecdsa-p384': CKM.EC_KEY_PAIR_GEN,
  'rsa-2048': CKM.RSA_PKCS_KEY_PAIR_GEN,
  'rsa-3072': CKM.RSA_PKCS_KEY_PAIR_GEN,
  'rsa-4096': CKM.RSA_PKCS_KEY_PAIR_GEN,
  ed25519: CKM.EC_EDWARDS_KEY_PAIR_GEN,
};
export const SIGN_MECHANISM: Record<SignMechanism, number> = {
  'ecdsa-sha256': CKM.ECDSA,
  'ecdsa-sha384': CKM.ECDSA,
  'rsa-pkcs1-sha256': CKM.SHA256_RSA_PKCS,
  'rsa-pkcs1-sha384': CKM.SHA384_RSA_PKCS,
  'rsa-pkcs1-sha512': CKM.SHA512_RSA_PKCS,
  'rsa-pss-sha256': CKM.SHA256_RSA_PKCS_PSS,
  'rsa-pss-sha384': CKM.SHA384_RSA_PKCS_PSS,
  'rsa-pss-sha512': CKM.SHA512_RSA_PKCS_PSS,
  ed25519: CKM.EDDSA,
};
export const HASH_MECHANISM = { sha256: CKM.SHA256, sha384: CKM.SHA384, sha512: CKM.SHA512 } as const;
