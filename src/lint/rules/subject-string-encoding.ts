import { TAG } from '../../x509/der.ts';
import { SUBJECT_ATTRIBUTE_BY_OID } from '../../x509/oids.ts';
import type { LintRule } from '../types.ts';
import { ALL_PROFILES } from '../types.ts';

/**
 * RFC 5280 §4.1.2.4: CAs MUST use PrintableString or UTF8String for DirectoryString values;
 * countryName and serialNumber are PrintableString (X.520); emailAddress and domainComponent
 * are IA5String (RFC 2985 §5.2.1, RFC 4519 §2.4).
 */
export const rule: LintRule = {
  id: 'subject-string-encoding',
  citation: 'RFC 5280 §4.1.2.4; X.520; RFC 2985 §5.2.1; RFC 4519 §2.4',
  severity: 'error',
  profiles: ALL_PROFILES,
  check(certificate) {
    const problems: string[] = [];
    for (const value of certificate.subjectValues) {
      const type = SUBJECT_ATTRIBUTE_BY_OID.get(value.oid) ?? value.oid;
      const expected =
        type === 'C' || type === 'serialNumber'
          ? [TAG.PRINTABLE_STRING]
          : type === 'emailAddress' || type === 'DC'
            ? [TAG.IA5_STRING]
            : [TAG.PRINTABLE_STRING, TAG.UTF8_STRING];
      if (!expected.includes(value.tag as never)) {
        problems.push(`subject ${type} is encoded with string tag ${value.tag}`);
      }
    }
    return problems;
  },
};
