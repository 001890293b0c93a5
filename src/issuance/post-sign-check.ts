/**
 * The checks around a signature (Boulder's post-sign check): the signing key must be able to
 * produce the issuer's algorithm, and a signed certificate is taken apart again before it is
 * returned: its TBS must be the linted TBS byte for byte, its outer algorithm the TBS's, and its
 * signature must verify with the issuer's public key. Anything else is a MisissuanceError.
 */

import { createPublicKey, type KeyObject, type webcrypto } from 'node:crypto';
import { type SignatureAlgorithm, verifySignature } from '../x509/algorithms.ts';
import { bitStringBytes, encoding, equalBytes, readDer } from '../x509/der.ts';
import { type IssuerContext, readCertificateFields } from '../x509/issuer.ts';
import { MisissuanceError } from './errors.ts';

const issuerKeys = new WeakMap<IssuerContext, KeyObject>();

function issuerPublicKey(issuer: IssuerContext): KeyObject {
  let key = issuerKeys.get(issuer);
  if (!key) {
    key = createPublicKey({ key: Buffer.from(issuer.publicKey), format: 'der', type: 'spki' });
    issuerKeys.set(issuer, key);
  }
  return key;
}

/** Refuses a signing key whose WebCrypto algorithm cannot produce the issuer's signature algorithm. */
export function checkSigningKey(
  key: webcrypto.CryptoKey,
  algorithm: SignatureAlgorithm,
  issuer: IssuerContext,
): void {
  const keyAlgorithm = key?.algorithm as
    | (webcrypto.KeyAlgorithm & { namedCurve?: string; hash?: unknown })
    | undefined;
  if (!keyAlgorithm?.name) return; // an opaque handle: the verification below still decides
  const expected = { ec: 'ECDSA', rsa: 'RSASSA-PKCS1-v1_5', ed25519: 'Ed25519' }[algorithm.keyType];
  const curve = { 'ecdsa-p256': 'P-256', 'ecdsa-p384': 'P-384' }[issuer.keyAlgorithm as 'ecdsa-p256'];
  const hash = keyAlgorithm.hash as { name?: string } | string | undefined;
  const hashName = typeof hash === 'string' ? hash : hash?.name;
  // Only what the handle states is checked; the verification after signing decides the rest.
  if (
    keyAlgorithm.name !== expected ||
    (curve && keyAlgorithm.namedCurve !== undefined && keyAlgorithm.namedCurve !== curve) ||
    (algorithm.keyType === 'rsa' && hashName !== undefined && hashName !== 'SHA-256')
  ) {
    throw new MisissuanceError(
      `the signing key (${keyAlgorithm.name}) cannot sign ${algorithm.name} for issuer ${issuer.id}`,
    );
  }
}

/** Throws a MisissuanceError unless `certificate` is `tbs` signed by `issuer`. */
export function checkSignedCertificate(
  certificate: Uint8Array,
  tbs: Uint8Array,
  issuer: IssuerContext,
): void {
  const algorithm = issuer.signatureAlgorithm;
  let signedTbs: Uint8Array;
  let signatureValue: Uint8Array;
  let outerAlgorithm: Uint8Array;
  try {
    const root = readDer(certificate, { maxDepth: 16 });
    const [tbsTlv, algorithmTlv, signatureTlv] = root.children;
    signedTbs = encoding(tbsTlv!);
    outerAlgorithm = encoding(algorithmTlv!);
    signatureValue = bitStringBytes(signatureTlv!).bytes;
  } catch (error) {
    throw new MisissuanceError('the assembled certificate does not parse', { cause: error });
  }
  if (!equalBytes(signedTbs, tbs)) {
    throw new MisissuanceError('the certificate’s TBS differs from the linted TBS');
  }
  // RFC 5280 §4.1.1.2: signatureAlgorithm MUST equal the TBS signature field.
  if (!equalBytes(outerAlgorithm, encoding(readCertificateFields(tbs, true).signature))) {
    throw new MisissuanceError('signatureAlgorithm differs from the TBS signature field (RFC 5280 §4.1.1.2)');
  }
  if (!verifySignature(algorithm, issuerPublicKey(issuer), signedTbs, signatureValue)) {
    throw new MisissuanceError(`the signature does not verify with issuer ${issuer.id}’s public key`);
  }
}
