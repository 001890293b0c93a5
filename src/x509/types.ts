import type { KEY_USAGE_NAMES } from '../lib/key-usage.ts';
/**
 * The shapes that pass between CSR intake (x509/csr), the policy engine (policy/) and the
 * certificate builder (x509/certificate): a parsed request in, a certificate template out.
 * Pure data: no classes, no library types, so each side can be tested on its own.
 */

/** DESIGN.md "SANs in JSON". */
export type SanType = 'dns' | 'ip' | 'email' | 'uri';
export interface San {
  type: SanType;
  /** dns: A-label form, lower case; ip: canonical text (IPv4 dotted, IPv6 RFC 5952); email; uri. */
  value: string;
}

/** Subject attribute short names, in the order they appear (one attribute per RDN). */
export type SubjectAttributeType =
  | 'CN'
  | 'O'
  | 'OU'
  | 'C'
  | 'ST'
  | 'L'
  | 'serialNumber'
  | 'emailAddress'
  | 'DC'
  | 'street'
  | 'postalCode';
export interface SubjectAttribute {
  type: SubjectAttributeType;
  value: string;
}

/**
 * Names of public-key algorithms as the CA reports them: the six partition names
 * (`ecdsa-p256`, `ecdsa-p384`, `rsa-2048`, `rsa-3072`, `rsa-4096`, `ed25519`) and, for RSA keys
 * of other sizes, `rsa-<bits>`.
 */
export type PublicKeyAlgorithmName = string;

export interface RawExtension {
  oid: string;
  critical: boolean;
  /** The extnValue's contents (the DER inside the OCTET STRING). */
  value: Uint8Array;
}

/** A CSR that passed intake: well-formed DER, signature verified, key acceptable. */
export interface ParsedCsr {
  der: Uint8Array;
  /** SHA-256 of the DER, hex. */
  sha256: string;
  subject: SubjectAttribute[];
  /** From the extensionRequest's subjectAltName, in request order. */
  sans: San[];
  /** SubjectPublicKeyInfo, DER. */
  publicKey: Uint8Array;
  keyAlgorithm: PublicKeyAlgorithmName;
  /** Every requested extension other than subjectAltName, as requested. */
  extensions: RawExtension[];
  /** Present when the request carries basicConstraints. */
  requestedCa?: boolean;
  /** Requested EKU OIDs, when the request carries extendedKeyUsage. */
  requestedEku?: string[];
}

/** RFC 5280 §4.2.1.3 key usage bit names. */
export type KeyUsageName = (typeof KEY_USAGE_NAMES)[number];

/** RFC 5280 §4.2.1.12 purposes by name; any other EKU is written as its dotted OID. */
export type ExtendedKeyUsageName =
  | 'serverAuth'
  | 'clientAuth'
  | 'codeSigning'
  | 'emailProtection'
  | 'timeStamping'
  | 'ocspSigning';

/**
 * What a policy allows: everything the certificate will say about its subject. The CA adds the
 * serial, issuer, AKI/SKI, CRL DP, AIA and the signature. Times are relative so policies stay
 * pure; the CA turns them into dates with its clock and caps notAfter at the issuer's.
 */
export interface CertificateTemplate {
  /** The policy that produced this template. */
  policy: string;
  /** The issuer id (slug) that must sign. */
  issuer: string;
  /** May be empty (e.g. SPIFFE), which makes the SAN extension critical (RFC 5280 §4.2.1.6). */
  subject: SubjectAttribute[];
  sans: San[];
  /** SubjectPublicKeyInfo, DER, from the CSR. */
  publicKey: Uint8Array;
  keyAlgorithm: PublicKeyAlgorithmName;
  validitySeconds: number;
  /** notBefore = now - backdateSeconds. */
  backdateSeconds: number;
  keyUsage: KeyUsageName[];
  extendedKeyUsage: (ExtendedKeyUsageName | string)[];
  /** certificatePolicies OIDs; empty means no extension. */
  policyOids: string[];
  /** RFC 7633 TLS feature status_request. */
  ocspMustStaple: boolean;
  /** CSR extensions the policy lets through unchanged. */
  passthroughExtensions: RawExtension[];
}
