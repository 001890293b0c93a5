/**
 * pkijs's crypto engine with Ed25519. pkijs 4 knows only RSA and ECDSA signatures (its engine has
 * no 1.3.101.112), and Signet's CAs may hold Ed25519 keys, so chain validation and CMS would
 * refuse an Ed25519 hierarchy. This subclass adds it:
 *
 * - certificates and CRLs (RFC 8410 §3, §6): id-Ed25519 with absent parameters names both the
 *   key and the signature, which is pure EdDSA over the signed bytes (RFC 8032 §5.1);
 * - CMS SignedData (RFC 8419 §3): the same signature algorithm over the DER of the signed
 *   attributes, with SHA-512 as the message digest.
 *
 * Verifying uses node:crypto; signing goes through the engine's WebCrypto `Crypto` (Node's own, or
 * the partition facade of src/hsm/webcrypto.ts, whose handles present `{ name: 'Ed25519' }`).
 * Everything else is pkijs's engine unchanged.
 */

import { createPublicKey, verify, webcrypto } from 'node:crypto';
import type * as asn1js from 'asn1js';
import * as pkijs from 'pkijs';
import { OID } from './oids.ts';

const ED25519 = 'Ed25519';

type Algorithm = webcrypto.Algorithm;
type CryptoKey = webcrypto.CryptoKey;
type BufferSource = webcrypto.BufferSource;

/** The name WebCrypto gives an algorithm (a string or `{ name }`). */
const nameOf = (algorithm: unknown): string | undefined =>
  typeof algorithm === 'string' ? algorithm : (algorithm as { name?: string } | undefined)?.name;

const isEd25519 = (algorithm: unknown) => nameOf(algorithm)?.toUpperCase() === ED25519.toUpperCase();

export class SignetCryptoEngine extends pkijs.CryptoEngine {
  /** `crypto` signs (and does everything pkijs asks of WebCrypto); default Node's WebCrypto. */
  constructor(crypto: webcrypto.Crypto = webcrypto as unknown as webcrypto.Crypto, name = 'signet') {
    super({ name, crypto });
  }

  override getOIDByAlgorithm(algorithm: Algorithm, safety?: boolean, target?: string): string {
    if (isEd25519(algorithm)) return OID.ed25519;
    return super.getOIDByAlgorithm(algorithm, safety, target);
  }

  override getAlgorithmByOID<T extends Algorithm = Algorithm>(
    oid: string,
    safety?: boolean,
    target?: string,
  ): T | object;
  override getAlgorithmByOID<T extends Algorithm = Algorithm>(oid: string, safety: true, target?: string): T;
  override getAlgorithmByOID<T extends Algorithm = Algorithm>(
    oid: string,
    safety?: boolean,
    target?: string,
  ): T | object {
    if (oid === OID.ed25519) return { name: ED25519 } as T;
    return super.getAlgorithmByOID<T>(oid, safety, target);
  }

  /**
   * RFC 8419 §3.1: with signed attributes, an Ed25519 signer's message digest is SHA-512. pkijs
   * asks this for the hash of a signature algorithm; pure EdDSA has none of its own.
   */
  override getHashAlgorithm(signatureAlgorithm: pkijs.AlgorithmIdentifier): string {
    if (signatureAlgorithm.algorithmId === OID.ed25519) return 'SHA-512';
    return super.getHashAlgorithm(signatureAlgorithm);
  }

  override async getSignatureParameters(
    privateKey: CryptoKey,
    hashAlgorithm?: string,
  ): Promise<pkijs.CryptoEngineSignatureParams> {
    if (!isEd25519(privateKey.algorithm)) return super.getSignatureParameters(privateKey, hashAlgorithm);
    // RFC 8410 §3: the parameters MUST be absent.
    return {
      signatureAlgorithm: new pkijs.AlgorithmIdentifier({ algorithmId: OID.ed25519 }),
      parameters: { algorithm: { name: ED25519 }, usages: ['sign'] },
    };
  }

  override async signWithPrivateKey(
    data: BufferSource,
    privateKey: CryptoKey,
    parameters: pkijs.CryptoEngineSignWithPrivateKeyParams,
  ): Promise<ArrayBuffer> {
    if (!isEd25519(privateKey.algorithm)) return super.signWithPrivateKey(data, privateKey, parameters);
    // Pure EdDSA: the bytes themselves go to the signer, never a digest (RFC 8032 §5.1.6).
    return this.sign({ name: ED25519 }, privateKey, data);
  }

  override async verifyWithPublicKey(
    data: BufferSource,
    signature: asn1js.BitString | asn1js.OctetString,
    publicKeyInfo: pkijs.PublicKeyInfo,
    signatureAlgorithm: pkijs.AlgorithmIdentifier,
    shaAlgorithm?: string,
  ): Promise<boolean> {
    const ecdsaHash = ECDSA_HASHES[signatureAlgorithm.algorithmId];
    if (ecdsaHash) return verifyEcdsaDer(ecdsaHash, data, signature, publicKeyInfo);
    if (signatureAlgorithm.algorithmId !== OID.ed25519) {
      return super.verifyWithPublicKey(data, signature, publicKeyInfo, signatureAlgorithm, shaAlgorithm);
    }
    // RFC 8410 §3: absent parameters in the signature algorithm and in the key's algorithm.
    if (signatureAlgorithm.algorithmParams !== undefined) return false;
    if (publicKeyInfo.algorithm.algorithmId !== OID.ed25519) return false;
    if (publicKeyInfo.algorithm.algorithmParams !== undefined) return false;
    const key = createPublicKey({
      key: Buffer.from(publicKeyInfo.toSchema().toBER(false)),
      format: 'der',
      type: 'spki',
    });
    const bytes = ArrayBuffer.isView(data)
      ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength)
      : new Uint8Array(data);
    try {
      return verify(null, bytes, key, signature.valueBlock.valueHexView);
    } catch {
      return false;
    }
  }
}

/** RFC 5758 §3.2: ecdsa-with-SHA256/384/512 (parameters absent). */
const ECDSA_HASHES: Record<string, string> = {
  '1.2.840.10045.4.3.2': 'sha256',
  '1.2.840.10045.4.3.3': 'sha384',
  '1.2.840.10045.4.3.4': 'sha512',
};

/**
 * ECDSA through node:crypto (OpenSSL), which takes the signature value only in DER (RFC 5480
 * §2.2.3). pkijs decodes it with asn1js, which tolerates a wrong length inside it, so a changed
 * certificate, CSR or CMS signature could verify (found by the parser fuzzer, issue #34).
 */
function verifyEcdsaDer(
  hash: string,
  data: BufferSource,
  signature: asn1js.BitString | asn1js.OctetString,
  publicKeyInfo: pkijs.PublicKeyInfo,
): boolean {
  try {
    if ('unusedBits' in signature.valueBlock && signature.valueBlock.unusedBits !== 0) return false;
    const key = createPublicKey({
      key: Buffer.from(publicKeyInfo.toSchema().toBER(false)),
      format: 'der',
      type: 'spki',
    });
    const bytes = ArrayBuffer.isView(data)
      ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength)
      : new Uint8Array(data);
    return verify(hash, bytes, { key, dsaEncoding: 'der' }, signature.valueBlock.valueHexView);
  } catch {
    return false;
  }
}
