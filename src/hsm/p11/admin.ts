import { KEY_LABEL } from '../key-uri.ts';
import { HsmError, type KeyAlgorithm } from '../types.ts';
import { storeCertificate } from './certificates.ts';
import { P11Error } from './errors.ts';
import { EC_PARAMS } from './objects.ts';
import { CKA, CKC, CKM, CKO, CKR } from './pkcs11.ts';
import type { P11Token, Session } from './token.ts';
import { type Attribute, type Mechanism, readUlongValue } from './wire.ts';

/**
 * What changes objects: key pair generation (the officer only, always purpose 'other'), storing and
 * removing a certificate; and the calls that would let key material out (C_CopyObject into an
 * extractable copy, C_SetAttributeValue clearing CKA_SENSITIVE, C_WrapKey), refused with the
 * standard codes and recorded in the audit log.
 */

const find = (template: readonly Attribute[], type: number) => template.find((a) => a.type === type);

function flag(template: readonly Attribute[], type: number): boolean | undefined {
  const attribute = find(template, type);
  if (!attribute) return undefined;
  if (attribute.value?.length !== 1) throw new P11Error(CKR.ATTRIBUTE_VALUE_INVALID);
  return attribute.value[0] !== 0;
}

/** Whether a template would make or leave key material readable (PKCS#11 v2.40 §4.9, CKA_SENSITIVE and CKA_EXTRACTABLE). */
function revealing(template: readonly Attribute[]): boolean {
  return flag(template, CKA.EXTRACTABLE) === true || flag(template, CKA.SENSITIVE) === false;
}

function requireOfficer(token: P11Token, session: Session): void {
  if (token.loginType !== 'so')
    throw new P11Error(CKR.USER_NOT_LOGGED_IN, 'only the officer (CKU_SO) changes objects');
  if (!session.rw) throw new P11Error(CKR.SESSION_READ_ONLY);
}

function algorithmFor(mechanism: Mechanism, pub: readonly Attribute[]): KeyAlgorithm {
  if (mechanism.type === CKM.EC_KEY_PAIR_GEN) {
    const params = find(pub, CKA.EC_PARAMS)?.value;
    if (!params) throw new P11Error(CKR.TEMPLATE_INCOMPLETE, 'CKA_EC_PARAMS names the curve');
    for (const [algorithm, oid] of Object.entries(EC_PARAMS))
      if (oid.equals(params)) return algorithm as KeyAlgorithm;
    throw new P11Error(CKR.ATTRIBUTE_VALUE_INVALID, 'curves are P-256 and P-384');
  }
  if (mechanism.type === CKM.RSA_PKCS_KEY_PAIR_GEN) {
    const bits = readUlongValue(find(pub, CKA.MODULUS_BITS)?.value);
    if (Number.isNaN(bits)) throw new P11Error(CKR.TEMPLATE_INCOMPLETE, 'CKA_MODULUS_BITS gives the size');
    if (![2048, 3072, 4096].includes(bits)) throw new P11Error(CKR.KEY_SIZE_RANGE);
    const exponent = find(pub, CKA.PUBLIC_EXPONENT)?.value;
    // The partition makes keys with e = 65537 only.
    if (exponent && BigInt(`0x${exponent.toString('hex') || '0'}`) !== 65537n) {
      throw new P11Error(CKR.ATTRIBUTE_VALUE_INVALID, 'the public exponent is 65537');
    }
    return `rsa-${bits}` as KeyAlgorithm;
  }
  throw new P11Error(CKR.MECHANISM_INVALID);
}

/** C_GenerateKeyPair: answers the handles of the public key and the private key. */
export async function generateKeyPair(
  token: P11Token,
  session: Session,
  mechanism: Mechanism,
  pub: readonly Attribute[],
  priv: readonly Attribute[],
): Promise<[number, number]> {
  requireOfficer(token, session);
  const algorithm = algorithmFor(mechanism, pub);
  if (revealing(priv))
    throw new P11Error(CKR.ATTRIBUTE_VALUE_INVALID, 'keys here are sensitive and unextractable');
  if (
    flag(priv, CKA.PRIVATE) === false ||
    flag(priv, CKA.TOKEN) === false ||
    flag(pub, CKA.TOKEN) === false
  ) {
    throw new P11Error(CKR.ATTRIBUTE_VALUE_INVALID, 'keys here are private token objects');
  }
  // The partition names its objects: a caller-chosen CKA_ID cannot be honoured.
  if (find(pub, CKA.ID) || find(priv, CKA.ID))
    throw new P11Error(CKR.ATTRIBUTE_READ_ONLY, 'the partition assigns CKA_ID');
  const labels = [find(priv, CKA.LABEL)?.value, find(pub, CKA.LABEL)?.value].filter((v) => v !== undefined);
  if (labels.length === 2 && !labels[0]!.equals(labels[1]!)) throw new P11Error(CKR.TEMPLATE_INCONSISTENT);
  const label = labels[0]?.toString('utf8');
  if (label === undefined) throw new P11Error(CKR.TEMPLATE_INCOMPLETE, 'a key needs CKA_LABEL');
  if (!KEY_LABEL.test(label))
    throw new P11Error(CKR.ATTRIBUTE_VALUE_INVALID, 'labels match [A-Za-z0-9][A-Za-z0-9._-]{0,63}');
  const info = await token.session.createKey({ label, algorithm, purposes: ['other'] });
  return [token.handles.handleOf(info.id, 'public'), token.handles.handleOf(info.id, 'private')];
}

/** C_CreateObject: only a certificate, beside the key whose CKA_ID it gives. Keys are made inside, never imported. */
export async function createObject(
  token: P11Token,
  session: Session,
  template: readonly Attribute[],
): Promise<number> {
  const kind = readUlongValue(find(template, CKA.CLASS)?.value);
  if (kind !== CKO.CERTIFICATE)
    throw new P11Error(CKR.FUNCTION_NOT_SUPPORTED, 'only certificates are created');
  requireOfficer(token, session);
  const type = find(template, CKA.CERTIFICATE_TYPE)?.value;
  if (type && readUlongValue(type) !== CKC.X_509) throw new P11Error(CKR.ATTRIBUTE_VALUE_INVALID);
  const id = find(template, CKA.ID)?.value;
  const der = find(template, CKA.VALUE)?.value;
  if (!id || !der) throw new P11Error(CKR.TEMPLATE_INCOMPLETE, 'a certificate needs CKA_ID and CKA_VALUE');
  const label = find(template, CKA.LABEL)?.value?.toString('utf8');
  const stored = await token.session.perform('storeCertificate', 'officer', (event) =>
    storeCertificate(
      token.partition,
      { key: { id: id.toString('hex') }, der, ...(label ? { label } : {}) },
      event,
    ),
  );
  return token.handles.handleOf(stored.keyId, 'certificate');
}

/**
 * C_DestroyObject: the officer removes a certificate. Keys are not destroyed through PKCS#11: the
 * officer (CKU_SO) sees no private object (PKCS#11 v2.40 §4.4), and a public key goes with its
 * private key; `signet hsm keys destroy` destroys a key pair.
 */
export async function destroyObject(token: P11Token, session: Session, handle: number): Promise<void> {
  requireOfficer(token, session);
  const ref = await token.resolve(handle);
  const object = ref && (await token.visible(handle));
  if (!ref || !object) throw new P11Error(CKR.OBJECT_HANDLE_INVALID);
  if (ref.kind !== 'certificate') {
    throw new P11Error(CKR.ACTION_PROHIBITED, 'keys are destroyed with signet hsm keys destroy');
  }
  await token.session.perform('deleteCertificate', 'officer', async (event) => {
    Object.assign(event, { keyId: ref.keyId, keyLabel: object.info.label });
    await token.partition.requireStore().deleteCertificate?.(ref.keyId);
  });
}

/**
 * C_CopyObject and C_SetAttributeValue: every object here is unmodifiable and uncopyable
 * (CKA_MODIFIABLE, CKA_COPYABLE false: CKR_ACTION_PROHIBITED). A template that would clear
 * CKA_SENSITIVE or set CKA_EXTRACTABLE is refused as the standard says for those two attributes,
 * CKR_ATTRIBUTE_READ_ONLY, and recorded.
 */
export async function changeObject(
  token: P11Token,
  op: 'copyObject' | 'setAttributeValue',
  handle: number,
  template: readonly Attribute[],
): Promise<never> {
  const object = (await token.resolve(handle)) && (await token.visible(handle));
  if (!object) throw new P11Error(CKR.OBJECT_HANDLE_INVALID);
  if (object.kind === 'private' && revealing(template)) {
    await token
      .refuse(
        op,
        object.keyId,
        new HsmError('CKR_KEY_UNEXTRACTABLE', 'keys here stay sensitive and unextractable'),
      )
      .catch(() => {});
    throw new P11Error(CKR.ATTRIBUTE_READ_ONLY);
  }
  throw new P11Error(CKR.ACTION_PROHIBITED, 'objects here are neither modifiable nor copyable');
}

/** C_WrapKey: no key here leaves the partition, wrapped or not (CKR_KEY_UNEXTRACTABLE), and the attempt is recorded. */
export async function wrapKey(token: P11Token, keyHandle: number): Promise<never> {
  const object = (await token.resolve(keyHandle)) && (await token.visible(keyHandle));
  if (!object || object.kind === 'certificate') throw new P11Error(CKR.KEY_HANDLE_INVALID);
  if (object.kind === 'public') throw new P11Error(CKR.FUNCTION_NOT_SUPPORTED, 'no wrapping here');
  return token.refuse(
    'wrapKey',
    object.keyId,
    new HsmError('CKR_KEY_UNEXTRACTABLE', 'keys here never leave the partition'),
  );
}
