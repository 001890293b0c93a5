import { equalBytes } from '../../x509/der.ts';
import { OID } from '../../x509/oids.ts';
import { decodeAuthorityKeyIdentifier } from '../extensions.ts';
import type { LintRule } from '../types.ts';
import { ALL_PROFILES } from '../types.ts';

/**
 * RFC 5280 §4.2.1.1: keyIdentifier MUST be present in every certificate except a self-signed
 * root, and is the issuer's subjectKeyIdentifier, so path builders find the right issuer key.
 */
export const rule: LintRule = {
  id: 'authority-key-identifier',
  citation: 'RFC 5280 §4.2.1.1',
  severity: 'error',
  profiles: ALL_PROFILES,
  check(certificate, { issuer, profile }) {
    const extension = certificate.extension(OID.authorityKeyIdentifier);
    if (!extension) return profile === 'root' ? [] : 'authorityKeyIdentifier is missing';
    const value = certificate.decode(extension, decodeAuthorityKeyIdentifier);
    if (!value.keyIdentifier) return 'authorityKeyIdentifier has no keyIdentifier';
    return equalBytes(value.keyIdentifier, issuer.subjectKeyIdentifier)
      ? []
      : `authorityKeyIdentifier is not the subjectKeyIdentifier of issuer ${issuer.id}`;
  },
};
