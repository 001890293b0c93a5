import { createHash, type Hash } from 'node:crypto';
import type * as Pkcs11Js from 'pkcs11js';
import { KEY_ALGORITHM_SPECS, MECHANISM_SPECS } from '../mechanisms.ts';
import type { TokenSignStream } from '../token-keys.ts';
import type { HsmError, KeyAlgorithm, SignMechanism } from '../types.ts';
import { CK_PARAMS_RSA_PSS, CKG_MGF1, HASH_MECHANISM, SIGN_MECHANISM } from './constants.ts';
import type { Pkcs11Instance } from './module.ts';

/** The PKCS#11 mechanism (with its PSS parameters) for a signing mechanism. */
export function mechanismParams(
  mechanism: SignMechanism,
  saltLength: number | undefined,
): Pkcs11Js.Mechanism {
  const type = SIGN_MECHANISM[mechanism];
  const spec = MECHANISM_SPECS[mechanism];
  if (spec.padding !== 'pss') return { mechanism: type };
  const hash = spec.hash as 'sha256' | 'sha384' | 'sha512';
  return {
    mechanism: type,
    parameter: {
      type: CK_PARAMS_RSA_PSS,
      hashAlg: HASH_MECHANISM[hash],
      mgf: CKG_MGF1[hash],
      saltLen: saltLength ?? spec.hashLength,
    } as Pkcs11Js.RsaPSS,
  };
}

/** The length of a signature by a key of this algorithm (r||s for ECDSA). */
export function signatureLength(algorithm: KeyAlgorithm): number {
  const spec = KEY_ALGORITHM_SPECS[algorithm].generate;
  if (spec.type === 'rsa') return spec.modulusLength / 8;
  if (spec.type === 'ec') return spec.namedCurve === 'P-256' ? 64 : 96;
  return 64;
}

/** ECDSA in parts: the message is hashed here and the digest signed at the end (CKM_ECDSA). */
export function digestingStream(
  hashName: string,
  signOnce: (input: Buffer) => Promise<Uint8Array>,
): TokenSignStream {
  const hash: Hash = createHash(hashName);
  return {
    update: (chunk) => void hash.update(chunk),
    final: () => signOnce(hash.digest()),
    cancel: () => {},
  };
}

/** Ed25519 in parts: the message is gathered (pure EdDSA signs it whole). */
export function gatheringStream(signOnce: (input: Buffer) => Promise<Uint8Array>): TokenSignStream {
  const parts: Buffer[] = [];
  return {
    update: (chunk) => void parts.push(Buffer.from(chunk)),
    final: () => signOnce(Buffer.concat(parts)),
    cancel: () => {
      parts.length = 0;
    },
  };
}

/**
 * RSA in parts: C_SignUpdate / C_SignFinal on a session initialised for it; `end` closes that
 * session, `failed` turns a module error into the error to throw.
 */
export function moduleStream(
  pkcs11: Pkcs11Instance,
  session: Buffer,
  length: number,
  end: () => void,
  failed: (callName: string, error: unknown) => HsmError,
): TokenSignStream {
  return {
    update: (chunk) => {
      try {
        pkcs11.C_SignUpdate(session, chunk);
      } catch (error) {
        end();
        throw failed('C_SignUpdate', error);
      }
    },
    final: async () => {
      try {
        return new Uint8Array(await pkcs11.C_SignFinalAsync(session, Buffer.alloc(length)));
      } catch (error) {
        throw failed('C_SignFinal', error);
      } finally {
        end();
      }
    },
    cancel: end,
  };
}
