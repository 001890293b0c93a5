/**
 * Root and intermediate CA certificates, for `signet init`, the ceremony and tests. They go
 * through the same path as leaves: TBS built here, linted with the root or intermediate profile,
 * signed only through an issuance token (token.ts). The signing key is any WebCrypto
 * CryptoKey (an HSM handle through the facade, or a Node webcrypto key in tests).
 */

import type { webcrypto } from 'node:crypto';
import type { Clock } from '../lib/clock.ts';
import { AppError } from '../lib/errors.ts';
import type { LintFinding } from '../lint/types.ts';
import { encodeCaTbs } from '../x509/ca-certificate.ts';
import { generateSerial, leafValidity, serialToHex } from '../x509/certificate.ts';
import { createSelfIssuerContext, type IssuerContext, type IssuerUrls } from '../x509/issuer.ts';
import type { NameConstraintsInput } from '../x509/name-constraints.ts';
import { encodeName } from '../x509/names.ts';
import { certificateToPem } from '../x509/pem.ts';
import type { SubjectAttribute } from '../x509/types.ts';
import { lintCertificate, type SigningCrypto, signCertificate } from './token.ts';

/** The linter refused a certificate we built: a bug or a bad configuration, never signed. */
export class LintRefusedError extends AppError {
  constructor(readonly findings: LintFinding[]) {
    super(
      'ca.lint_refused',
      'internal',
      `the certificate failed lint: ${findings
        .filter((finding) => finding.severity === 'error')
        .map((finding) => `${finding.rule}: ${finding.message}`)
        .join('; ')}`,
      { findings },
    );
  }
}

export interface CaCertificateOptions {
  /** Signs: its `subtle.sign` is called once with the linted TBS. */
  crypto: SigningCrypto & { subtle: Partial<Pick<webcrypto.SubtleCrypto, 'exportKey'>> };
  /** The key that signs: the root's own private key, or the issuing CA's for an intermediate. */
  signingKey: webcrypto.CryptoKey;
  /** The new CA's public key: SubjectPublicKeyInfo DER, or a CryptoKey exported through `crypto`. */
  publicKey: Uint8Array | webcrypto.CryptoKey;
  subject: SubjectAttribute[];
  clock: Clock;
  validitySeconds: number;
  /** Default 60. */
  backdateSeconds?: number;
  /** basicConstraints pathLenConstraint; omitted means unlimited. */
  pathLength?: number;
  nameConstraints?: NameConstraintsInput;
  policyOids?: string[];
  /** Default: generateSerial(). */
  serial?: Uint8Array;
  /** Adds digitalSignature to keyCertSign + cRLSign, for a CA that signs OCSP responses itself. */
  digitalSignature?: boolean;
}

export interface RootCertificateOptions extends CaCertificateOptions {
  /** The issuer id the root will have. */
  id: string;
}

export interface IntermediateCertificateOptions extends CaCertificateOptions {
  /** The issuing CA (its URLs go into CRL DP and AIA). */
  issuer: IssuerContext;
}

export interface CaCertificate {
  der: Uint8Array;
  pem: string;
  serialNumber: string;
  notBefore: Date;
  notAfter: Date;
}

async function spkiOf(options: CaCertificateOptions): Promise<Uint8Array> {
  if (options.publicKey instanceof Uint8Array) return options.publicKey;
  if (!options.crypto.subtle.exportKey)
    throw new Error('publicKey is a CryptoKey but crypto cannot export it');
  return new Uint8Array(await options.crypto.subtle.exportKey('spki', options.publicKey));
}

async function issueCa(
  options: CaCertificateOptions,
  spki: Uint8Array,
  issuer: IssuerContext,
  validity: { notBefore: Date; notAfter: Date },
  profile: 'root' | 'intermediate',
): Promise<CaCertificate> {
  const serial = options.serial ?? generateSerial();
  const urls: IssuerUrls = profile === 'root' ? {} : issuer;
  const tbs = encodeCaTbs({
    serial,
    issuer,
    subject: encodeName(options.subject),
    publicKey: spki,
    ...validity,
    pathLength: options.pathLength,
    // A CA that signs OCSP responses itself needs digitalSignature too.
    keyUsages: options.digitalSignature
      ? ['digitalSignature', 'keyCertSign', 'cRLSign']
      : ['keyCertSign', 'cRLSign'],
    // RFC 5280 §4.2.1.10: conforming CAs MUST mark name constraints critical.
    nameConstraints: options.nameConstraints && { critical: true, value: options.nameConstraints },
    policyOids: options.policyOids,
    crlUrl: urls.crlUrl,
    ocspUrl: urls.ocspUrl,
    caIssuersUrl: urls.caIssuersUrl,
  });
  const lint = lintCertificate(tbs, { issuer, profile });
  if (!lint.ok) throw new LintRefusedError(lint.findings);
  const der = await signCertificate(lint.token, { crypto: options.crypto, key: options.signingKey });
  return { der, pem: certificateToPem(der), serialNumber: serialToHex(serial), ...validity };
}

/** A self-signed root (RFC 5280 §3.2), linted with the root profile before it is signed. */
export async function createRootCertificate(options: RootCertificateOptions): Promise<CaCertificate> {
  const spki = await spkiOf(options);
  const backdate = options.backdateSeconds ?? 60;
  const now = Math.floor(options.clock.now().getTime() / 1000) * 1000;
  const notBefore = new Date(now - backdate * 1000);
  const notAfter = new Date(notBefore.getTime() + (options.validitySeconds - 1) * 1000);
  const self = createSelfIssuerContext({
    id: options.id,
    subject: options.subject,
    publicKey: spki,
    notBefore,
    notAfter,
    ...(options.pathLength === undefined ? {} : { pathLenConstraint: options.pathLength }),
  });
  return issueCa(options, spki, self, { notBefore, notAfter }, 'root');
}

/** An intermediate under `issuer`, its validity held inside the issuer's, linted before signing. */
export async function createIntermediateCertificate(
  options: IntermediateCertificateOptions,
): Promise<CaCertificate> {
  const spki = await spkiOf(options);
  const validity = leafValidity(
    options.clock,
    options.validitySeconds,
    options.backdateSeconds ?? 60,
    options.issuer,
  );
  return issueCa(options, spki, options.issuer, validity, 'intermediate');
}
