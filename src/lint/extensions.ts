/**
 * Strict decoders for the extension values the rules read, over the strict DER reader (the
 * same reader that refuses BER, never the builder's writer). asn1js-based schema parsing costs
 * about 100 µs per extension, which made it most of the lint's time; these take a few.
 * Each throws on a value that does not have the RFC 5280 shape, which the engine turns into a
 * finding of the rule that asked.
 */

import { KEY_USAGE_BIT_NAMES } from '../lib/key-usage.ts';
import {
  bitStringBytes,
  content,
  contextTag,
  DerError,
  decodeInteger,
  decodeOid,
  readDer,
  TAG,
  type Tlv,
} from '../x509/der.ts';
import { formatIp } from '../x509/names.ts';

const read = (value: Uint8Array): Tlv => readDer(value, { maxDepth: 12 });

function fail(message: string): never {
  throw new DerError('malformed', message);
}

function ia5(tlv: Tlv): string {
  const bytes = content(tlv);
  let text = '';
  for (const byte of bytes) {
    if (byte > 0x7f) fail('non-ASCII octet in an IA5String');
    text += String.fromCharCode(byte);
  }
  return text;
}

export interface GeneralNameView {
  type: 'dns' | 'email' | 'uri' | 'ip' | 'other';
  /** Text; for an iPAddress of a length other than 4 or 16, its octets in hex. */
  value: string;
  /** For iPAddress: whether it has 4 or 16 octets. */
  valid: boolean;
}

function generalName(tlv: Tlv): GeneralNameView {
  switch (tlv.tag) {
    case contextTag(1, false):
      return { type: 'email', value: ia5(tlv), valid: true };
    case contextTag(2, false):
      return { type: 'dns', value: ia5(tlv), valid: true };
    case contextTag(6, false):
      return { type: 'uri', value: ia5(tlv), valid: true };
    case contextTag(7, false): {
      const bytes = content(tlv);
      const valid = bytes.length === 4 || bytes.length === 16;
      return { type: 'ip', value: valid ? formatIp(bytes) : Buffer.from(bytes).toString('hex'), valid };
    }
    default:
      return { type: 'other', value: '', valid: true };
  }
}

/** RFC 5280 §4.2.1.6 GeneralNames. */
export function decodeGeneralNames(value: Uint8Array): GeneralNameView[] {
  const root = read(value);
  if (root.tag !== TAG.SEQUENCE) fail('GeneralNames is not a SEQUENCE');
  return root.children.map(generalName);
}

/** RFC 5280 §4.2.1.12 ExtKeyUsageSyntax. */
export function decodeExtendedKeyUsage(value: Uint8Array): string[] {
  const root = read(value);
  if (root.tag !== TAG.SEQUENCE) fail('ExtKeyUsageSyntax is not a SEQUENCE');
  return root.children.map((purpose) =>
    purpose.tag === TAG.OID ? decodeOid(purpose) : fail('KeyPurposeId not an OID'),
  );
}

/** RFC 5280 §4.2.1.1: the keyIdentifier, if any. */
export function decodeAuthorityKeyIdentifier(value: Uint8Array): { keyIdentifier?: Uint8Array } {
  const root = read(value);
  if (root.tag !== TAG.SEQUENCE) fail('AuthorityKeyIdentifier is not a SEQUENCE');
  const keyIdentifier = root.children.find((field) => field.tag === contextTag(0, false));
  return keyIdentifier ? { keyIdentifier: content(keyIdentifier) } : {};
}

/** RFC 5280 §4.2.1.2 KeyIdentifier. */
export function decodeSubjectKeyIdentifier(value: Uint8Array): Uint8Array {
  const root = read(value);
  if (root.tag !== TAG.OCTET_STRING) fail('SubjectKeyIdentifier is not an OCTET STRING');
  return content(root);
}

/** RFC 5280 §4.2.1.9. */
export function decodeBasicConstraints(value: Uint8Array): { ca: boolean; pathLen?: number } {
  const root = read(value);
  if (root.tag !== TAG.SEQUENCE || root.children.length > 2) fail('BasicConstraints is not a SEQUENCE');
  let ca = false;
  let pathLen: number | undefined;
  for (const [index, field] of root.children.entries()) {
    if (field.tag === TAG.BOOLEAN && index === 0) {
      ca = content(field)[0] === 0xff;
      // X.690 §11.5: cA FALSE is the DEFAULT and is omitted in DER.
      if (!ca) fail('basicConstraints writes cA FALSE, which DER omits');
    } else if (field.tag === TAG.INTEGER) {
      const n = decodeInteger(field);
      if (n < 0n || n > 255n) fail('pathLenConstraint out of range');
      pathLen = Number(n);
    } else fail('malformed BasicConstraints');
  }
  return pathLen === undefined ? { ca } : { ca, pathLen };
}

export const KEY_USAGE_NAMES = KEY_USAGE_BIT_NAMES;
export type KeyUsageBit = (typeof KEY_USAGE_NAMES)[number];

/** RFC 5280 §4.2.1.3 KeyUsage named bits that are set. */
export function decodeKeyUsage(value: Uint8Array): KeyUsageBit[] {
  const root = read(value);
  if (root.tag !== TAG.BIT_STRING) fail('KeyUsage is not a BIT STRING');
  const { bytes, unusedBits } = bitStringBytes(root);
  // X.690 §11.2.2: a named bit list has no trailing zero bits in DER.
  if (bytes.length > 0 && (bytes[bytes.length - 1]! & (1 << unusedBits)) === 0) {
    fail('KeyUsage has trailing zero bits (X.690 §11.2.2)');
  }
  return KEY_USAGE_NAMES.filter((_, bit) => ((bytes[bit >> 3] ?? 0) & (0x80 >> (bit & 7))) !== 0);
}

/** RFC 5280 §4.2.1.13: the URIs of every distribution point's fullName. */
export function decodeCrlDistributionPointUris(value: Uint8Array): string[] {
  const root = read(value);
  if (root.tag !== TAG.SEQUENCE) fail('CRLDistributionPoints is not a SEQUENCE');
  const uris: string[] = [];
  for (const point of root.children) {
    const name = point.children.find((field) => field.tag === contextTag(0, true));
    const fullName = name?.children.find((field) => field.tag === contextTag(0, true));
    for (const general of fullName?.children ?? []) {
      if (general.tag === contextTag(6, false)) uris.push(ia5(general));
    }
  }
  return uris;
}

/** RFC 5280 §4.2.2.1 AccessDescriptions with a URI location. */
export function decodeAuthorityInfoAccess(value: Uint8Array): { method: string; uri: string }[] {
  const root = read(value);
  if (root.tag !== TAG.SEQUENCE) fail('AuthorityInfoAccessSyntax is not a SEQUENCE');
  const out: { method: string; uri: string }[] = [];
  for (const description of root.children) {
    const [method, location] = description.children;
    if (!method || method.tag !== TAG.OID || !location) fail('malformed AccessDescription');
    if (location.tag === contextTag(6, false)) out.push({ method: decodeOid(method), uri: ia5(location) });
  }
  return out;
}
