/**
 * Test builders for x509 and lint: keys (Node's webcrypto, extractable so openssl can use the
 * leaf keys), a root → intermediate chain built with src/issuance/ca-certificates, leaf templates
 * with sane defaults, and a hand CSR builder for requests no tool would produce.
 */

import { execFileSync } from 'node:child_process';
import { createPrivateKey, type KeyObject, sign as nodeSign, webcrypto } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  type CaCertificate,
  createIntermediateCertificate,
  createRootCertificate,
} from '../../src/issuance/ca-certificates.ts';
import type { Clock } from '../../src/lib/clock.ts';
import { systemClock } from '../../src/lib/clock.ts';
import { encodeExtension } from '../../src/x509/certificate.ts';
import {
  bitString,
  contextTag,
  integerFromNumber,
  NULL_DER,
  oid,
  sequence,
  setOf,
  tlv,
} from '../../src/x509/der.ts';
import { createIssuerContext, type IssuerContext } from '../../src/x509/issuer.ts';
import type { NameConstraintsInput } from '../../src/x509/name-constraints.ts';
import { encodeGeneralNames, encodeName } from '../../src/x509/names.ts';
import { OID } from '../../src/x509/oids.ts';
import { toPem } from '../../src/x509/pem.ts';
import type { CertificateTemplate, San, SubjectAttribute } from '../../src/x509/types.ts';

export type TestKeyName = 'ecdsa-p256' | 'ecdsa-p384' | 'rsa-2048' | 'rsa-3072' | 'ed25519';

const PARAMS: Record<
  TestKeyName,
  webcrypto.RsaHashedKeyGenParams | webcrypto.EcKeyGenParams | { name: string }
> = {
  'ecdsa-p256': { name: 'ECDSA', namedCurve: 'P-256' },
  'ecdsa-p384': { name: 'ECDSA', namedCurve: 'P-384' },
  'rsa-2048': {
    name: 'RSASSA-PKCS1-v1_5',
    modulusLength: 2048,
    publicExponent: new Uint8Array([1, 0, 1]),
    hash: 'SHA-256',
  },
  'rsa-3072': {
    name: 'RSASSA-PKCS1-v1_5',
    modulusLength: 3072,
    publicExponent: new Uint8Array([1, 0, 1]),
    hash: 'SHA-256',
  },
  ed25519: { name: 'Ed25519' },
};

export interface TestKey {
  name: TestKeyName;
  pair: webcrypto.CryptoKeyPair;
  spki: Uint8Array;
  privateKey: KeyObject;
}

export async function generateTestKey(name: TestKeyName): Promise<TestKey> {
  const pair = (await webcrypto.subtle.generateKey(PARAMS[name], true, [
    'sign',
    'verify',
  ])) as webcrypto.CryptoKeyPair;
  const spki = new Uint8Array(await webcrypto.subtle.exportKey('spki', pair.publicKey));
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', pair.privateKey));
  return { name, pair, spki, privateKey: createPrivateKey({ key: pkcs8, format: 'der', type: 'pkcs8' }) };
}

export const ROOT_SUBJECT: SubjectAttribute[] = [
  { type: 'C', value: 'US' },
  { type: 'O', value: 'Signet Test' },
  { type: 'CN', value: 'Signet Test Root' },
];

export interface TestChain {
  rootKey: TestKey;
  root: CaCertificate;
  rootContext: IssuerContext;
  issuerKey: TestKey;
  intermediate: CaCertificate;
  issuer: IssuerContext;
}

export const ISSUER_URLS = {
  crlUrl: 'http://ca.example.com/crl/test-intermediate.crl',
  ocspUrl: 'http://ca.example.com/ocsp',
  caIssuersUrl: 'http://ca.example.com/v1/issuers/test-intermediate/certificate',
};

export async function createTestChain(
  rootKey: TestKey,
  issuerKey: TestKey,
  options: { clock?: Clock; nameConstraints?: NameConstraintsInput; issuerId?: string } = {},
): Promise<TestChain> {
  const clock = options.clock ?? systemClock;
  const root = await createRootCertificate({
    id: 'test-root',
    crypto: webcrypto,
    signingKey: rootKey.pair.privateKey,
    publicKey: rootKey.pair.publicKey,
    subject: ROOT_SUBJECT,
    clock,
    validitySeconds: 20 * 365 * 86400,
    pathLength: 1,
  });
  const rootContext = createIssuerContext({
    id: 'test-root',
    certificate: root.der,
    crlUrl: 'http://ca.example.com/crl/test-root.crl',
    caIssuersUrl: 'http://ca.example.com/v1/issuers/test-root/certificate',
  });
  const intermediate = await createIntermediateCertificate({
    issuer: rootContext,
    crypto: webcrypto,
    signingKey: rootKey.pair.privateKey,
    publicKey: issuerKey.spki,
    subject: [
      { type: 'O', value: 'Signet Test' },
      { type: 'CN', value: `Signet Test Intermediate ${issuerKey.name}` },
    ],
    clock,
    validitySeconds: 5 * 365 * 86400,
    pathLength: 0,
    ...(options.nameConstraints ? { nameConstraints: options.nameConstraints } : {}),
  });
  const issuer = createIssuerContext({
    id: options.issuerId ?? 'test-intermediate',
    certificate: intermediate.der,
    ...ISSUER_URLS,
  });
  return { rootKey, root, rootContext, issuerKey, intermediate, issuer };
}

export function leafTemplate(
  key: { spki: Uint8Array; name: string },
  overrides: Partial<CertificateTemplate> = {},
): CertificateTemplate {
  return {
    policy: 'web-server',
    issuer: 'test-intermediate',
    subject: [{ type: 'CN', value: 'www.example.com' }],
    sans: [
      { type: 'dns', value: 'www.example.com' },
      { type: 'dns', value: 'example.com' },
    ],
    publicKey: key.spki,
    keyAlgorithm: key.name,
    validitySeconds: 90 * 86400,
    backdateSeconds: 60,
    keyUsage: ['digitalSignature'],
    extendedKeyUsage: ['serverAuth'],
    policyOids: [],
    ocspMustStaple: false,
    passthroughExtensions: [],
    ...overrides,
  };
}

export function tempDir(prefix = 'signet-x509-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** Runs a tool, returning its exit status and combined output (never throws on a non-zero exit). */
export function run(command: string, args: string[]): { status: number; output: string } {
  try {
    const output = execFileSync(command, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    return { status: 0, output };
  } catch (error) {
    const failure = error as { status?: number; stdout?: string; stderr?: string };
    return { status: failure.status ?? 1, output: `${failure.stdout ?? ''}${failure.stderr ?? ''}` };
  }
}

/** An openssl-made CSR for a test key (the key is written to a temporary file). */
export function opensslCsr(key: TestKey, subject: string, sans: string, extraArgs: string[] = []): string {
  const dir = tempDir();
  const keyFile = join(dir, 'key.pem');
  writeFileSync(keyFile, key.privateKey.export({ format: 'pem', type: 'pkcs8' }) as string);
  const args = ['req', '-new', '-key', keyFile, '-subj', subject, ...extraArgs];
  if (sans) args.push('-addext', `subjectAltName=${sans}`);
  return execFileSync('openssl', args, { encoding: 'utf8' });
}

// ---- A hand CSR builder for requests no tool would make ------------------------------------------

export type CsrSignature =
  | 'ecdsa-with-SHA256'
  | 'ecdsa-with-SHA1'
  | 'sha256WithRSAEncryption'
  | 'sha1WithRSAEncryption'
  | 'md5WithRSAEncryption'
  | 'Ed25519';

const CSR_SIGNATURES: Record<CsrSignature, { identifier: Uint8Array; hash: string | null }> = {
  'ecdsa-with-SHA256': { identifier: sequence(oid(OID.ecdsaWithSha256)), hash: 'sha256' },
  'ecdsa-with-SHA1': { identifier: sequence(oid(OID.ecdsaWithSha1)), hash: 'sha1' },
  sha256WithRSAEncryption: {
    identifier: sequence(oid(OID.sha256WithRSAEncryption), NULL_DER),
    hash: 'sha256',
  },
  sha1WithRSAEncryption: { identifier: sequence(oid(OID.sha1WithRSAEncryption), NULL_DER), hash: 'sha1' },
  md5WithRSAEncryption: { identifier: sequence(oid(OID.md5WithRSAEncryption), NULL_DER), hash: 'md5' },
  Ed25519: { identifier: sequence(oid(OID.ed25519)), hash: null },
};

export interface HandCsr {
  key: TestKey;
  subject?: Uint8Array;
  /** SubjectPublicKeyInfo to put in the request; default the key's own. */
  spki?: Uint8Array;
  /** Extensions (each an Extension DER) for one extensionRequest attribute. */
  extensions?: Uint8Array[];
  /** Complete [0] attributes field, overriding `extensions`. */
  attributes?: Uint8Array;
  signature?: CsrSignature;
  /** Rewrites the CertificationRequestInfo bytes before they are signed. */
  editInfo?: (info: Uint8Array) => Uint8Array;
  /** Rewrites the signature after signing. */
  editSignature?: (signature: Uint8Array) => Uint8Array;
  /** Replaces the signature AlgorithmIdentifier (the signature is still made as `signature` says). */
  algorithmIdentifier?: Uint8Array;
}

export function extensionRequestAttribute(extensions: Uint8Array[]): Uint8Array {
  return tlv(contextTag(0, true), sequence(oid(OID.extensionRequest), setOf([sequence(...extensions)])));
}

export function sanExtension(sans: San[], critical = false): Uint8Array {
  return encodeExtension(OID.subjectAltName, critical, encodeGeneralNames(sans));
}

export function handCsr(options: HandCsr): Uint8Array {
  const defaultSignature: CsrSignature =
    options.key.name === 'ed25519'
      ? 'Ed25519'
      : options.key.name.startsWith('rsa')
        ? 'sha256WithRSAEncryption'
        : 'ecdsa-with-SHA256';
  const signature = CSR_SIGNATURES[options.signature ?? defaultSignature];
  const attributes =
    options.attributes ??
    extensionRequestAttribute(
      options.extensions ?? [sanExtension([{ type: 'dns', value: 'www.example.com' }])],
    );
  let info = sequence(
    integerFromNumber(0),
    options.subject ?? encodeName([{ type: 'CN', value: 'www.example.com' }]),
    options.spki ?? options.key.spki,
    attributes,
  );
  if (options.editInfo) info = options.editInfo(info);
  let value: Uint8Array = new Uint8Array(nodeSign(signature.hash, info, options.key.privateKey));
  if (options.editSignature) value = options.editSignature(value);
  return sequence(info, options.algorithmIdentifier ?? signature.identifier, bitString(value));
}

export const csrPem = (der: Uint8Array): string => toPem(der, 'CERTIFICATE REQUEST');
