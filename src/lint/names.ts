/** The certificate's names as the lint rules check them: SAN entries and name-like subject values. */

import { SubjectAlternativeName } from '@peculiar/asn1-x509';
import { OID, SUBJECT_ATTRIBUTE_OIDS } from '../x509/oids.ts';
import type { LintCertificate, LintExtension } from './certificate.ts';

export interface LintName {
  type: 'dns' | 'email' | 'uri' | 'ip' | 'other';
  value: string;
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
    const names = certificate.decode(extension, SubjectAlternativeName).map((name): LintName => {
      if (name.dNSName !== undefined) return { type: 'dns', value: name.dNSName };
      if (name.iPAddress !== undefined) return { type: 'ip', value: name.iPAddress };
      if (name.rfc822Name !== undefined) return { type: 'email', value: name.rfc822Name };
      if (name.uniformResourceIdentifier !== undefined)
        return { type: 'uri', value: name.uniformResourceIdentifier };
      return { type: 'other', value: '' };
    });
    return { extension, names };
  } catch (error) {
    return { extension, names: [], error: `subjectAltName does not decode: ${(error as Error).message}` };
  }
}

export function subjectValuesOf(certificate: LintCertificate, oid: string): string[] {
  return certificate.subjectValues.filter((value) => value.oid === oid).map((value) => value.value);
}

export const commonNames = (certificate: LintCertificate): string[] =>
  subjectValuesOf(certificate, SUBJECT_ATTRIBUTE_OIDS.CN);
