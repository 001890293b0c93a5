import { subjectAltNames } from '../names.ts';
import type { LintRule } from '../types.ts';
import { ALL_PROFILES } from '../types.ts';

/** RFC 5280 §4.2.1.6: if subjectAltName is present, the sequence MUST contain at least one entry. */
export const rule: LintRule = {
  id: 'san-not-empty',
  citation: 'RFC 5280 §4.2.1.6',
  severity: 'error',
  profiles: ALL_PROFILES,
  check(certificate) {
    const sans = subjectAltNames(certificate);
    if (!sans.extension) return [];
    if (sans.error) return sans.error;
    const problems: string[] = [];
    if (sans.names.length === 0) problems.push('subjectAltName has no entry');
    for (const name of sans.names) {
      if (name.type !== 'other' && name.value === '')
        problems.push(`an empty ${name.type} name in subjectAltName`);
    }
    return problems;
  },
};
