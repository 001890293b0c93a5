/**
 * The linter's shapes. A rule checks one requirement, cites where it comes from, and returns
 * the sentences describing each way the certificate breaks it (none when it holds).
 */

import type { IssuerContext } from '../x509/issuer.ts';
import type { LintCertificate } from './certificate.ts';

/**
 * `ocsp-responder`: a delegated OCSP responder's certificate (RFC 6960 §4.2.2.2), an end entity
 * without names or revocation URLs (id-pkix-ocsp-nocheck says not to check it).
 */
export type LintProfile = 'leaf' | 'intermediate' | 'root' | 'ocsp-responder';
export type LintSeverity = 'error' | 'warning';

export interface LintFinding {
  /** The rule id, which is also its file name under src/lint/rules/. */
  rule: string;
  severity: LintSeverity;
  message: string;
  /** RFC 5280 / CA/B Forum BR section the rule implements. */
  citation: string;
}

export interface LintContext {
  /** The CA that will sign; for a root, the root itself. */
  issuer: IssuerContext;
  profile: LintProfile;
  /** Internal names (single-label, .local, .internal, ...) only when a private policy allows them. */
  allowInternalNames: boolean;
}

export interface LintRule {
  id: string;
  citation: string;
  /** Errors stop issuance; warnings are reported and do not. */
  severity: LintSeverity;
  profiles: readonly LintProfile[];
  /** The violations found, as sentences; an empty array (or nothing) when the rule holds. */
  check(certificate: LintCertificate, context: LintContext): string[] | string | undefined;
}

export const ALL_PROFILES: readonly LintProfile[] = ['leaf', 'intermediate', 'root', 'ocsp-responder'];
export const CA_PROFILES: readonly LintProfile[] = ['intermediate', 'root'];
export const LEAF_ONLY: readonly LintProfile[] = ['leaf'];
/** Certificates of end entities: leaves and OCSP responders. */
export const END_ENTITIES: readonly LintProfile[] = ['leaf', 'ocsp-responder'];
