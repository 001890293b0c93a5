import { AppError } from '../lib/errors.ts';

/**
 * Revocation reasons by their RFC 5280 §5.3.1 ASN.1 names (DESIGN.md "Revocation reasons").
 * certificateHold (6) and removeFromCRL (8) are refused: Signet's revocations are permanent.
 * Code 7 is unassigned in RFC 5280.
 */
import {
  isRevocationReason,
  REASON_CODES,
  REVOCATION_REASONS,
  type RevocationReason,
} from '../lib/revocation-reasons.ts';

export { isRevocationReason, REASON_CODES, REVOCATION_REASONS, type RevocationReason };

const REFUSED: Readonly<Record<string, string>> = {
  certificateHold:
    'certificateHold is not supported: Signet revocations are permanent and a hold could be lifted ' +
    '(RFC 5280 §5.3.1; the CA/Browser Forum Baseline Requirements forbid it); revoke with another reason',
  removeFromCRL:
    'removeFromCRL is not supported: it only lifts a certificateHold in a delta CRL (RFC 5280 §5.3.1), ' +
    'and Signet never places certificates on hold',
};

/**
 * Parses a reason as a client wrote it. Throws AppError `revocation.reason_invalid` (400) with a
 * sentence that says why: the refused hold reasons get their own explanation, a name in the wrong
 * case is pointed at its spelling, anything else lists the accepted names.
 */
export function parseRevocationReason(value: unknown): RevocationReason {
  if (isRevocationReason(value)) return value;
  if (typeof value === 'string') {
    const refused = REFUSED[value];
    if (refused) throw new AppError('revocation.reason_invalid', 'invalid', refused, { reason: value });
    const spelled = REVOCATION_REASONS.find((name) => name.toLowerCase() === value.toLowerCase());
    if (spelled) {
      throw new AppError(
        'revocation.reason_invalid',
        'invalid',
        `unknown revocation reason "${value}": reasons are case-sensitive RFC 5280 names; did you mean "${spelled}"?`,
        { reason: value },
      );
    }
    const lowered = value.toLowerCase();
    if (lowered === 'certificatehold' || lowered === 'removefromcrl') {
      throw new AppError(
        'revocation.reason_invalid',
        'invalid',
        REFUSED[lowered === 'certificatehold' ? 'certificateHold' : 'removeFromCRL']!,
        {
          reason: value,
        },
      );
    }
  }
  const shown = typeof value === 'string' ? `"${value.slice(0, 64)}"` : typeof value;
  throw new AppError(
    'revocation.reason_invalid',
    'invalid',
    `unknown revocation reason ${shown}: use one of ${REVOCATION_REASONS.join(', ')}`,
    typeof value === 'string' ? { reason: value.slice(0, 64) } : undefined,
  );
}

export const reasonCode = (reason: RevocationReason): number => REASON_CODES[reason];
