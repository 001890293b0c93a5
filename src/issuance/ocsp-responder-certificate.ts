/**
 * A delegated OCSP responder's certificate (RFC 6960 §4.2.2.2, issue #27): issued by the CA it
 * answers for, EKU id-kp-OCSPSigning, id-pkix-ocsp-nocheck (§4.2.2.2.1: a client need not check
 * its revocation, so its validity is kept short and the CA re-issues it before it expires),
 * keyUsage digitalSignature, no SAN. Built, linted with the ocsp-responder profile and signed through an
 * issuance token like every certificate.
 */
import type { webcrypto } from 'node:crypto';
import type { Clock } from '../lib/clock.ts';
import {
  encodeAuthorityKeyIdentifier,
  encodeBasicConstraints,
  encodeExtendedKeyUsage,
  encodeExtension,
  encodeKeyUsage,
  encodeTbsCertificate,
  generateSerial,
  serialToHex,
} from '../x509/certificate.ts';
import { octetString, TAG, tlv } from '../x509/der.ts';
import { type IssuerContext, subjectKeyIdentifier } from '../x509/issuer.ts';
import { encodeName } from '../x509/names.ts';
import { OID } from '../x509/oids.ts';
import { LintRefusedError } from './ca-certificates.ts';
import { lintCertificate, type SigningCrypto, signCertificate } from './token.ts';

export interface ResponderCertificateOptions {
  issuer: IssuerContext;
  crypto: SigningCrypto;
  /** The issuer's key (purpose certificate). */
  signingKey: webcrypto.CryptoKey;
  /** The responder key's SubjectPublicKeyInfo, DER (its key stays in the partition). */
  publicKey: Uint8Array;
  clock: Clock;
  validitySeconds: number;
  /** The responder's common name, e.g. `dev-intermediate OCSP responder`. */
  commonName: string;
  /**
   * Called with the linted TBS before the partition signs it: the CA records it (a pending
   * certificate with its TBS hash) so that `signet audit reconcile` accounts for the signature.
   */
  beforeSign?: (tbs: Uint8Array, facts: Omit<ResponderCertificate, 'der'>) => Promise<void>;
}

export interface ResponderCertificate {
  der: Uint8Array;
  serialNumber: string;
  notBefore: Date;
  notAfter: Date;
}

export async function createResponderCertificate(
  options: ResponderCertificateOptions,
): Promise<ResponderCertificate> {
  const { issuer, publicKey } = options;
  const now = Math.floor(options.clock.now().getTime() / 1000) * 1000;
  // A minute of backdating for clocks behind ours; never outliving the issuer (RFC 5280 §6.1).
  const notBefore = new Date(Math.max(now - 60_000, issuer.notBefore.getTime()));
  const notAfter = new Date(Math.min(now + options.validitySeconds * 1000, issuer.notAfter.getTime()));
  if (!(notBefore < notAfter))
    throw new RangeError(`issuer ${issuer.id} has expired: no responder certificate`);
  const serial = generateSerial();
  const tbs = encodeTbsCertificate({
    serial,
    signatureAlgorithm: issuer.signatureAlgorithm.identifier,
    issuer: issuer.subject,
    notBefore,
    notAfter,
    subject: encodeName([{ type: 'CN', value: options.commonName }]),
    publicKey,
    extensions: [
      encodeExtension(OID.subjectKeyIdentifier, false, octetString(subjectKeyIdentifier(publicKey))),
      encodeExtension(
        OID.authorityKeyIdentifier,
        false,
        encodeAuthorityKeyIdentifier(issuer.subjectKeyIdentifier),
      ),
      encodeExtension(OID.basicConstraints, true, encodeBasicConstraints(false)),
      encodeExtension(OID.keyUsage, true, encodeKeyUsage(['digitalSignature'])),
      encodeExtension(OID.extKeyUsage, false, encodeExtendedKeyUsage(['ocspSigning'])),
      // RFC 6960 §4.2.2.2.1: the extension value is NULL.
      encodeExtension(OID.ocspNoCheck, false, tlv(TAG.NULL)),
    ],
  });
  const lint = lintCertificate(tbs, { issuer, profile: 'ocsp-responder' });
  if (!lint.ok) throw new LintRefusedError(lint.findings);
  const facts = { serialNumber: serialToHex(serial), notBefore, notAfter };
  await options.beforeSign?.(tbs, facts);
  const der = await signCertificate(lint.token, { crypto: options.crypto, key: options.signingKey });
  return { der, ...facts };
}
