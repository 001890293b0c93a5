import { signatureLength } from '../raw-sign.ts';
import { HsmError, type KeyAlgorithm, type RawSignRequest, type SignMechanism } from '../types.ts';
import { P11Error } from './errors.ts';
import { isExposed } from './objects.ts';
import { CKG, CKM, CKR } from './pkcs11.ts';
import type { P11Token, Plan, Session, SignOperation } from './token.ts';
import type { Mechanism, RpcWriter } from './wire.ts';

/**
 * C_SignInit, C_Sign, C_SignUpdate, C_SignFinal (PKCS#11 v2.40 §5.11) over the partition's own
 * signing, which checks the caller's role and the key's purpose again and appends the audit
 * record before a signature is released. Mechanisms are those Debian's p11-kit client forwards
 * (rpc-message.c, mechanism_has_no_parameters and the PSS serializer):
 *
 *   CKM_ECDSA, CKM_ECDSA_SHA1                       P-256, P-384
 *   CKM_RSA_PKCS, CKM_RSA_PKCS_PSS (a digest)        RSA
 *   CKM_SHA256_RSA_PKCS, CKM_SHA384_..., SHA512_... RSA, hashed by the partition
 *
 * The client drops CKM_ECDSA_SHA256 and the SHA*_RSA_PKCS_PSS variants before they reach here.
 */

/** The most a multi-part signature gathers (the partition signs it in one piece). */
const MAX_MULTIPART = 4 * 1024 * 1024;

const PSS_HASHES = new Map<number, { hash: 'sha256' | 'sha384' | 'sha512'; mgf: number; length: number }>([
  [CKM.SHA256, { hash: 'sha256', mgf: CKG.MGF1_SHA256, length: 32 }],
  [CKM.SHA384, { hash: 'sha384', mgf: CKG.MGF1_SHA384, length: 48 }],
  [CKM.SHA512, { hash: 'sha512', mgf: CKG.MGF1_SHA512, length: 64 }],
]);

const HASHED_RSA = new Map<number, SignMechanism>([
  [CKM.SHA256_RSA_PKCS, 'rsa-pkcs1-sha256'],
  [CKM.SHA384_RSA_PKCS, 'rsa-pkcs1-sha384'],
  [CKM.SHA512_RSA_PKCS, 'rsa-pkcs1-sha512'],
]);

/** What the partition is asked for, for this mechanism on this kind of key. */
function planFor(mechanism: Mechanism, algorithm: KeyAlgorithm): Plan {
  const ec = algorithm === 'ecdsa-p256' || algorithm === 'ecdsa-p384';
  const needs = (family: 'ec' | 'rsa') => {
    if ((family === 'ec') !== ec) throw new P11Error(CKR.KEY_TYPE_INCONSISTENT);
  };
  const noParameter = () => {
    if (mechanism.parameter && mechanism.parameter.length > 0)
      throw new P11Error(CKR.MECHANISM_PARAM_INVALID);
  };
  const hashed = HASHED_RSA.get(mechanism.type);
  if (hashed) {
    needs('rsa');
    noParameter();
    return { kind: 'hashed', mechanism: hashed };
  }
  switch (mechanism.type) {
    case CKM.ECDSA:
      needs('ec');
      noParameter();
      return { kind: 'raw', mechanism: 'ecdsa-raw' };
    case CKM.ECDSA_SHA1:
      needs('ec');
      noParameter();
      return { kind: 'raw', mechanism: 'ecdsa-sha1' };
    case CKM.RSA_PKCS:
      needs('rsa');
      noParameter();
      return { kind: 'raw', mechanism: 'rsa-pkcs1-raw' };
    case CKM.RSA_PKCS_PSS: {
      needs('rsa');
      const hash = mechanism.pss && PSS_HASHES.get(mechanism.pss.hashAlg);
      // MGF1 with the digest's own hash, as RFC 8017 §9.1 recommends and TLS 1.3 uses (RFC 8446 §4.2.3).
      if (!mechanism.pss || !hash || mechanism.pss.mgf !== hash.mgf)
        throw new P11Error(CKR.MECHANISM_PARAM_INVALID);
      const emLen = Math.ceil((signatureLength(algorithm) * 8 - 1) / 8);
      if (mechanism.pss.saltLength > emLen - hash.length - 2) throw new P11Error(CKR.MECHANISM_PARAM_INVALID);
      return {
        kind: 'raw',
        mechanism: 'rsa-pss-raw',
        pss: { hash: hash.hash, saltLength: mechanism.pss.saltLength },
      };
    }
    default:
      throw new P11Error(CKR.MECHANISM_INVALID);
  }
}

export async function signInit(token: P11Token, session: Session, mechanism: Mechanism, keyHandle: number) {
  if (session.sign) throw new P11Error(CKR.OPERATION_ACTIVE);
  if (token.loginType !== 'user') throw new P11Error(CKR.USER_NOT_LOGGED_IN);
  const ref = await token.resolve(keyHandle);
  const key = ref && token.partition.lookup({ id: ref.keyId });
  if (!ref || !key || ref.kind === 'certificate') throw new P11Error(CKR.KEY_HANDLE_INVALID);
  if (!isExposed(key.info)) {
    // A CA key (or an Ed25519 one): it exists, and it will not sign for a PKCS#11 client.
    await token.refuse(
      'signInit',
      ref.keyId,
      new HsmError('CKR_KEY_FUNCTION_NOT_PERMITTED', 'this key does not sign for PKCS#11 clients'),
    );
  }
  if (ref.kind !== 'private' || !key.info.usages.includes('sign')) {
    throw new P11Error(CKR.KEY_FUNCTION_NOT_PERMITTED);
  }
  session.sign = {
    keyId: ref.keyId,
    plan: planFor(mechanism, key.info.algorithm),
    signatureLength: signatureLength(key.info.algorithm),
    length: 0,
  };
}

function operation(session: Session): SignOperation {
  if (!session.sign) throw new P11Error(CKR.OPERATION_NOT_INITIALIZED);
  return session.sign;
}

async function signWith(token: P11Token, op: SignOperation, data: Buffer): Promise<Uint8Array> {
  const key = { id: op.keyId };
  if (op.plan.kind === 'hashed') {
    return token.session.sign({ key, mechanism: op.plan.mechanism, purpose: 'other', data });
  }
  const request: RawSignRequest = { key, mechanism: op.plan.mechanism, data };
  if (op.plan.pss) request.pss = op.plan.pss;
  return token.session.signRaw(request);
}

/**
 * Answers with the signature, or with its size only when the caller has too little room (a size
 * query included): then the operation stays active for the call that follows (§5.2 on buffers).
 */
async function finish(token: P11Token, session: Session, data: Buffer, room: number, w: RpcWriter) {
  const op = operation(session);
  if (room < op.signatureLength) {
    w.byteArrayLength(op.signatureLength);
    return;
  }
  session.sign = undefined;
  w.byteArray(await signWith(token, op, data));
}

export async function sign(
  token: P11Token,
  session: Session,
  data: Buffer | undefined,
  room: number,
  w: RpcWriter,
) {
  const op = operation(session);
  if (op.parts || !data) {
    session.sign = undefined;
    throw new P11Error(op.parts ? CKR.OPERATION_ACTIVE : CKR.ARGUMENTS_BAD);
  }
  await finish(token, session, data, room, w);
}

export function signUpdate(session: Session, data: Buffer | undefined): void {
  const op = operation(session);
  if (!data || op.length + data.length > MAX_MULTIPART) {
    session.sign = undefined;
    throw new P11Error(data ? CKR.DATA_LEN_RANGE : CKR.ARGUMENTS_BAD);
  }
  op.parts ??= [];
  op.parts.push(Buffer.from(data));
  op.length += data.length;
}

export async function signFinal(token: P11Token, session: Session, room: number, w: RpcWriter) {
  const op = operation(session);
  await finish(token, session, Buffer.concat(op.parts ?? [], op.length), room, w);
}
