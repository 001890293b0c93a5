/**
 * RFC 5280 §4.2.1.10 name constraints: reading them from an issuer certificate, writing them
 * into a CA certificate, and checking a certificate's names against them.
 */

import { concat, content, contextTag, DerError, readDer, sequence, TAG, type Tlv, tlv } from './der.ts';
import { decodeName, formatIp, type NameAttribute, normaliseNameValue, parseIp } from './names.ts';
import type { San } from './types.ts';

export type NameConstraintBase =
  | { type: 'dns' | 'email' | 'uri'; value: string }
  | { type: 'ip'; address: Uint8Array; mask: Uint8Array }
  | { type: 'directoryName'; rdns: NameAttribute[][] }
  /** A name form we cannot evaluate (otherName, x400Address, ...). */
  | { type: 'other'; tag: number };

export interface NameConstraintsInfo {
  permitted: NameConstraintBase[];
  excluded: NameConstraintBase[];
}

/** How CA certificates are given their constraints: ip values are CIDR (`192.0.2.0/24`). */
export interface NameConstraintInput {
  type: 'dns' | 'email' | 'uri' | 'ip';
  value: string;
}

export interface NameConstraintsInput {
  permitted?: NameConstraintInput[];
  excluded?: NameConstraintInput[];
}

// ---- Reading ------------------------------------------------------------------------------------

/** Reads the NameConstraints extension value (DER). Throws DerError if it is malformed. */
export function parseNameConstraints(value: Uint8Array): NameConstraintsInfo {
  const root = readDer(value, { maxDepth: 12 });
  if (root.tag !== TAG.SEQUENCE) throw new DerError('malformed', 'NameConstraints is not a SEQUENCE');
  const info: NameConstraintsInfo = { permitted: [], excluded: [] };
  for (const subtrees of root.children) {
    const target =
      subtrees.tag === contextTag(0, true)
        ? info.permitted
        : subtrees.tag === contextTag(1, true)
          ? info.excluded
          : undefined;
    if (!target) throw new DerError('malformed', 'unknown field in NameConstraints');
    for (const subtree of subtrees.children) {
      const base = subtree.children[0];
      if (subtree.tag !== TAG.SEQUENCE || !base) throw new DerError('malformed', 'malformed GeneralSubtree');
      target.push(parseBase(base));
    }
  }
  return info;
}

function ia5(tlvValue: Tlv): string {
  return Buffer.from(content(tlvValue)).toString('latin1');
}

function parseBase(base: Tlv): NameConstraintBase {
  switch (base.tag) {
    case contextTag(1, false):
      return { type: 'email', value: ia5(base) };
    case contextTag(2, false):
      return { type: 'dns', value: ia5(base) };
    case contextTag(6, false):
      return { type: 'uri', value: ia5(base) };
    case contextTag(7, false): {
      const bytes = content(base);
      // RFC 5280 §4.2.1.10: 8 octets (IPv4 address and mask) or 32 (IPv6).
      if (bytes.length !== 8 && bytes.length !== 32)
        throw new DerError('malformed', 'iPAddress constraint length');
      const half = bytes.length / 2;
      return { type: 'ip', address: bytes.slice(0, half), mask: bytes.slice(half) };
    }
    case contextTag(4, true): {
      const name = base.children[0];
      if (!name) throw new DerError('malformed', 'empty directoryName constraint');
      return { type: 'directoryName', rdns: decodeName(name) };
    }
    default:
      return { type: 'other', tag: base.tag };
  }
}

// ---- Writing ------------------------------------------------------------------------------------

export function parseCidr(text: string): { address: Uint8Array; mask: Uint8Array } {
  const [addressText, prefixText, ...extra] = text.split('/');
  const address = addressText === undefined ? undefined : parseIp(addressText);
  const prefix = Number(prefixText);
  if (!address || extra.length > 0 || !/^\d{1,3}$/.test(prefixText ?? '') || prefix > address.length * 8) {
    throw new RangeError(`not an address/prefix (CIDR): ${text}`);
  }
  const mask = new Uint8Array(address.length);
  for (let bit = 0; bit < prefix; bit++) mask[bit >> 3]! |= 0x80 >> (bit & 7);
  for (let i = 0; i < address.length; i++) {
    if ((address[i]! & ~mask[i]!) !== 0) throw new RangeError(`host bits set in ${text}`);
  }
  return { address, mask };
}

function encodeBase(input: NameConstraintInput): Uint8Array {
  if (input.type === 'ip') {
    const { address, mask } = parseCidr(input.value);
    return tlv(contextTag(7, false), concat([address, mask]));
  }
  const tag = { email: 1, dns: 2, uri: 6 }[input.type];
  const bytes = Buffer.from(input.value, 'latin1');
  if (/[^\x20-\x7e]/.test(input.value)) throw new RangeError(`name constraint must be ASCII: ${input.value}`);
  return tlv(contextTag(tag, false), bytes);
}

/** The NameConstraints extension value (DER) for a CA certificate. */
export function encodeNameConstraints(input: NameConstraintsInput): Uint8Array {
  const parts: Uint8Array[] = [];
  if (input.permitted?.length) {
    parts.push(tlv(contextTag(0, true), ...input.permitted.map((base) => sequence(encodeBase(base)))));
  }
  if (input.excluded?.length) {
    parts.push(tlv(contextTag(1, true), ...input.excluded.map((base) => sequence(encodeBase(base)))));
  }
  if (parts.length === 0)
    throw new RangeError('name constraints need at least one permitted or excluded subtree');
  return sequence(...parts);
}

// ---- Matching -----------------------------------------------------------------------------------

const trimDot = (name: string): string => (name.endsWith('.') ? name.slice(0, -1) : name).toLowerCase();

/**
 * RFC 5280 §4.2.1.10: a DNS name matches if it is the constraint with zero or more labels added
 * on the left. A leading-dot constraint (`.example.com`, a widespread extension) matches only
 * names below it. An empty constraint matches every name.
 */
export function dnsMatches(name: string, constraint: string): boolean {
  const n = trimDot(name);
  const c = trimDot(constraint);
  if (c === '') return true;
  if (c.startsWith('.')) return n.endsWith(c);
  return n === c || n.endsWith(`.${c}`);
}

/** Whether a wildcard name (`*.example.com`) could stand for a name inside the constraint. */
function wildcardCovers(name: string, constraint: string): boolean {
  const n = trimDot(name);
  const c = trimDot(constraint).replace(/^\./, '');
  if (!n.startsWith('*.')) return false;
  const parent = n.slice(2);
  return c.endsWith(`.${parent}`) && !c.slice(0, -(parent.length + 1)).includes('.');
}

/** RFC 5280 §4.2.1.10: a mailbox, all mailboxes at a host, or all mailboxes under a domain. */
export function emailMatches(email: string, constraint: string): boolean {
  const at = email.lastIndexOf('@');
  if (at < 0) return false;
  const local = email.slice(0, at);
  const host = email.slice(at + 1).toLowerCase();
  if (constraint.includes('@')) {
    const cAt = constraint.lastIndexOf('@');
    return local === constraint.slice(0, cAt) && host === constraint.slice(cAt + 1).toLowerCase();
  }
  const c = constraint.toLowerCase();
  if (c === '') return true;
  return c.startsWith('.') ? host.endsWith(c) : host === c;
}

/** The host of a URI's authority, when it is a domain name (not an IP literal); else undefined. */
export function uriHost(uri: string): string | undefined {
  const match = /^[A-Za-z][A-Za-z0-9+.-]*:\/\/([^/?#]*)/.exec(uri);
  if (!match) return undefined;
  let authority = match[1]!;
  const at = authority.lastIndexOf('@');
  if (at >= 0) authority = authority.slice(at + 1);
  if (authority.startsWith('[')) return undefined;
  authority = authority.replace(/:\d*$/, '');
  if (authority === '' || parseIp(authority)) return undefined;
  return authority.toLowerCase();
}

/**
 * RFC 5280 §4.2.1.10: URI constraints apply to the host; a URI with no domain-name host fails
 * any URI constraint.
 */
export function uriMatches(uri: string, constraint: string): boolean {
  const host = uriHost(uri);
  if (host === undefined) return false;
  const c = constraint.toLowerCase();
  if (c === '') return true;
  return c.startsWith('.') ? host.endsWith(c) : host === c;
}

export function ipMatches(address: Uint8Array, base: { address: Uint8Array; mask: Uint8Array }): boolean {
  if (address.length !== base.address.length) return false;
  for (let i = 0; i < address.length; i++) {
    if ((address[i]! & base.mask[i]!) !== (base.address[i]! & base.mask[i]!)) return false;
  }
  return true;
}

/** RFC 5280 §4.2.1.10 / §7.1: the subject's RDN sequence starts with the constraint's. */
export function directoryNameMatches(subject: NameAttribute[][], constraint: NameAttribute[][]): boolean {
  if (constraint.length > subject.length) return false;
  return constraint.every((rdn, i) => {
    const other = subject[i]!;
    if (other.length !== rdn.length) return false;
    return rdn.every((attribute) =>
      other.some(
        (candidate) =>
          candidate.oid === attribute.oid &&
          normaliseNameValue(candidate.value) === normaliseNameValue(attribute.value),
      ),
    );
  });
}

export interface NameToCheck {
  type: 'dns' | 'email' | 'uri' | 'ip' | 'directoryName';
  /** Text for dns/email/uri/ip; for directoryName, see `rdns`. */
  value: string;
  rdns?: NameAttribute[][];
  /** Where the name came from, for messages (`subjectAltName`, `subject CN`). */
  source: string;
}

function baseMatches(name: NameToCheck, base: NameConstraintBase, excluded: boolean): boolean {
  switch (base.type) {
    case 'dns':
      if (name.type !== 'dns') return false;
      return dnsMatches(name.value, base.value) || (excluded && wildcardCovers(name.value, base.value));
    case 'email':
      return name.type === 'email' && emailMatches(name.value, base.value);
    case 'uri':
      return name.type === 'uri' && uriMatches(name.value, base.value);
    case 'ip': {
      if (name.type !== 'ip') return false;
      const bytes = parseIp(name.value);
      return bytes !== undefined && ipMatches(bytes, base);
    }
    case 'directoryName':
      return name.type === 'directoryName' && directoryNameMatches(name.rdns ?? [], base.rdns);
    case 'other':
      return false;
  }
}

function describeBase(base: NameConstraintBase): string {
  switch (base.type) {
    case 'ip': {
      const prefix = Array.from(base.mask).reduce(
        (bits, byte) => bits + byte.toString(2).replace(/0/g, '').length,
        0,
      );
      return `ip ${formatIp(base.address)}/${prefix}`;
    }
    case 'directoryName':
      return 'directoryName';
    case 'other':
      return `GeneralName [${base.tag & 0x1f}]`;
    default:
      return `${base.type} ${JSON.stringify(base.value)}`;
  }
}

/**
 * Checks every name against the constraints: within some permitted subtree of its form (when the
 * issuer permits any of that form) and within no excluded subtree. Returns one sentence per
 * violation; empty when every name holds.
 */
export function nameConstraintViolations(constraints: NameConstraintsInfo, names: NameToCheck[]): string[] {
  const violations: string[] = [];
  for (const name of names) {
    const label = `${name.source} ${name.type} ${JSON.stringify(name.value)}`;
    const excludedBy = constraints.excluded.find((base) => baseMatches(name, base, true));
    if (excludedBy) violations.push(`${label} is inside the excluded subtree ${describeBase(excludedBy)}`);
    const permittedOfForm = constraints.permitted.filter((base) => base.type === name.type);
    if (permittedOfForm.length > 0 && !permittedOfForm.some((base) => baseMatches(name, base, false))) {
      violations.push(`${label} is outside every permitted ${name.type} subtree`);
    }
  }
  return violations;
}

/** Names of a certificate as the name-constraint check sees them. */
export function namesFromSans(sans: readonly San[]): NameToCheck[] {
  return sans.map((san) => ({ type: san.type, value: san.value, source: 'subjectAltName' }));
}
