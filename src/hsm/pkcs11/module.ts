import { createRequire } from 'node:module';
import type * as Pkcs11Js from 'pkcs11js';
import { HsmError } from '../types.ts';
import { CKF_OS_LOCKING_OK } from './constants.ts';
import { moduleError, moduleReturnValue, returnValueName } from './errors.ts';

/** Loading a PKCS#11 module (pkcs11js), sharing it between tokens, and finding a token's slot. */

export type Pkcs11Module = typeof Pkcs11Js;

let binding: Pkcs11Module | undefined;
/** pkcs11js is a native addon: loaded only by a partition that uses a token. */
function loadBinding(): Pkcs11Module {
  if (!binding) {
    try {
      binding = createRequire(import.meta.url)('pkcs11js') as Pkcs11Module;
    } catch (error) {
      throw new HsmError(
        'CKR_DEVICE_ERROR',
        'the PKCS#11 binding (pkcs11js) cannot be loaded: reinstall with its native build (npm ci)',
        { cause: error },
      );
    }
  }
  return binding;
}

export type Pkcs11Instance = InstanceType<Pkcs11Module['PKCS11']>;

/**
 * One loaded, initialised module per path for the whole process: PKCS#11 allows one
 * C_Initialize per application, and two tokens of one module (a root token and an issuing token)
 * share it. The last user's release finalises it, so a module that lost its device starts afresh.
 */
const modules = new Map<string, { pkcs11: Pkcs11Instance; users: number }>();

export function acquireModule(path: string): Pkcs11Instance {
  const known = modules.get(path);
  if (known) {
    known.users++;
    return known.pkcs11;
  }
  const p = loadBinding();
  const pkcs11 = new p.PKCS11();
  try {
    pkcs11.load(path);
  } catch (error) {
    throw new HsmError(
      'CKR_DEVICE_ERROR',
      `cannot load the PKCS#11 module ${path}: check the path and that it matches this machine`,
      { cause: error },
    );
  }
  try {
    // CKF_OS_LOCKING_OK: the *Async calls run on libuv's threads, so the module must lock
    // (with NULL arguments a module may assume one thread, and SoftHSM then crashes).
    pkcs11.C_Initialize({ flags: CKF_OS_LOCKING_OK });
  } catch (error) {
    if (returnValueName(moduleReturnValue(error) ?? -1) !== 'CKR_CRYPTOKI_ALREADY_INITIALIZED') {
      try {
        pkcs11.close();
      } catch {}
      throw moduleError('C_Initialize', error);
    }
  }
  modules.set(path, { pkcs11, users: 1 });
  return pkcs11;
}

export function releaseModule(path: string): void {
  const known = modules.get(path);
  if (!known || --known.users > 0) return;
  modules.delete(path);
  try {
    known.pkcs11.C_Finalize();
  } catch {}
  try {
    known.pkcs11.close();
  } catch {}
}

export function call<T>(name: string, body: () => T): T {
  try {
    return body();
  } catch (error) {
    throw moduleError(name, error);
  }
}

/** A slot handle (CK_SLOT_ID as the binding's little-endian buffer) as a number. */
export function slotNumber(slot: Buffer): number {
  return slot.length >= 8 ? Number(slot.readBigUInt64LE(0)) : slot.readUInt32LE(0);
}

export const spaces = (s: string) => s.replace(/\s+$/, '');

/** The slot holding the token named by label (and slot id, when both are given) or by slot id alone. */
export function findSlot(
  pkcs11: Pkcs11Instance,
  options: { module: string; tokenLabel?: string; slotId?: number },
): { slot: Buffer; label: string } {
  const slots = call('C_GetSlotList', () => pkcs11.C_GetSlotList(true));
  let slot: Buffer | undefined;
  let slotLabel = '';
  const seen: string[] = [];
  for (const candidate of slots) {
    const info = call('C_GetTokenInfo', () => pkcs11.C_GetTokenInfo(candidate));
    const label = spaces(info.label);
    const id = slotNumber(candidate);
    seen.push(`${label} (slot ${id})`);
    const matches =
      options.tokenLabel !== undefined
        ? label === options.tokenLabel && (options.slotId === undefined || id === options.slotId)
        : id === options.slotId;
    if (!matches) continue;
    if (slot) {
      throw new HsmError(
        'CKR_ARGUMENTS_BAD',
        `two tokens are labelled '${options.tokenLabel}': choose one with --slot-id`,
      );
    }
    slot = candidate;
    slotLabel = label;
  }
  if (!slot) {
    throw new HsmError(
      'CKR_DEVICE_REMOVED',
      `CKR_TOKEN_NOT_PRESENT: no token ${options.tokenLabel !== undefined ? `labelled '${options.tokenLabel}'` : `in slot ${options.slotId}`} in ${options.module} (tokens present: ${seen.join(', ') || 'none'}); check the label and that the HSM is reachable`,
    );
  }
  return { slot, label: slotLabel };
}
