import type { CrlLintRule } from '../crl-types.ts';
import { rule as authorityKeyIdentifier } from './crl-authority-key-identifier.ts';
import { rule as issuingDistributionPoint } from './crl-issuing-distribution-point.ts';
import { rule as number } from './crl-number.ts';
import { rule as reasonCodes } from './crl-reason-codes.ts';
import { rule as structure } from './crl-structure.ts';
import { rule as times } from './crl-times.ts';

/** Every CRL rule, one per file, in the order findings are reported. */
export const CRL_RULES: readonly CrlLintRule[] = [
  structure,
  authorityKeyIdentifier,
  number,
  times,
  reasonCodes,
  issuingDistributionPoint,
];
