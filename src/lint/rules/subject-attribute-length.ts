import { SUBJECT_ATTRIBUTE_BY_OID, SUBJECT_ATTRIBUTE_MAX_LENGTH } from '../../x509/oids.ts';
import type { LintRule } from '../types.ts';
import { ALL_PROFILES } from '../types.ts';

/**
 * RFC 5280 Appendix A upper bounds (ub-common-name 64, ub-organization-name 64, ...), values
 * non-empty (DirectoryString SIZE (1..MAX)), and countryName two letters (X.520, ISO 3166).
 */
export const rule: LintRule = {
  id: 'subject-attribute-length',
  citation: 'RFC 5280 §4.1.2.6, Appendix A',
  severity: 'error',
  profiles: ALL_PROFILES,
  check(certificate) {
    const problems: string[] = [];
    for (const value of certificate.subjectValues) {
      const type = SUBJECT_ATTRIBUTE_BY_OID.get(value.oid);
      if (!type) continue;
      const length = [...value.value].length;
      if (length === 0) problems.push(`subject ${type} is empty`);
      else if (length > SUBJECT_ATTRIBUTE_MAX_LENGTH[type]) {
        problems.push(
          `subject ${type} has ${length} characters; at most ${SUBJECT_ATTRIBUTE_MAX_LENGTH[type]}`,
        );
      }
      if (type === 'C' && !/^[A-Z]{2}$/.test(value.value))
        problems.push('subject C is not two capital letters');
    }
    return problems;
  },
};
