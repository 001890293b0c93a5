import { randomBytes } from 'node:crypto';
import { changeObject, createObject, destroyObject, generateKeyPair, wrapKey } from './admin.ts';
import { CALLS, ERROR_CALL, HANDSHAKE, type RpcCall } from './calls.ts';
import { P11Error, returnValueOf } from './errors.ts';
import { CKF, CKM, CKR } from './pkcs11.ts';
import { sign, signFinal, signInit, signUpdate } from './signing.ts';
import { type P11Token, SLOT_ID } from './token.ts';
import { ProtocolError, type RpcReader, RpcWriter } from './wire.ts';

/**
 * The call table: for each call, how its arguments are read and what runs. A handler reads every
 * argument before anything runs, so a message that turns out malformed (ProtocolError) has
 * changed nothing; the server then closes that connection. A call this partition does not offer
 * answers CKR_FUNCTION_NOT_SUPPORTED.
 */

type Run = (w: RpcWriter) => Promise<void> | void;
type Handler = (t: P11Token, r: RpcReader) => Run;

/** [type, smallest key, largest key (bits), flags] for C_GetMechanismList and C_GetMechanismInfo. */
const EC_FLAGS = CKF.EC_F_P | CKF.EC_NAMEDCURVE | CKF.EC_UNCOMPRESS;
const MECHANISMS: [number, number, number, number][] = [
  [CKM.RSA_PKCS_KEY_PAIR_GEN, 2048, 4096, CKF.GENERATE_KEY_PAIR],
  [CKM.RSA_PKCS, 2048, 4096, CKF.SIGN],
  [CKM.RSA_PKCS_PSS, 2048, 4096, CKF.SIGN],
  [CKM.SHA256_RSA_PKCS, 2048, 4096, CKF.SIGN],
  [CKM.SHA384_RSA_PKCS, 2048, 4096, CKF.SIGN],
  [CKM.SHA512_RSA_PKCS, 2048, 4096, CKF.SIGN],
  [CKM.EC_KEY_PAIR_GEN, 256, 384, CKF.GENERATE_KEY_PAIR | EC_FLAGS],
  [CKM.ECDSA, 256, 384, CKF.SIGN | EC_FLAGS],
  [CKM.ECDSA_SHA1, 256, 384, CKF.SIGN | EC_FLAGS],
];

/** Largest C_GenerateRandom answer. */
const MAX_RANDOM = 64 * 1024;

/** An "au" answer for a caller that gave `room` places: the values, or only their count. */
function ulongList(w: RpcWriter, values: readonly number[], room: number): void {
  if (room < values.length) w.ulongArrayLength(values.length);
  else w.ulongArray(values);
}

const HANDLERS: Record<string, Handler> = {
  C_Initialize: (t, r) => {
    const handshake = r.byteArray();
    r.u8(); // whether reserved data follows (pReserved of CK_C_INITIALIZE_ARGS)
    r.byteArray();
    return () => {
      if (!handshake?.equals(HANDSHAKE)) throw new ProtocolError('wrong handshake');
      t.initialize();
    };
  },
  C_Finalize: (t) => () => t.finalize(),
  C_GetInfo: (t) => (w) => {
    t.requireInitialized();
    t.writeInfo(w);
  },
  C_GetSlotList: (t, r) => {
    const tokenPresent = r.u8() !== 0;
    const room = r.bufferLength();
    return (w) => {
      t.requireInitialized();
      ulongList(w, tokenPresent && !t.present ? [] : [SLOT_ID], room);
    };
  },
  C_GetSlotInfo: (t, r) => {
    const slot = r.ulong();
    return (w) => {
      t.requireSlot(slot);
      t.writeSlotInfo(w);
    };
  },
  C_GetTokenInfo: (t, r) => {
    const slot = r.ulong();
    return async (w) => {
      t.requireToken(slot);
      await t.writeTokenInfo(w);
    };
  },
  C_GetMechanismList: (t, r) => {
    const slot = r.ulong();
    const room = r.bufferLength();
    return (w) => {
      t.requireToken(slot);
      ulongList(
        w,
        MECHANISMS.map(([type]) => type),
        room,
      );
    };
  },
  C_GetMechanismInfo: (t, r) => {
    const slot = r.ulong();
    const type = r.ulong();
    return (w) => {
      t.requireToken(slot);
      const entry = MECHANISMS.find(([m]) => m === type);
      if (!entry) throw new P11Error(CKR.MECHANISM_INVALID);
      w.ulong(entry[1]).ulong(entry[2]).ulong(entry[3]);
    };
  },
  C_OpenSession: (t, r) => {
    const slot = r.ulong();
    const flags = r.ulong();
    return (w) => {
      w.ulong(t.openSession(slot, flags));
    };
  },
  C_CloseSession: (t, r) => {
    const session = r.ulong();
    return () => t.closeSession(session);
  },
  C_CloseAllSessions: (t, r) => {
    const slot = r.ulong();
    return () => {
      t.requireSlot(slot);
      return t.closeAllSessions();
    };
  },
  C_GetSessionInfo: (t, r) => {
    const handle = r.ulong();
    return (w) => {
      const session = t.sessionOf(handle);
      const flags = CKF.SERIAL_SESSION | (session.rw ? CKF.RW_SESSION : 0);
      w.ulong(SLOT_ID).ulong(t.sessionState(session)).ulong(flags).ulong(0);
    };
  },
  C_Login: (t, r) => {
    const session = r.ulong();
    const userType = r.ulong();
    const pin = r.byteArray();
    return async () => {
      t.sessionOf(session);
      await t.login(userType, pin);
    };
  },
  C_Logout: (t, r) => {
    const session = r.ulong();
    return async () => {
      t.sessionOf(session);
      await t.logout();
    };
  },
  C_CreateObject: (t, r) => {
    const session = r.ulong();
    const template = r.attributeArray();
    return async (w) => {
      w.ulong(await createObject(t, t.sessionOf(session), template));
    };
  },
  C_CopyObject: (t, r) => {
    const session = r.ulong();
    const object = r.ulong();
    const template = r.attributeArray();
    return async () => {
      t.sessionOf(session);
      await changeObject(t, 'copyObject', object, template);
    };
  },
  C_DestroyObject: (t, r) => {
    const session = r.ulong();
    const object = r.ulong();
    return () => destroyObject(t, t.sessionOf(session), object);
  },
  C_GetAttributeValue: (t, r) => {
    const session = r.ulong();
    const object = r.ulong();
    const requests = r.attributeBuffer();
    return async (w) => {
      t.sessionOf(session);
      await t.writeAttributes(object, requests, w);
    };
  },
  C_SetAttributeValue: (t, r) => {
    const session = r.ulong();
    const object = r.ulong();
    const template = r.attributeArray();
    return async () => {
      t.sessionOf(session);
      await changeObject(t, 'setAttributeValue', object, template);
    };
  },
  C_FindObjectsInit: (t, r) => {
    const session = r.ulong();
    const template = r.attributeArray();
    return () => t.findInit(t.sessionOf(session), template);
  },
  C_FindObjects: (t, r) => {
    const session = r.ulong();
    const room = r.bufferLength();
    return (w) => {
      w.ulongArray(t.find(t.sessionOf(session), room));
    };
  },
  C_FindObjectsFinal: (t, r) => {
    const session = r.ulong();
    return () => t.findFinal(t.sessionOf(session));
  },
  C_SignInit: (t, r) => {
    const session = r.ulong();
    const mechanism = r.mechanism();
    const key = r.ulong();
    return () => signInit(t, t.sessionOf(session), mechanism, key);
  },
  C_Sign: (t, r) => {
    const session = r.ulong();
    const data = r.byteArray();
    const room = r.bufferLength();
    return (w) => sign(t, t.sessionOf(session), data, room, w);
  },
  C_SignUpdate: (t, r) => {
    const session = r.ulong();
    const data = r.byteArray();
    return () => signUpdate(t.sessionOf(session), data);
  },
  C_SignFinal: (t, r) => {
    const session = r.ulong();
    const room = r.bufferLength();
    return (w) => signFinal(t, t.sessionOf(session), room, w);
  },
  C_GenerateKeyPair: (t, r) => {
    const session = r.ulong();
    const mechanism = r.mechanism();
    const pub = r.attributeArray();
    const priv = r.attributeArray();
    return async (w) => {
      const [publicHandle, privateHandle] = await generateKeyPair(
        t,
        t.sessionOf(session),
        mechanism,
        pub,
        priv,
      );
      w.ulong(publicHandle).ulong(privateHandle);
    };
  },
  C_WrapKey: (t, r) => {
    const session = r.ulong();
    r.mechanism();
    r.ulong(); // the wrapping key: whatever it is, the key to wrap never leaves
    const key = r.ulong();
    r.bufferLength();
    return async () => {
      t.sessionOf(session);
      await wrapKey(t, key);
    };
  },
  C_SeedRandom: (t, r) => {
    const session = r.ulong();
    r.byteArray();
    return () => {
      t.sessionOf(session);
      // The partition's generator is OpenSSL's; it takes no seed from a client.
      throw new P11Error(CKR.RANDOM_SEED_NOT_SUPPORTED);
    };
  },
  C_GenerateRandom: (t, r) => {
    const session = r.ulong();
    const length = r.bufferLength();
    return (w) => {
      t.sessionOf(session);
      if (length > MAX_RANDOM) throw new P11Error(CKR.DATA_LEN_RANGE);
      w.byteArray(randomBytes(length));
    };
  },
};

/** Reads the call id and checks the signature string; throws ProtocolError for anything else. */
function readHeader(r: RpcReader): RpcCall {
  const id = r.u32();
  const call = id > 0 ? CALLS[id] : undefined;
  if (!call) throw new ProtocolError(`unknown call ${id}`);
  const signature = r.rawArray();
  if (!signature || signature.toString('latin1') !== call.request) {
    throw new ProtocolError(`${call.name} with the wrong signature`);
  }
  return call;
}

export interface Dispatched {
  call: RpcCall;
  answer: Buffer;
}

/**
 * Answers one request message. Throws ProtocolError when the message is malformed; every other
 * failure becomes an error answer carrying its CK_RV (`onInternal` hears of unexpected ones).
 */
export async function dispatch(
  token: P11Token,
  r: RpcReader,
  onInternal: (call: RpcCall, error: unknown) => void,
): Promise<Dispatched> {
  const call = readHeader(r);
  const handler = HANDLERS[call.name];
  const run: Run = handler
    ? handler(token, r)
    : () => {
        throw new P11Error(CKR.FUNCTION_NOT_SUPPORTED);
      };
  // Unsupported calls are not parsed: their arguments cannot change what they answer.
  if (handler && !r.done) throw new ProtocolError(`${call.name} has octets after its arguments`);
  const w = new RpcWriter().u32(call.id).rawArray(Buffer.from(call.response, 'latin1'));
  try {
    await run(w);
    return { call, answer: w.finish() };
  } catch (error) {
    if (error instanceof ProtocolError) throw error;
    let rv = returnValueOf(error);
    if (rv === undefined) {
      onInternal(call, error);
      rv = CKR.DEVICE_ERROR;
    }
    const e = new RpcWriter().u32(ERROR_CALL.id).rawArray(Buffer.from(ERROR_CALL.response, 'latin1'));
    return { call, answer: e.ulong(rv).finish() };
  }
}
