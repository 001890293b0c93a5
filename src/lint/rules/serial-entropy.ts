import type { LintRule } from '../types.ts';
import { ALL_PROFILES } from '../types.ts';

/**
 * BR §7.1: serials are non-sequential and carry at least 64 bits from a CSPRNG. Entropy cannot
 * be seen in one certificate; a serial shorter than 8 octets cannot hold 64 random bits.
 */
export const rule: LintRule = {
  id: 'serial-entropy',
  citation: 'CA/B Forum BR §7.1',
  severity: 'error',
  profiles: ALL_PROFILES,
  check: (certificate) =>
    certificate.serial.length >= 8
      ? []
      : `the serial number has ${certificate.serial.length} octets, too short for 64 random bits`,
};
