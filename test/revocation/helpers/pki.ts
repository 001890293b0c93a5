import { webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import type { RevocationSigner } from '../../../src/revocation/signing.ts';

/**
 * A throwaway PKI for revocation tests: root -> intermediate -> leaves, made with @peculiar/x509
 * and in-process WebCrypto keys (the partition facade signs the same way in production).
 */

export type TestKeyAlgorithm = 'ecdsa-p256' | 'ecdsa-p384' | 'rsa-2048' | 'rsa-pss-2048' | 'ed25519';

const crypto = webcrypto;
type CryptoKeyPair = webcrypto.CryptoKeyPair;
type Algorithm = webcrypto.Algorithm;
type EcdsaParams = webcrypto.EcdsaParams;
type RsaPssParams = webcrypto.RsaPssParams;
type RsaHashedKeyGenParams = webcrypto.RsaHashedKeyGenParams;
type EcKeyGenParams = webcrypto.EcKeyGenParams;

export function keyParams(algorithm: TestKeyAlgorithm): {
  generate: RsaHashedKeyGenParams | EcKeyGenParams | Algorithm;
  sign: Algorithm | EcdsaParams | RsaPssParams;
} {
  switch (algorithm) {
    case 'ecdsa-p256':
      return {
        generate: { name: 'ECDSA', namedCurve: 'P-256' },
        sign: { name: 'ECDSA', hash: 'SHA-256' } as EcdsaParams,
      };
    case 'ecdsa-p384':
      return {
        generate: { name: 'ECDSA', namedCurve: 'P-384' },
        sign: { name: 'ECDSA', hash: 'SHA-384' } as EcdsaParams,
      };
    case 'rsa-2048':
      return {
        generate: {
          name: 'RSASSA-PKCS1-v1_5',
          modulusLength: 2048,
          publicExponent: new Uint8Array([1, 0, 1]),
          hash: 'SHA-256',
        },
        sign: { name: 'RSASSA-PKCS1-v1_5' },
      };
    case 'rsa-pss-2048':
      return {
        generate: {
          name: 'RSA-PSS',
          modulusLength: 2048,
          publicExponent: new Uint8Array([1, 0, 1]),
          hash: 'SHA-256',
        },
        sign: { name: 'RSA-PSS', saltLength: 32 } as RsaPssParams,
      };
    case 'ed25519':
      return { generate: { name: 'Ed25519' }, sign: { name: 'Ed25519' } };
  }
}

export interface TestCa {
  certificate: x509.X509Certificate;
  der: Uint8Array;
  pem: string;
  keys: CryptoKeyPair;
  algorithm: TestKeyAlgorithm;
  signer: RevocationSigner;
}

export interface TestLeaf {
  certificate: x509.X509Certificate;
  der: Uint8Array;
  pem: string;
  keys: CryptoKeyPair;
  /** Canonical serial (lowercase hex of the INTEGER content octets). */
  serial: string;
}

let serialCounter = 0;
function randomSerial(): string {
  const bytes = webcrypto.getRandomValues(new Uint8Array(16));
  bytes[0] = (bytes[0]! & 0x7f) | 0x10;
  // The counter keeps serials distinct even if the generator repeated (it will not).
  bytes[15] = (serialCounter++ & 0xff) ^ bytes[15]!;
  return Buffer.from(bytes).toString('hex');
}

async function generate(algorithm: TestKeyAlgorithm): Promise<CryptoKeyPair> {
  return (await crypto.subtle.generateKey(keyParams(algorithm).generate, true, [
    'sign',
    'verify',
  ])) as CryptoKeyPair;
}

export function signerOf(keys: CryptoKeyPair): RevocationSigner {
  return { crypto: webcrypto, key: keys.privateKey };
}

const HOUR = 3600_000;

export async function createRoot({
  algorithm = 'ecdsa-p256' as TestKeyAlgorithm,
  name = 'CN=Signet Test Root,O=Example',
  notBefore = new Date(Date.now() - HOUR),
  notAfter = new Date(Date.now() + 24 * 365 * HOUR),
} = {}): Promise<TestCa> {
  const keys = await generate(algorithm);
  const certificate = await x509.X509CertificateGenerator.createSelfSigned(
    {
      serialNumber: randomSerial(),
      name,
      notBefore,
      notAfter,
      keys,
      signingAlgorithm: keyParams(algorithm).sign,
      extensions: [
        new x509.BasicConstraintsExtension(true, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey, false, crypto),
      ],
    },
    crypto,
  );
  return wrap(certificate, keys, algorithm);
}

export async function createIntermediate(
  parent: TestCa,
  {
    algorithm = 'ecdsa-p256' as TestKeyAlgorithm,
    name = 'CN=Signet Test Intermediate,O=Example',
    notBefore = new Date(Date.now() - HOUR),
    notAfter = new Date(Date.now() + 24 * 180 * HOUR),
    withSki = true,
  } = {},
): Promise<TestCa> {
  const keys = await generate(algorithm);
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(true, 0, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
    await x509.AuthorityKeyIdentifierExtension.create(parent.keys.publicKey, false, crypto),
  ];
  if (withSki)
    extensions.push(await x509.SubjectKeyIdentifierExtension.create(keys.publicKey, false, crypto));
  const certificate = await x509.X509CertificateGenerator.create(
    {
      serialNumber: randomSerial(),
      subject: name,
      issuer: parent.certificate.subject,
      notBefore,
      notAfter,
      publicKey: keys.publicKey,
      signingKey: parent.keys.privateKey,
      signingAlgorithm: keyParams(parent.algorithm).sign,
      extensions,
    },
    crypto,
  );
  return wrap(certificate, keys, algorithm);
}

export async function createLeaf(
  issuer: TestCa,
  {
    algorithm = 'ecdsa-p256' as TestKeyAlgorithm,
    name = 'CN=www.example.com',
    notBefore = new Date(Date.now() - HOUR),
    notAfter = new Date(Date.now() + 24 * 30 * HOUR),
    serial = randomSerial(),
    ocspSigning = false,
    signingCrypto = crypto as webcrypto.Crypto,
  } = {},
): Promise<TestLeaf> {
  const keys = await generate(algorithm);
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
    new x509.ExtendedKeyUsageExtension([
      ocspSigning ? x509.ExtendedKeyUsage.ocspSigning : x509.ExtendedKeyUsage.serverAuth,
    ]),
    await x509.AuthorityKeyIdentifierExtension.create(issuer.certificate.publicKey, false, crypto),
  ];
  if (!ocspSigning)
    extensions.push(new x509.SubjectAlternativeNameExtension([{ type: 'dns', value: 'www.example.com' }]));
  const certificate = await x509.X509CertificateGenerator.create(
    {
      serialNumber: serial,
      subject: name,
      issuer: issuer.certificate.subject,
      notBefore,
      notAfter,
      publicKey: keys.publicKey,
      signingKey: issuer.keys.privateKey,
      signingAlgorithm: keyParams(issuer.algorithm).sign,
      extensions,
    },
    signingCrypto,
  );
  const der = new Uint8Array(certificate.rawData);
  return {
    certificate,
    der,
    pem: certificate.toString('pem'),
    keys,
    serial: certificate.serialNumber.toLowerCase(),
  };
}

function wrap(certificate: x509.X509Certificate, keys: CryptoKeyPair, algorithm: TestKeyAlgorithm): TestCa {
  return {
    certificate,
    der: new Uint8Array(certificate.rawData),
    pem: certificate.toString('pem'),
    keys,
    algorithm,
    signer: signerOf(keys),
  };
}

export const crlPem = (der: Uint8Array): string =>
  `-----BEGIN X509 CRL-----\n${Buffer.from(der).toString('base64').replace(/.{64}/g, '$&\n').replace(/\n?$/, '\n')}-----END X509 CRL-----\n`;
