import { content, decodeInteger, readDer, TAG } from '../../x509/der.ts';
import { OID } from '../../x509/oids.ts';
import type { CrlLintRule } from '../crl-types.ts';

/**
 * RFC 5280 §5.2.3: conforming CRL issuers MUST include the CRL number, non-critical, a
 * non-negative INTEGER of at most 20 octets.
 */
export const rule: CrlLintRule = {
  id: 'crl-number',
  citation: 'RFC 5280 §5.2.3',
  severity: 'error',
  check(crl) {
    const number = crl.extensions.get(OID.crlNumber);
    if (!number) return 'the CRL has no cRLNumber';
    const out: string[] = [];
    if (number.critical) out.push('the cRLNumber is marked critical');
    const value = readDer(number.value, { maxDepth: 1 });
    if (value.tag !== TAG.INTEGER) return [...out, 'the cRLNumber is not an INTEGER'];
    if (decodeInteger(value) < 0n) out.push('the cRLNumber is negative');
    if (content(value).length > 20) out.push('the cRLNumber is longer than 20 octets');
    return out;
  },
};
