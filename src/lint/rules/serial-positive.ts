import type { LintRule } from '../types.ts';
import { ALL_PROFILES } from '../types.ts';

/** RFC 5280 §4.1.2.2: the serial number MUST be a positive integer. */
export const rule: LintRule = {
  id: 'serial-positive',
  citation: 'RFC 5280 §4.1.2.2',
  severity: 'error',
  profiles: ALL_PROFILES,
  check(certificate) {
    const serial = certificate.serial;
    if (serial.length > 0 && serial[0]! >= 0x80) return 'the serial number is negative';
    if (serial.every((byte) => byte === 0)) return 'the serial number is zero';
    return [];
  },
};
