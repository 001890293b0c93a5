import { content, readDer } from '../../x509/der.ts';
import { OID } from '../../x509/oids.ts';
import type { CrlLintRule } from '../crl-types.ts';

/**
 * RFC 5280 §5.2.5, when the CRL carries an issuing distribution point: it MUST be critical, and
 * it covers user or CA certificates, not both; DER leaves out a BOOLEAN that is its DEFAULT FALSE.
 */
export const rule: CrlLintRule = {
  id: 'crl-issuing-distribution-point',
  citation: 'RFC 5280 §5.2.5',
  severity: 'error',
  check(crl) {
    const idp = crl.extensions.get(OID.issuingDistributionPoint);
    if (!idp) return [];
    const out: string[] = [];
    if (!idp.critical) out.push('the issuingDistributionPoint is not critical');
    const fields = readDer(idp.value, { maxDepth: 8 }).children;
    const flag = (tag: number) => fields.find((field) => field.tag === tag);
    const onlyUser = flag(0x81);
    const onlyCa = flag(0x82);
    for (const field of [onlyUser, onlyCa]) {
      if (field && content(field)[0] !== 0xff)
        out.push('an issuingDistributionPoint flag is an explicit FALSE');
    }
    if (onlyUser && onlyCa)
      out.push('the issuingDistributionPoint covers only user and only CA certificates');
    return out;
  },
};
