import { webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import { encodeNameConstraints, type NameConstraintsInput } from '../../src/x509/name-constraints.ts';

/**
 * Hierarchies for path validation tests, made with @peculiar/x509 and in-process WebCrypto keys so
 * a test can build what Signet's own linter would refuse to sign (names outside a CA's
 * constraints, a CA without keyCertSign, a critical extension nobody knows).
 */

export type FixtureAlgorithm = 'ecdsa-p256' | 'ecdsa-p384' | 'rsa-2048' | 'ed25519';

const crypto = webcrypto;
const HOUR = 3_600_000;

const PARAMS: Record<FixtureAlgorithm, { generate: webcrypto.Algorithm; sign: webcrypto.Algorithm }> = {
  'ecdsa-p256': {
    generate: { name: 'ECDSA', namedCurve: 'P-256' } as webcrypto.EcKeyGenParams,
    sign: { name: 'ECDSA', hash: 'SHA-256' } as webcrypto.EcdsaParams,
  },
  'ecdsa-p384': {
    generate: { name: 'ECDSA', namedCurve: 'P-384' } as webcrypto.EcKeyGenParams,
    sign: { name: 'ECDSA', hash: 'SHA-384' } as webcrypto.EcdsaParams,
  },
  'rsa-2048': {
    generate: {
      name: 'RSASSA-PKCS1-v1_5',
      modulusLength: 2048,
      publicExponent: new Uint8Array([1, 0, 1]),
      hash: 'SHA-256',
    } as webcrypto.RsaHashedKeyGenParams,
    sign: { name: 'RSASSA-PKCS1-v1_5' },
  },
  ed25519: { generate: { name: 'Ed25519' }, sign: { name: 'Ed25519' } },
};

export interface Node {
  certificate: x509.X509Certificate;
  der: Uint8Array;
  pem: string;
  keys: webcrypto.CryptoKeyPair;
  algorithm: FixtureAlgorithm;
}

export interface NodeOptions {
  /** RFC 4514 name; default CN=<a counter>,O=Example. */
  subject?: string;
  /** Absent: self-signed. */
  issuer?: Node;
  algorithm?: FixtureAlgorithm;
  /** Default true. */
  ca?: boolean;
  pathLength?: number;
  /** Default keyCertSign + cRLSign for a CA, digitalSignature for a leaf; null leaves keyUsage out. */
  keyUsage?: number | null;
  nameConstraints?: NameConstraintsInput;
  /** SubjectAltName entries. */
  sans?: { type: 'dns' | 'email' | 'ip' | 'url'; value: string }[];
  notBefore?: Date;
  notAfter?: Date;
  extensions?: x509.Extension[];
  /** Certify this SubjectPublicKeyInfo (a partition key) instead of a key made here; it cannot sign. */
  spki?: Uint8Array;
}

let counter = 0;

export async function makeCertificate(options: NodeOptions = {}): Promise<Node> {
  const algorithm = options.algorithm ?? 'ecdsa-p256';
  const ca = options.ca ?? true;
  const keys = options.spki
    ? ({
        publicKey: await crypto.subtle.importKey(
          'spki',
          options.spki,
          algorithm === 'ed25519' ? { name: 'Ed25519' } : PARAMS[algorithm].generate,
          true,
          ['verify'],
        ),
      } as webcrypto.CryptoKeyPair)
    : ((await crypto.subtle.generateKey(PARAMS[algorithm].generate, true, [
        'sign',
        'verify',
      ])) as webcrypto.CryptoKeyPair);
  const subject = options.subject ?? `CN=Fixture ${++counter},O=Example`;
  const issuer = options.issuer;
  const keyUsage =
    options.keyUsage === undefined
      ? ca
        ? x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign | x509.KeyUsageFlags.digitalSignature
        : x509.KeyUsageFlags.digitalSignature
      : options.keyUsage;
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(ca, ca ? options.pathLength : undefined, true),
    await x509.SubjectKeyIdentifierExtension.create(keys.publicKey, false, crypto),
  ];
  if (keyUsage !== null) extensions.push(new x509.KeyUsagesExtension(keyUsage, true));
  if (issuer) {
    extensions.push(await x509.AuthorityKeyIdentifierExtension.create(issuer.keys.publicKey, false, crypto));
  }
  if (options.nameConstraints) {
    extensions.push(new x509.Extension('2.5.29.30', true, encodeNameConstraints(options.nameConstraints)));
  }
  if (options.sans) extensions.push(new x509.SubjectAlternativeNameExtension(options.sans, false));
  extensions.push(...(options.extensions ?? []));
  const serial = Buffer.from(crypto.getRandomValues(new Uint8Array(16)));
  serial[0] = (serial[0]! & 0x7f) | 0x10;
  const certificate = await x509.X509CertificateGenerator.create(
    {
      serialNumber: serial.toString('hex'),
      subject,
      issuer: issuer ? issuer.certificate.subject : subject,
      notBefore: options.notBefore ?? new Date(Date.now() - HOUR),
      notAfter: options.notAfter ?? new Date(Date.now() + 24 * 365 * HOUR),
      publicKey: keys.publicKey,
      signingKey: issuer ? issuer.keys.privateKey : keys.privateKey,
      signingAlgorithm: PARAMS[issuer ? issuer.algorithm : algorithm].sign,
      extensions,
    },
    crypto,
  );
  return {
    certificate,
    der: new Uint8Array(certificate.rawData),
    pem: certificate.toString('pem'),
    keys,
    algorithm,
  };
}

/** A root, an intermediate under it, and a leaf for www.example.com under that, all of one algorithm. */
export async function makeHierarchy(algorithm: FixtureAlgorithm) {
  const root = await makeCertificate({ algorithm, subject: `CN=Example ${algorithm} Root,O=Example` });
  const intermediate = await makeCertificate({
    algorithm,
    issuer: root,
    subject: `CN=Example ${algorithm} Issuing CA,O=Example`,
    pathLength: 0,
  });
  const leaf = await makeCertificate({
    algorithm,
    issuer: intermediate,
    ca: false,
    subject: 'CN=www.example.com',
    sans: [{ type: 'dns', value: 'www.example.com' }],
  });
  return { root, intermediate, leaf };
}
