import type { LintRule } from '../types.ts';
import { ALL_PROFILES } from '../types.ts';

/** RFC 5280 §4.2: a certificate MUST NOT include more than one instance of a particular extension. */
export const rule: LintRule = {
  id: 'extensions-unique',
  citation: 'RFC 5280 §4.2',
  severity: 'error',
  profiles: ALL_PROFILES,
  check(certificate) {
    const seen = new Set<string>();
    const problems: string[] = [];
    for (const extension of certificate.extensions) {
      if (seen.has(extension.oid)) problems.push(`extension ${extension.oid} appears more than once`);
      seen.add(extension.oid);
    }
    return problems;
  },
};
