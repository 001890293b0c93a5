/**
 * The one answer to "is the partition unavailable, so try later?" (rather than broken, or a
 * refusal): the API answers 503 hsm.unavailable, OCSP answers tryLater and the CRL writer waits for
 * the signer, all from this classification. Those return values say the partition is unreachable,
 * sealed, logged out, lost the session or its device: nothing was wrong with the request.
 */

import { HSM_REASONS, type HsmReturnValue } from './types.ts';

const UNAVAILABLE_RETURN_VALUES: readonly HsmReturnValue[] = [
  'CKR_DEVICE_REMOVED',
  'CKR_TOKEN_SEALED',
  'CKR_USER_NOT_LOGGED_IN',
  'CKR_SESSION_CLOSED',
  'CKR_PROTOCOL',
  'CKR_DEVICE_ERROR',
];

/** Their stable codes (hsm.unavailable, hsm.sealed, ...), as an HsmError carries them across the socket. */
const UNAVAILABLE_CODES: ReadonlySet<string> = new Set(
  UNAVAILABLE_RETURN_VALUES.map((rv) => HSM_REASONS[rv]),
);

/**
 * Whether `error`, or an error along its cause chain, says the partition is unavailable: an
 * HsmError, or anything carrying one of its codes (duck-typed, as errors cross process boundaries).
 */
export function partitionUnavailable(error: unknown): boolean {
  let current: unknown = error;
  for (let depth = 0; depth < 6 && current && typeof current === 'object'; depth++) {
    const { code, cause } = current as { code?: unknown; cause?: unknown };
    if (typeof code === 'string' && UNAVAILABLE_CODES.has(code)) return true;
    current = cause;
  }
  return false;
}
