import { TAG } from '../../x509/der.ts';
import type { LintRule } from '../types.ts';
import { ALL_PROFILES } from '../types.ts';

/**
 * RFC 5280 §4.1.2.5: dates through 2049 MUST be UTCTime, dates in 2050 or later MUST be
 * GeneralizedTime (the DER forms, seconds and Z, are checked by tbs-der).
 */
export const rule: LintRule = {
  id: 'validity-time-encoding',
  citation: 'RFC 5280 §4.1.2.5',
  severity: 'error',
  profiles: ALL_PROFILES,
  check(certificate) {
    const problems: string[] = [];
    for (const [label, date, tag] of [
      ['notBefore', certificate.notBefore, certificate.notBeforeTag],
      ['notAfter', certificate.notAfter, certificate.notAfterTag],
    ] as const) {
      const expected = date.getUTCFullYear() < 2050 ? TAG.UTC_TIME : TAG.GENERALIZED_TIME;
      if (tag !== expected) {
        problems.push(
          `${label} in ${date.getUTCFullYear()} must be ${expected === TAG.UTC_TIME ? 'UTCTime' : 'GeneralizedTime'}`,
        );
      }
    }
    return problems;
  },
};
