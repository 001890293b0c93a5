/** The certificate's names as the lint rules check them: SAN entries and name-like subject values. */

import { OID, SUBJECT_ATTRIBUTE_OIDS } from '../x509/oids.ts';
import type { LintCertificate, LintExtension } from './certificate.ts';
import { decodeGeneralNames } from './extensions.ts';

export interface LintName {
  type: 'dns' | 'email' | 'uri' | 'ip' | 'other';
  value: string;
  /** False for an iPAddress of a length other than 4 or 16 octets. */
  valid: boolean;
}

export interface SanView {
  extension?: LintExtension;
  names: LintName[];
  /** Set when the extension is present but does not decode. */
  error?: string;
}

export function subjectAltNames(certificate: LintCertificate): SanView {
  const extension = certificate.extension(OID.subjectAltName);
  if (!extension) return { names: [] };
  try {
    return { extension, names: certificate.decode(extension, decodeGeneralNames) };
  } catch (error) {
    return { extension, names: [], error: `subjectAltName does not decode: ${(error as Error).message}` };
  }
}

export function subjectValuesOf(certificate: LintCertificate, oid: string): string[] {
  return certificate.subjectValues.filter((value) => value.oid === oid).map((value) => value.value);
}

export const commonNames = (certificate: LintCertificate): string[] =>
  subjectValuesOf(certificate, SUBJECT_ATTRIBUTE_OIDS.CN);
