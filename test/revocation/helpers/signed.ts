import { createPublicKey, verify } from 'node:crypto';
import { readChildrenOf, readTlvAt, tlvContent, tlvEncoding } from '../../../src/x509/der.ts';

/** Splits a signed SEQUENCE { tbs, algorithm, BIT STRING } (a CRL or BasicOCSPResponse). */
export function splitSigned(der: Uint8Array): {
  tbs: Uint8Array;
  algorithm: Uint8Array;
  signature: Uint8Array;
} {
  const outer = readTlvAt(der);
  const [tbs, algorithm, bits] = readChildrenOf(der, outer);
  if (!tbs || !algorithm || !bits) throw new Error('not a signed structure');
  return {
    tbs: tlvEncoding(der, tbs),
    algorithm: tlvEncoding(der, algorithm),
    signature: tlvContent(der, bits).subarray(1),
  };
}

/** Verifies an ECDSA-SHA-256 signed structure with node:crypto (no ASN.1 node limits). */
export function verifyEcdsaSha256(der: Uint8Array, spki: ArrayBuffer | Uint8Array): boolean {
  const { tbs, signature } = splitSigned(der);
  const key = createPublicKey({ key: Buffer.from(spki as ArrayBuffer), format: 'der', type: 'spki' });
  return verify('sha256', tbs, key, signature);
}
