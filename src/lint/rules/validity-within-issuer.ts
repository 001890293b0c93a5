import type { LintRule } from '../types.ts';
import { ALL_PROFILES } from '../types.ts';

/**
 * RFC 5280 §6.1.3 (a)(2): a path holds only while every certificate in it is valid, so a
 * certificate outliving its issuer is dead weight (BR §6.3.2 caps subscriber validity by the CA's).
 */
export const rule: LintRule = {
  id: 'validity-within-issuer',
  citation: 'RFC 5280 §6.1.3 (a)(2); CA/B Forum BR §6.3.2',
  severity: 'error',
  profiles: ALL_PROFILES,
  check(certificate, { issuer }) {
    const problems: string[] = [];
    if (certificate.notAfter.getTime() > issuer.notAfter.getTime()) {
      problems.push(
        `notAfter ${certificate.notAfter.toISOString()} is after the issuer's ${issuer.notAfter.toISOString()}`,
      );
    }
    if (certificate.notBefore.getTime() < issuer.notBefore.getTime()) {
      problems.push(
        `notBefore ${certificate.notBefore.toISOString()} is before the issuer's ${issuer.notBefore.toISOString()}`,
      );
    }
    return problems;
  },
};
