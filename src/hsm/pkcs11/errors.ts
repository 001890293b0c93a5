import { CKR } from '../p11/pkcs11.ts';
import { HsmError, type HsmReturnValue } from '../types.ts';

/**
 * PKCS#11 return values from a module become HsmErrors that name the code, the call and what an
 * operator should check (issue #25). The numbers are those the p11-kit front end speaks
 * (p11/pkcs11.ts, PKCS#11 v2.40 pkcs11t.h) plus the few only a module returns; anything else is
 * shown as its hexadecimal value.
 */
const NAMES: Record<number, string> = Object.fromEntries([
  ...Object.entries(CKR).map(([name, value]) => [value, `CKR_${name}`] as const),
  [0x50, 'CKR_FUNCTION_CANCELED'],
  [0xa1, 'CKR_PIN_INVALID'],
  [0xa3, 'CKR_PIN_EXPIRED'],
  [0xc0, 'CKR_SIGNATURE_INVALID'],
  [0xe1, 'CKR_TOKEN_NOT_RECOGNIZED'],
  [0xe2, 'CKR_TOKEN_WRITE_PROTECTED'],
]);

/** What an operator should look at, per return value. */
const HINTS: Record<string, string> = {
  CKR_PIN_INCORRECT:
    'the token PIN is wrong: check --token-pin-file or SIGNET_PKCS11_PIN (the token PIN, not the partition user PIN)',
  CKR_PIN_LOCKED: "the token's user PIN is locked: the token's security officer must unlock it",
  CKR_PIN_EXPIRED: "the token's user PIN has expired: set a new one with the token's own tools",
  CKR_USER_PIN_NOT_INITIALIZED: "the token's user PIN was never set: initialise it with the token's tools",
  CKR_TOKEN_NOT_PRESENT:
    'no token in the slot: check that the HSM is connected and the token label or slot id',
  CKR_TOKEN_NOT_RECOGNIZED:
    'the module does not recognise the token: check the module path matches the device',
  CKR_DEVICE_REMOVED:
    'the token went away: check the HSM connection; the partition reconnects when it is back',
  CKR_SESSION_HANDLE_INVALID:
    'the session was lost (the token was removed or the module restarted); the partition reconnects',
  CKR_SESSION_CLOSED: 'the session was closed by the module; the partition reconnects',
  CKR_CRYPTOKI_NOT_INITIALIZED: 'the module was finalised under the partition; the partition reconnects',
  CKR_MECHANISM_INVALID: 'the token does not offer this mechanism: check its mechanism list (pkcs11-tool -M)',
  CKR_MECHANISM_PARAM_INVALID: 'the token refuses the mechanism parameters (salt length, curve)',
  CKR_SLOT_ID_INVALID: 'no such slot: check --slot-id against pkcs11-tool --list-slots',
  CKR_DEVICE_MEMORY: 'the token is out of memory: remove unused objects',
  CKR_USER_NOT_LOGGED_IN: 'the token session is not logged in: check the token PIN',
  CKR_TEMPLATE_INCONSISTENT:
    'the token refuses the key template: check that it supports this key type and size',
  CKR_ATTRIBUTE_VALUE_INVALID:
    'the token refuses a key attribute value: check that it supports this key type',
  CKR_KEY_SIZE_RANGE: 'the token does not support this key size',
  CKR_TOKEN_WRITE_PROTECTED: 'the token is write protected: keys cannot be created or destroyed on it',
  CKR_DEVICE_ERROR: "the token reported a device error: check the HSM's own logs",
  CKR_GENERAL_ERROR: "the module reported a general error: check the HSM's own logs",
  CKR_FUNCTION_FAILED: "the module could not perform the call: check the HSM's own logs",
};

/** Codes that mean "the token is not there right now": the partition answers like one that went away. */
export const GONE_CODES = new Set([
  'CKR_DEVICE_REMOVED',
  'CKR_SESSION_HANDLE_INVALID',
  'CKR_SESSION_CLOSED',
  'CKR_TOKEN_NOT_PRESENT',
  'CKR_TOKEN_NOT_RECOGNIZED',
  'CKR_CRYPTOKI_NOT_INITIALIZED',
  'CKR_USER_NOT_LOGGED_IN',
]);

/** Module codes that have the same meaning as a partition reason. */
const SAME_MEANING: Record<string, HsmReturnValue> = {
  CKR_MECHANISM_INVALID: 'CKR_MECHANISM_INVALID',
  CKR_MECHANISM_PARAM_INVALID: 'CKR_MECHANISM_PARAM_INVALID',
  CKR_KEY_TYPE_INCONSISTENT: 'CKR_KEY_TYPE_INCONSISTENT',
  CKR_KEY_FUNCTION_NOT_PERMITTED: 'CKR_KEY_FUNCTION_NOT_PERMITTED',
  CKR_KEY_UNEXTRACTABLE: 'CKR_KEY_UNEXTRACTABLE',
  CKR_ATTRIBUTE_SENSITIVE: 'CKR_KEY_UNEXTRACTABLE',
  CKR_KEY_HANDLE_INVALID: 'CKR_KEY_HANDLE_INVALID',
  CKR_OBJECT_HANDLE_INVALID: 'CKR_KEY_HANDLE_INVALID',
  CKR_DATA_LEN_RANGE: 'CKR_DATA_LEN_RANGE',
  CKR_DATA_INVALID: 'CKR_DATA_INVALID',
  CKR_PIN_INCORRECT: 'CKR_PIN_INCORRECT',
  CKR_PIN_LOCKED: 'CKR_PIN_LOCKED',
  CKR_ATTRIBUTE_VALUE_INVALID: 'CKR_ATTRIBUTE_VALUE_INVALID',
  CKR_TEMPLATE_INCONSISTENT: 'CKR_ATTRIBUTE_VALUE_INVALID',
  CKR_KEY_SIZE_RANGE: 'CKR_ATTRIBUTE_VALUE_INVALID',
};

export function returnValueName(code: number): string {
  return NAMES[code] ?? `CK_RV 0x${code.toString(16).padStart(8, '0')}`;
}

/** The PKCS#11 return value carried by an error from the binding (pkcs11js Pkcs11Error), if any. */
export function moduleReturnValue(error: unknown): number | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  if (error instanceof Error && typeof code === 'number') return code;
  return undefined;
}

/** True when a module error means the token is not reachable now (reconnect, answer 503). */
export function isTokenGone(error: unknown): boolean {
  const code = moduleReturnValue(error);
  if (code !== undefined) return GONE_CODES.has(returnValueName(code));
  return error instanceof HsmError && error.rv === 'CKR_DEVICE_REMOVED';
}

/**
 * Turns what the binding threw during `call` (C_Sign, C_Login...) into an HsmError whose message
 * names the module's return value and the thing to check. A token that is gone becomes
 * CKR_DEVICE_REMOVED (hsm.unavailable, a 503 at the API) whatever code the module chose for it.
 */
export function moduleError(call: string, error: unknown): HsmError {
  if (error instanceof HsmError) return error;
  const code = moduleReturnValue(error);
  if (code === undefined) {
    return new HsmError('CKR_DEVICE_ERROR', `${call} failed in the PKCS#11 binding`, { cause: error });
  }
  const name = returnValueName(code);
  const hint = HINTS[name];
  const message = `the token answered ${call} with ${name}${hint ? `: ${hint}` : ''}`;
  if (GONE_CODES.has(name)) return new HsmError('CKR_DEVICE_REMOVED', message, { cause: error });
  return new HsmError(SAME_MEANING[name] ?? 'CKR_DEVICE_ERROR', message, { cause: error });
}
