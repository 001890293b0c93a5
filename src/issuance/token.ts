/**
 * Issuance tokens (Boulder's linting-before-signing, STYLE.md), in src/issuance (database-free,
 * used by src/ca and the ceremony) so that src/lint only finds and never signs: only a passing lint yields a
 * token, the token holds the exact TBS bytes that were linted and the issuer they were linted
 * for, and signCertificate takes the token and nothing else for the bytes. A token cannot be
 * made outside this module (a module-private brand checked at run time, private fields) and
 * cannot be used twice. After signing, the certificate is taken apart again: its TBS must be the
 * linted TBS byte for byte and its signature must verify with the issuer's public key; anything
 * else is a MisissuanceError and nothing is returned.
 */

import { createHash, type webcrypto } from 'node:crypto';
import { type LintOptions, runLint } from '../lint/lint.ts';
import type { LintFinding, LintProfile } from '../lint/types.ts';
import { signatureValueFromWebCrypto, webCryptoSignParams } from '../x509/algorithms.ts';
import { assembleCertificate } from '../x509/certificate.ts';
import { encoding, toHex } from '../x509/der.ts';
import { type IssuerContext, readCertificateFields } from '../x509/issuer.ts';
import { MisissuanceError } from './errors.ts';
import { checkSignedCertificate, checkSigningKey } from './post-sign-check.ts';

export { MisissuanceError };

/** Set only while mint() runs, so the constructor refuses every other caller, subclasses included. */
let minting = false;
let mint: (tbs: Uint8Array, issuer: IssuerContext, profile: LintProfile) => IssuanceToken;
let take: (token: IssuanceToken) => { tbs: Uint8Array; issuer: IssuerContext };
const minted = new WeakSet<object>();

/** Proof that these exact TBS bytes passed the linter for this issuer. Single use. */
export class IssuanceToken {
  readonly issuerId: string;
  readonly profile: LintProfile;
  /** Lowercase hex of the serial's INTEGER content octets. */
  readonly serialNumber: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
  /** SHA-256 of the linted TBS, hex (for logs and audit). */
  readonly tbsSha256: string;
  readonly #tbs: Uint8Array;
  readonly #issuer: IssuerContext;
  #used = false;

  private constructor(tbs: Uint8Array, issuer: IssuerContext, profile: LintProfile) {
    if (!minting) throw new TypeError('issuance tokens come only from a passing lintCertificate');
    this.#tbs = Uint8Array.from(tbs);
    this.#issuer = issuer;
    this.issuerId = issuer.id;
    this.profile = profile;
    const fields = readCertificateFields(this.#tbs, true);
    this.serialNumber = toHex(encoding(fields.serial).subarray(2));
    this.notBefore = fields.notBefore;
    this.notAfter = fields.notAfter;
    this.tbsSha256 = createHash('sha256').update(this.#tbs).digest('hex');
  }

  /** A copy of the linted TBSCertificate DER. */
  get tbs(): Uint8Array {
    return Uint8Array.from(this.#tbs);
  }

  get used(): boolean {
    return this.#used;
  }

  static {
    // The only ways to make or spend a token are these two module-private functions.
    mint = (tbs, issuer, profile) => {
      minting = true;
      try {
        const token = new IssuanceToken(tbs, issuer, profile);
        minted.add(token);
        return token;
      } finally {
        minting = false;
      }
    };
    take = (token) => {
      if (typeof token !== 'object' || token === null || !minted.has(token) || !(#tbs in token)) {
        throw new MisissuanceError('not an issuance token from lintCertificate');
      }
      if (token.#used)
        throw new MisissuanceError(`issuance token for serial ${token.serialNumber} was already used`);
      token.#used = true;
      return { tbs: token.#tbs, issuer: token.#issuer };
    };
  }
}

export type LintResult =
  | { ok: true; findings: LintFinding[]; token: IssuanceToken }
  | { ok: false; findings: LintFinding[]; token?: undefined };

/**
 * Lints a TBSCertificate for an issuer and profile. `ok` when no finding is an error; only then
 * is there a token, bound to these bytes and this issuer, which signCertificate needs.
 */
export function lintCertificate(tbsDer: Uint8Array, options: LintOptions): LintResult {
  const tbs = Uint8Array.from(tbsDer);
  const findings = runLint(tbs, options);
  if (findings.some((finding) => finding.severity === 'error')) return { ok: false, findings };
  return { ok: true, findings, token: mint(tbs, options.issuer, options.profile) };
}

/** A WebCrypto `Crypto` (Node's webcrypto, @peculiar/webcrypto, the HSM facade): only `subtle.sign` is used. */
export interface SigningCrypto {
  subtle: Pick<webcrypto.SubtleCrypto, 'sign'>;
}

export interface SignCertificateOptions {
  crypto: SigningCrypto;
  /** The issuer's private key handle (non-extractable in the HSM). */
  key: webcrypto.CryptoKey;
}

/**
 * Signs the token's TBS through `crypto`, assembles the certificate, and checks it before
 * returning it: TBS identical to what was linted, signature valid under the issuer's key.
 * The token is spent on the first call, whatever the outcome.
 */
export async function signCertificate(
  token: IssuanceToken,
  options: SignCertificateOptions,
): Promise<Uint8Array> {
  const { tbs, issuer } = take(token);
  const algorithm = issuer.signatureAlgorithm;
  checkSigningKey(options.key, algorithm, issuer);
  let signature: Uint8Array;
  try {
    const raw = await options.crypto.subtle.sign(
      webCryptoSignParams(algorithm),
      options.key,
      Uint8Array.from(tbs),
    );
    signature = signatureValueFromWebCrypto(algorithm, new Uint8Array(raw));
  } catch (error) {
    if (error instanceof MisissuanceError) throw error;
    throw new Error(`signing for issuer ${issuer.id} failed`, { cause: error });
  }
  const certificate = assembleCertificate(tbs, algorithm.identifier, signature);
  checkSignedCertificate(certificate, tbs, issuer);
  return certificate;
}
