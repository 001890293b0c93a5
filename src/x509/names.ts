/**
 * Names: IP address text forms, GeneralName encoding and decoding for the four SAN types we
 * support (DESIGN.md "SANs in JSON"), and subject Name encoding and decoding.
 */

import { formatIpBytes } from '../lib/ip-text.ts';
import {
  asciiString,
  content,
  contextTag,
  DerError,
  decodeOid,
  decodeString,
  oid,
  readDer,
  sequence,
  setOf,
  TAG,
  type Tlv,
  utf8String,
} from './der.ts';
import { SUBJECT_ATTRIBUTE_BY_OID, SUBJECT_ATTRIBUTE_OIDS } from './oids.ts';
import type { San, SanType, SubjectAttribute, SubjectAttributeType } from './types.ts';

// ---- IP addresses -------------------------------------------------------------------------------

/** Parses IPv4 dotted-quad or IPv6 text to 4 or 16 octets; undefined when it is neither. */
export function parseIp(text: string): Uint8Array | undefined {
  return text.includes(':') ? parseIpv6(text) : parseIpv4(text);
}

function parseIpv4(text: string): Uint8Array | undefined {
  const parts = text.split('.');
  if (parts.length !== 4) return undefined;
  const out = new Uint8Array(4);
  for (let i = 0; i < 4; i++) {
    const part = parts[i]!;
    // No leading zeros: "010" is octal to some parsers and decimal to others.
    if (!/^(0|[1-9]\d{0,2})$/.test(part)) return undefined;
    const value = Number(part);
    if (value > 255) return undefined;
    out[i] = value;
  }
  return out;
}

function parseIpv6(text: string): Uint8Array | undefined {
  if (!/^[0-9A-Fa-f:.]+$/.test(text)) return undefined;
  const halves = text.split('::');
  if (halves.length > 2) return undefined;
  const parseGroups = (part: string): number[] | undefined => {
    if (part === '') return [];
    const groups: number[] = [];
    const pieces = part.split(':');
    for (let i = 0; i < pieces.length; i++) {
      const piece = pieces[i]!;
      if (i === pieces.length - 1 && piece.includes('.')) {
        const v4 = parseIpv4(piece);
        if (!v4) return undefined;
        groups.push((v4[0]! << 8) | v4[1]!, (v4[2]! << 8) | v4[3]!);
      } else {
        if (!/^[0-9A-Fa-f]{1,4}$/.test(piece)) return undefined;
        groups.push(Number.parseInt(piece, 16));
      }
    }
    return groups;
  };
  const head = parseGroups(halves[0]!);
  const tail = halves.length === 2 ? parseGroups(halves[1]!) : [];
  if (!head || !tail) return undefined;
  let groups: number[];
  if (halves.length === 2) {
    const missing = 8 - head.length - tail.length;
    if (missing < 1) return undefined;
    groups = [...head, ...new Array<number>(missing).fill(0), ...tail];
  } else {
    groups = head;
  }
  if (groups.length !== 8) return undefined;
  const out = new Uint8Array(16);
  groups.forEach((group, i) => {
    out[2 * i] = group >> 8;
    out[2 * i + 1] = group & 0xff;
  });
  return out;
}

/** IPv4 dotted quad, or IPv6 in the RFC 5952 canonical form (src/lib/ip-text.ts). */
export const formatIp = formatIpBytes;

/** The canonical text of an IP address given as text, or undefined when it is not one. */
export function canonicalIp(text: string): string | undefined {
  const bytes = parseIp(text);
  return bytes ? formatIp(bytes) : undefined;
}

// ---- GeneralName (RFC 5280 §4.2.1.6) ------------------------------------------------------------

const GENERAL_NAME_TAG: Record<SanType, number> = {
  email: contextTag(1, false),
  dns: contextTag(2, false),
  uri: contextTag(6, false),
  ip: contextTag(7, false),
};

export function encodeGeneralName(san: San): Uint8Array {
  if (san.type === 'ip') {
    const bytes = parseIp(san.value);
    if (!bytes) throw new RangeError(`not an IP address: ${san.value}`);
    return new Uint8Array([GENERAL_NAME_TAG.ip, bytes.length, ...bytes]);
  }
  return asciiString(GENERAL_NAME_TAG[san.type], san.value);
}

export function encodeGeneralNames(sans: readonly San[]): Uint8Array {
  return sequence(...sans.map(encodeGeneralName));
}

/** A GeneralName we cannot represent as a San (otherName, directoryName, registeredID, ...). */
export class UnsupportedNameError extends Error {
  override readonly name = 'UnsupportedNameError';
}

function ia5(tlv: Tlv): string {
  const bytes = content(tlv);
  let text = '';
  for (const byte of bytes) {
    // IA5String is 7-bit; implicit tagging hides the universal tag from the DER reader's check.
    if (byte > 0x7f) throw new DerError('malformed', 'non-ASCII octet in an IA5String name');
    text += String.fromCharCode(byte);
  }
  return text;
}

/** Decodes one GeneralName to a San; dNSName lower-cased (DNS is case-insensitive, RFC 4343). */
export function decodeGeneralName(tlv: Tlv): San {
  switch (tlv.tag) {
    case GENERAL_NAME_TAG.email:
      return { type: 'email', value: ia5(tlv) };
    case GENERAL_NAME_TAG.dns:
      return { type: 'dns', value: ia5(tlv).toLowerCase() };
    case GENERAL_NAME_TAG.uri:
      return { type: 'uri', value: ia5(tlv) };
    case GENERAL_NAME_TAG.ip: {
      const bytes = content(tlv);
      if (bytes.length !== 4 && bytes.length !== 16) {
        throw new DerError('malformed', 'iPAddress SAN must have 4 or 16 octets');
      }
      return { type: 'ip', value: formatIp(bytes) };
    }
    default:
      throw new UnsupportedNameError(`GeneralName [${tlv.tag & 0x1f}] is not a supported SAN type`);
  }
}

export function decodeGeneralNames(value: Uint8Array, maxDepth = 4): San[] {
  const root = readDer(value, { maxDepth });
  if (root.tag !== TAG.SEQUENCE) throw new DerError('malformed', 'GeneralNames is not a SEQUENCE');
  return root.children.map(decodeGeneralName);
}

// ---- Names (RFC 5280 §4.1.2.4) ------------------------------------------------------------------

/**
 * RFC 5280 §4.1.2.4: CAs MUST use PrintableString or UTF8String for DirectoryString; country is
 * PrintableString (X.520), emailAddress and domainComponent are IA5String (RFC 2985, RFC 4519).
 */
function encodeAttributeValue(type: SubjectAttributeType, value: string): Uint8Array {
  switch (type) {
    case 'C':
    case 'serialNumber':
      if (!/^[A-Za-z0-9 '()+,\-./:=?]+$/.test(value)) {
        throw new RangeError(`${type} must be a PrintableString`);
      }
      return asciiString(TAG.PRINTABLE_STRING, value);
    case 'emailAddress':
    case 'DC':
      return asciiString(TAG.IA5_STRING, value);
    default:
      return utf8String(value);
  }
}

/** Encodes a Name with one attribute per RDN, in the given order. */
export function encodeName(attributes: readonly SubjectAttribute[]): Uint8Array {
  return sequence(
    ...attributes.map((attribute) =>
      setOf([
        sequence(
          oid(SUBJECT_ATTRIBUTE_OIDS[attribute.type]),
          encodeAttributeValue(attribute.type, attribute.value),
        ),
      ]),
    ),
  );
}

/** A name attribute with its OID, whatever its type; used where unknown types must be kept. */
export interface NameAttribute {
  oid: string;
  type?: SubjectAttributeType;
  value: string;
}

/** Decodes a Name (already read as strict DER) into its attributes, RDN by RDN, in order. */
export function decodeName(name: Tlv): NameAttribute[][] {
  if (name.tag !== TAG.SEQUENCE) throw new DerError('malformed', 'Name is not a SEQUENCE');
  return name.children.map((rdn) => {
    if (rdn.tag !== TAG.SET || rdn.children.length === 0) {
      throw new DerError('malformed', 'RelativeDistinguishedName is not a non-empty SET');
    }
    return rdn.children.map((atv) => {
      const [typeTlv, valueTlv, ...extra] = atv.children;
      if (atv.tag !== TAG.SEQUENCE || !typeTlv || !valueTlv || extra.length > 0 || typeTlv.tag !== TAG.OID) {
        throw new DerError('malformed', 'AttributeTypeAndValue is not SEQUENCE { OID, value }');
      }
      const attributeOid = decodeOid(typeTlv);
      const type = SUBJECT_ATTRIBUTE_BY_OID.get(attributeOid);
      const value = decodeString(valueTlv);
      return type ? { oid: attributeOid, type, value } : { oid: attributeOid, value };
    });
  });
}

/** RFC 5280 §7.1 comparison form of a name attribute value: case folded, whitespace compressed. */
export function normaliseNameValue(value: string): string {
  return value.trim().replace(/\s+/g, ' ').toLowerCase();
}

/**
 * A Name as RFC 4514 text, for display: RDNs least significant first, separated by commas,
 * multi-valued RDNs joined by `+`, attribute types by their Signet name (CN, O, OU, C, L, ST,
 * street, DC, serialNumber, postalCode, emailAddress) or dotted OID, values escaped (§2.4). The
 * same form the certificate records carry (src/ca/ca.ts).
 */
export function formatName(rdns: readonly NameAttribute[][]): string {
  const escapeValue = (value: string) =>
    value
      .replace(/([,+"\\<>;=])/g, '\\$1')
      .replace(/^([ #])/, '\\$1')
      .replace(/ $/, '\\ ')
      .replace(/\0/g, '\\00');
  return [...rdns]
    .reverse()
    .map((rdn) => rdn.map((a) => `${a.type ?? a.oid}=${escapeValue(a.value)}`).join('+'))
    .join(',');
}
