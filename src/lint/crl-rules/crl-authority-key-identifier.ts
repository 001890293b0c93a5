import { content, equalBytes, readDer } from '../../x509/der.ts';
import { OID } from '../../x509/oids.ts';
import type { CrlLintRule } from '../crl-types.ts';

/**
 * RFC 5280 §5.2.1: conforming CRL issuers MUST include the authority key identifier, non-critical;
 * its keyIdentifier is the issuer's subject key identifier, so relying parties find the right key.
 */
export const rule: CrlLintRule = {
  id: 'crl-authority-key-identifier',
  citation: 'RFC 5280 §5.2.1',
  severity: 'error',
  check(crl, { issuer }) {
    const aki = crl.extensions.get(OID.authorityKeyIdentifier);
    if (!aki) return 'the CRL has no authorityKeyIdentifier';
    const out: string[] = [];
    if (aki.critical) out.push('the authorityKeyIdentifier is marked critical');
    const keyIdentifier = readDer(aki.value, { maxDepth: 4 }).children.find((child) => child.tag === 0x80);
    if (!keyIdentifier) out.push('the authorityKeyIdentifier has no keyIdentifier');
    else if (!equalBytes(content(keyIdentifier), issuer.subjectKeyIdentifier)) {
      out.push("the authorityKeyIdentifier is not the issuer's subjectKeyIdentifier");
    }
    return out;
  },
};
