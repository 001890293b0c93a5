import { readDer } from '../../x509/der.ts';
import type { LintRule } from '../types.ts';
import { ALL_PROFILES } from '../types.ts';

/** RFC 5280 §4.1: extnValue "contains the DER encoding of an ASN.1 value". */
export const rule: LintRule = {
  id: 'extension-values-der',
  citation: 'RFC 5280 §4.1 (extnValue)',
  severity: 'error',
  profiles: ALL_PROFILES,
  check(certificate) {
    const problems: string[] = [];
    for (const extension of certificate.extensions) {
      try {
        readDer(extension.value, { maxDepth: 16 });
      } catch (error) {
        problems.push(`extension ${extension.oid} value is not DER: ${(error as Error).message}`);
      }
    }
    return problems;
  },
};
