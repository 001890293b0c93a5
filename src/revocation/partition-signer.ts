import type { webcrypto } from 'node:crypto';
import { mechanismFor, type PartitionCryptoKey } from '../hsm/webcrypto.ts';
import { assertPurpose, type RevocationSigner, signatureSchemeFor } from './signing.ts';

/**
 * A RevocationSigner over a partition key handle (src/hsm/webcrypto.ts): single-part signatures
 * through the facade's `subtle.sign`, large messages through `KeyManager.signStream` (C_SignInit /
 * C_SignUpdate / C_SignFinal) with the same mechanism and purpose, so a CRL larger than one
 * partition frame still signs. The handle must have been made for `purpose`.
 */
export function partitionSigner(
  crypto: webcrypto.Crypto,
  key: PartitionCryptoKey,
  purpose: 'crl' | 'ocsp',
): RevocationSigner {
  const cryptoKey = key as unknown as webcrypto.CryptoKey;
  assertPurpose(cryptoKey, purpose);
  const scheme = signatureSchemeFor(cryptoKey);
  const { mechanism, saltLength } = mechanismFor(
    scheme.webAlgorithm as Parameters<typeof mechanismFor>[0],
    key.keyInfo.algorithm,
    key.mechanism,
  );
  return {
    crypto,
    key: cryptoKey,
    signStream: (chunks) =>
      key.keyManager.signStream({
        key: key.keyRef,
        mechanism,
        purpose: key.purpose,
        chunks,
        ...(saltLength !== undefined ? { saltLength } : {}),
      }),
  };
}
