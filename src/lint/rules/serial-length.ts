import type { LintRule } from '../types.ts';
import { ALL_PROFILES } from '../types.ts';

/** RFC 5280 §4.1.2.2: conforming CAs MUST NOT use serial numbers longer than 20 octets. */
export const rule: LintRule = {
  id: 'serial-length',
  citation: 'RFC 5280 §4.1.2.2',
  severity: 'error',
  profiles: ALL_PROFILES,
  check: (certificate) =>
    certificate.serial.length <= 20
      ? []
      : `the serial number has ${certificate.serial.length} octets; at most 20`,
};
