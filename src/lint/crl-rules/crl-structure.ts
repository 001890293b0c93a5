import { equalBytes } from '../../x509/der.ts';
import type { CrlLintRule } from '../crl-types.ts';

/**
 * RFC 5280 §5.1.2.1: a CRL with extensions is v2; §5.1.2.3: its issuer is the CA's subject (the
 * CA writes its own name, so byte for byte); §5.2 (by §4.2): an extension appears at most once.
 * A TBSCertList that cannot be read at all is reported under this rule too.
 */
export const rule: CrlLintRule = {
  id: 'crl-structure',
  citation: 'RFC 5280 §5.1.2.1, §5.1.2.3, §4.2',
  severity: 'error',
  check(crl, { issuer }) {
    const out: string[] = [];
    if (crl.version !== 2) out.push(`the CRL is v${crl.version}; a CRL with extensions must be v2`);
    if (!equalBytes(crl.issuer, issuer.subject)) out.push("the CRL's issuer is not the CA's subject");
    const seen = new Set<string>();
    for (const oid of crl.extensionOids) {
      if (seen.has(oid)) out.push(`the CRL extension ${oid} appears twice`);
      seen.add(oid);
    }
    return out;
  },
};
