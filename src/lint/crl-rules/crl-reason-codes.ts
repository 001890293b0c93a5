import { REASON_CODES } from '../../lib/revocation-reasons.ts';
import { equalBytes, oid, TAG } from '../../x509/der.ts';
import { OID } from '../../x509/oids.ts';
import type { CrlLintRule } from '../crl-types.ts';

const ALLOWED = new Set<number>(Object.values(REASON_CODES));
const REASON_OID = oid(OID.crlReason);

/**
 * RFC 5280 §5.3.1: reasonCode is a non-critical ENUMERATED of the listed values (7 is unassigned);
 * unspecified (0) SHOULD be absent rather than written; Signet never puts a certificate on hold,
 * so certificateHold (6) and removeFromCRL (8) are refused too.
 */
export const rule: CrlLintRule = {
  id: 'crl-reason-codes',
  citation: 'RFC 5280 §5.3.1',
  severity: 'error',
  check(crl) {
    const out: string[] = [];
    for (const entry of crl.entries()) {
      const reason = entry.extensions.find((extension) => equalBytes(extension.oid, REASON_OID));
      if (!reason) continue;
      const serial = Buffer.from(entry.serial).toString('hex');
      if (reason.critical) out.push(`the reasonCode of ${serial} is marked critical`);
      const value = reason.value;
      const code = value[2];
      if (value.length !== 3 || value[0] !== TAG.ENUMERATED || value[1] !== 1 || code === undefined) {
        out.push(`the reasonCode of ${serial} is not a one-octet ENUMERATED`);
      } else if (code === 0) out.push(`the reasonCode of ${serial} is unspecified, which should be absent`);
      else if (!ALLOWED.has(code)) out.push(`the reasonCode of ${serial} is ${code}, not one Signet writes`);
      if (out.length >= 10) break; // one broken source breaks every entry: ten say enough
    }
    return out;
  },
};
