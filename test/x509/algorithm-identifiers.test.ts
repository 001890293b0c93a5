import { AsnConvert } from '@peculiar/asn1-schema';
import { AlgorithmProvider } from '@peculiar/x509';
import { describe, expect, test } from 'vitest';
import { type HashName, signatureAlgorithmIdentifier } from '../../src/x509/algorithms.ts';

/**
 * CRLs and OCSP responses carry the AlgorithmIdentifier src/x509/algorithms.ts writes; it must be
 * byte for byte what @peculiar/x509 (which signs the test hierarchies, and did this job before)
 * writes for the same WebCrypto algorithm, so certificates, CRLs and responses agree.
 */
const provider = new AlgorithmProvider();
const peculiar = (algorithm: object) =>
  new Uint8Array(
    AsnConvert.serialize(
      provider.toAsnAlgorithm(algorithm as Parameters<AlgorithmProvider['toAsnAlgorithm']>[0]),
    ),
  );
const WEB_HASH: Record<HashName, string> = { sha256: 'SHA-256', sha384: 'SHA-384', sha512: 'SHA-512' };

describe('signature AlgorithmIdentifiers', () => {
  test.each<HashName>(['sha256', 'sha384', 'sha512'])(
    'ECDSA, RSA PKCS#1 v1.5 and RSA-PSS with %s',
    (hash) => {
      const name = WEB_HASH[hash];
      expect(signatureAlgorithmIdentifier('ecdsa', hash)).toEqual(
        peculiar({ name: 'ECDSA', hash: { name } }),
      );
      expect(signatureAlgorithmIdentifier('rsa-pkcs1', hash)).toEqual(
        peculiar({ name: 'RSASSA-PKCS1-v1_5', hash: { name } }),
      );
      for (const saltLength of [20, 32, 48, 64]) {
        expect(signatureAlgorithmIdentifier('rsa-pss', hash, saltLength)).toEqual(
          peculiar({ name: 'RSA-PSS', hash: { name }, saltLength }),
        );
      }
    },
  );

  test('Ed25519, without parameters (RFC 8410 §3)', () => {
    expect(Buffer.from(signatureAlgorithmIdentifier('ed25519')).toString('hex')).toBe('300506032b6570');
    expect(signatureAlgorithmIdentifier('ed25519')).toEqual(peculiar({ name: 'Ed25519' }));
  });
});
