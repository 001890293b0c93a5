import { subjectAltNames } from '../names.ts';
import type { LintRule } from '../types.ts';
import { ALL_PROFILES } from '../types.ts';

/** RFC 3986 §3 absolute URI: scheme ":" hier-part, only unreserved, reserved and %HH octets. */
const ABSOLUTE_URI = /^[A-Za-z][A-Za-z0-9+.-]*:([A-Za-z0-9\-._~!$&'()*+,;=:@/?#[\]]|%[0-9A-Fa-f]{2})+$/;

/**
 * RFC 5280 §4.2.1.6: a uniformResourceIdentifier MUST NOT be relative, MUST follow RFC 3986 and
 * MUST include both a scheme and a scheme-specific part.
 */
export const rule: LintRule = {
  id: 'san-uri-syntax',
  citation: 'RFC 5280 §4.2.1.6; RFC 3986 §3',
  severity: 'error',
  profiles: ALL_PROFILES,
  check: (certificate) =>
    subjectAltNames(certificate)
      .names.filter((name) => name.type === 'uri' && !ABSOLUTE_URI.test(name.value))
      .map((name) => `uniformResourceIdentifier ${JSON.stringify(name.value)} is not an absolute URI`),
};
