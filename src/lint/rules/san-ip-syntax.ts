import { subjectAltNames } from '../names.ts';
import type { LintRule } from '../types.ts';
import { ALL_PROFILES } from '../types.ts';

/** RFC 5280 §4.2.1.6: an iPAddress is 4 octets (IPv4) or 16 (IPv6), network byte order. */
export const rule: LintRule = {
  id: 'san-ip-syntax',
  citation: 'RFC 5280 §4.2.1.6',
  severity: 'error',
  profiles: ALL_PROFILES,
  check: (certificate) =>
    subjectAltNames(certificate)
      .names.filter((name) => name.type === 'ip' && !name.valid)
      .map((name) => `iPAddress ${JSON.stringify(name.value)} is not 4 or 16 octets`),
};
