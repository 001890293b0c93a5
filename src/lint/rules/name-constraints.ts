import { type NameToCheck, nameConstraintViolations } from '../../x509/name-constraints.ts';
import { decodeName, parseIp } from '../../x509/names.ts';
import { SUBJECT_ATTRIBUTE_OIDS } from '../../x509/oids.ts';
import { dnsNameProblem } from '../dns.ts';
import { commonNames, subjectAltNames, subjectValuesOf } from '../names.ts';
import type { LintRule } from '../types.ts';

/**
 * RFC 5280 §4.2.1.10 and §6.1.3 (b), (c): every name of the certificate lies within the issuer's
 * permitted subtrees of its form and outside its excluded subtrees — the SANs, the subject DN
 * (directoryName), subject emailAddress values (rfc822Name), and a subject CN that is a host
 * name or IP address, as verifiers that still read the CN would see it (BR §7.1.2.10.8). The
 * constraints of every CA above the issuer hold too (§6.1.4 (g) intersects them down the path):
 * a name an upper CA excludes is refused even where the issuer itself permits it.
 */
export const rule: LintRule = {
  id: 'name-constraints',
  citation: 'RFC 5280 §4.2.1.10, §6.1.3 (b)-(c); CA/B Forum BR §7.1.2.10.8',
  severity: 'error',
  profiles: ['leaf', 'intermediate'],
  check(certificate, { issuer }) {
    const constraints = [
      ...(issuer.nameConstraints ? [{ nc: issuer.nameConstraints, whose: '' }] : []),
      ...(issuer.superiorNameConstraints ?? []).map((nc, i) => ({
        nc,
        whose: ` (constraint of the CA ${i + 1} above the issuer)`,
      })),
    ];
    if (constraints.length === 0) return [];
    const names: NameToCheck[] = [];
    for (const name of subjectAltNames(certificate).names) {
      if (name.type !== 'other') names.push({ type: name.type, value: name.value, source: 'subjectAltName' });
    }
    if (certificate.subjectValues.length > 0) {
      names.push({
        type: 'directoryName',
        value: 'subject',
        rdns: decodeName(certificate.raw.subject),
        source: 'subject',
      });
    }
    for (const email of subjectValuesOf(certificate, SUBJECT_ATTRIBUTE_OIDS.emailAddress)) {
      names.push({ type: 'email', value: email, source: 'subject emailAddress' });
    }
    for (const cn of commonNames(certificate)) {
      if (parseIp(cn)) names.push({ type: 'ip', value: cn, source: 'subject CN' });
      else if (!dnsNameProblem(cn)) names.push({ type: 'dns', value: cn, source: 'subject CN' });
    }
    return constraints.flatMap(({ nc, whose }) =>
      nameConstraintViolations(nc, names).map((violation) => `${violation}${whose}`),
    );
  },
};
