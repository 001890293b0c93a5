import { type HsmReturnValue, isHsmError } from '../types.ts';
import { CKR } from './pkcs11.ts';

/** A PKCS#11 return value to answer with (an RPC error answer carrying the CK_RV). */
export class P11Error extends Error {
  override readonly name = 'P11Error';
  constructor(
    readonly rv: number,
    message = `CK_RV 0x${rv.toString(16)}`,
  ) {
    super(message);
  }
}

/** The partition's reasons as PKCS#11 return values; the partition's own names mostly are CKR_ names already. */
const FROM_PARTITION: Record<HsmReturnValue, number> = {
  CKR_ARGUMENTS_BAD: CKR.ARGUMENTS_BAD,
  CKR_KEY_UNEXTRACTABLE: CKR.KEY_UNEXTRACTABLE,
  CKR_KEY_FUNCTION_NOT_PERMITTED: CKR.KEY_FUNCTION_NOT_PERMITTED,
  CKR_KEY_TYPE_INCONSISTENT: CKR.KEY_TYPE_INCONSISTENT,
  CKR_MECHANISM_INVALID: CKR.MECHANISM_INVALID,
  CKR_KEY_HANDLE_INVALID: CKR.KEY_HANDLE_INVALID,
  // A label already in use: PKCS#11 has no "exists" code; the template's value is what is wrong.
  CKR_OBJECT_EXISTS: CKR.ATTRIBUTE_VALUE_INVALID,
  CKR_USER_NOT_LOGGED_IN: CKR.USER_NOT_LOGGED_IN,
  CKR_PIN_INCORRECT: CKR.PIN_INCORRECT,
  CKR_PIN_LOCKED: CKR.PIN_LOCKED,
  CKR_USER_TYPE_INVALID: CKR.USER_TYPE_INVALID,
  CKR_OPERATION_NOT_PERMITTED: CKR.ACTION_PROHIBITED,
  // A sealed partition is a token that is not there (its slot says so too).
  CKR_TOKEN_SEALED: CKR.TOKEN_NOT_PRESENT,
  CKR_UNSEAL_FAILED: CKR.DEVICE_ERROR,
  CKR_DATA_INVALID: CKR.DATA_INVALID,
  CKR_DATA_LEN_RANGE: CKR.DATA_LEN_RANGE,
  CKR_OPERATION_ACTIVE: CKR.OPERATION_ACTIVE,
  CKR_OPERATION_NOT_INITIALIZED: CKR.OPERATION_NOT_INITIALIZED,
  CKR_FUNCTION_NOT_SUPPORTED: CKR.FUNCTION_NOT_SUPPORTED,
  CKR_DEVICE_ERROR: CKR.DEVICE_ERROR,
  CKR_INTEGRITY_FAILED: CKR.DEVICE_ERROR,
  CKR_DEVICE_REMOVED: CKR.DEVICE_REMOVED,
  CKR_PROTOCOL: CKR.DEVICE_ERROR,
  CKR_USER_ALREADY_LOGGED_IN: CKR.USER_ALREADY_LOGGED_IN,
  CKR_ATTRIBUTE_VALUE_INVALID: CKR.ATTRIBUTE_VALUE_INVALID,
  CKR_MECHANISM_PARAM_INVALID: CKR.MECHANISM_PARAM_INVALID,
  CKR_PIN_LEN_RANGE: CKR.PIN_LEN_RANGE,
  CKR_TOKEN_NOT_PRESENT: CKR.TOKEN_NOT_PRESENT,
  CKR_SESSION_CLOSED: CKR.SESSION_CLOSED,
};

/** The CK_RV for an error, or undefined for one that is no refusal (a bug, logged by the caller). */
export function returnValueOf(error: unknown): number | undefined {
  if (error instanceof P11Error) return error.rv;
  if (isHsmError(error)) return FROM_PARTITION[error.rv] ?? CKR.DEVICE_ERROR;
  return undefined;
}
