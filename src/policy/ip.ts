/**
 * IP addresses and CIDR blocks for IP SANs (RFC 5280 §4.2.1.6: 4 octets for IPv4, 16 for IPv6).
 * Parsing is strict: one textual form per address family, nothing a resolver would guess at
 * (no octal or hex IPv4 parts, no zone identifiers, no brackets). Output is canonical: dotted
 * decimal for IPv4 and RFC 5952 for IPv6.
 */

import { formatIpBytes } from '../lib/ip-text.ts';
import { printable } from './text.ts';

export interface IpAddress {
  version: 4 | 6;
  /** 4 or 16 bytes, network order. */
  bytes: Uint8Array;
}

export interface Cidr {
  version: 4 | 6;
  /** The network address (host bits zero). */
  bytes: Uint8Array;
  prefix: number;
}

export type IpResult = { ok: true; address: IpAddress } | { ok: false; reason: string };
export type CidrResult = { ok: true; cidr: Cidr } | { ok: false; reason: string };

const DECIMAL_OCTET = /^(?:0|[1-9]\d{0,2})$/;
const HEX_GROUP = /^[0-9a-fA-F]{1,4}$/;

function parseIpv4(text: string): Uint8Array | string {
  const parts = text.split('.');
  if (parts.length !== 4) return 'an IPv4 address has four dotted decimal parts';
  const bytes = new Uint8Array(4);
  for (const [i, part] of parts.entries()) {
    if (!DECIMAL_OCTET.test(part)) {
      return /^0\d/.test(part)
        ? `'${part}' has a leading zero, which some parsers read as octal`
        : `'${part}' is not a decimal number from 0 to 255`;
    }
    const value = Number(part);
    if (value > 255) return `'${part}' is greater than 255`;
    bytes[i] = value;
  }
  return bytes;
}

// RFC 4291 §2.2: eight 16-bit hex groups, one '::' for a run of zero groups, and optionally
// the last 32 bits in dotted decimal.
function parseIpv6(text: string): Uint8Array | string {
  const halves = text.split('::');
  if (halves.length > 2) return "'::' may appear only once";
  const groups: number[][] = [];
  for (const half of halves) {
    const out: number[] = [];
    if (half !== '') {
      const parts = half.split(':');
      for (const [i, part] of parts.entries()) {
        if (part.includes('.')) {
          if (i !== parts.length - 1 || half !== halves[halves.length - 1]) {
            return 'an embedded IPv4 address must come last';
          }
          const v4 = parseIpv4(part);
          if (typeof v4 === 'string') return `the embedded IPv4 address is invalid: ${v4}`;
          out.push((v4[0]! << 8) | v4[1]!, (v4[2]! << 8) | v4[3]!);
        } else {
          if (!HEX_GROUP.test(part)) {
            return part === '' ? 'a group is empty' : `'${part}' is not a group of one to four hex digits`;
          }
          out.push(Number.parseInt(part, 16));
        }
      }
    }
    groups.push(out);
  }
  const [head = [], tail = []] = groups;
  const count = head.length + tail.length;
  if (halves.length === 1 && count !== 8) return 'an IPv6 address without :: has eight groups';
  if (halves.length === 2 && count > 7) return "'::' must stand for at least one zero group";
  const all = [...head, ...new Array<number>(8 - count).fill(0), ...tail];
  const bytes = new Uint8Array(16);
  for (const [i, group] of all.entries()) {
    bytes[2 * i] = group >> 8;
    bytes[2 * i + 1] = group & 0xff;
  }
  return bytes;
}

export function parseIp(text: string): IpResult {
  if (typeof text !== 'string' || text.length === 0) return { ok: false, reason: 'the address is empty' };
  if (text.length > 64) return { ok: false, reason: 'the address is too long' };
  if (text.includes('%'))
    return { ok: false, reason: 'zone identifiers (%...) are not allowed in certificates' };
  if (text.startsWith('[') || text.endsWith(']'))
    return { ok: false, reason: 'write the address without brackets' };
  if (/[^0-9a-fA-F.:]/.test(text)) {
    return {
      ok: false,
      reason: `'${printable(text)}' contains characters that are not part of an IP address`,
    };
  }
  if (text.includes(':')) {
    const v6 = parseIpv6(text);
    return typeof v6 === 'string'
      ? { ok: false, reason: v6 }
      : { ok: true, address: { version: 6, bytes: v6 } };
  }
  const v4 = parseIpv4(text);
  return typeof v4 === 'string'
    ? { ok: false, reason: v4 }
    : { ok: true, address: { version: 4, bytes: v4 } };
}

/** RFC 4291 §2.5.5.2: ::ffff:a.b.c.d is the IPv4 address a.b.c.d seen from IPv6. */
export function isIpv4Mapped(address: IpAddress): boolean {
  if (address.version !== 6) return false;
  for (let i = 0; i < 10; i++) if (address.bytes[i] !== 0) return false;
  return address.bytes[10] === 0xff && address.bytes[11] === 0xff;
}

/** The address as policies compare it: IPv4-mapped IPv6 becomes the IPv4 address. */
export function comparable(address: IpAddress): IpAddress {
  return isIpv4Mapped(address) ? { version: 4, bytes: address.bytes.slice(12) } : address;
}

/** Dotted decimal for IPv4; RFC 5952 §4 for IPv6, with §5's mixed notation for IPv4-mapped. */
export function formatIp(address: IpAddress): string {
  return formatIpBytes(address.bytes);
}

export function parseCidr(text: string): CidrResult {
  if (typeof text !== 'string') return { ok: false, reason: 'a CIDR block must be a string' };
  const slash = text.indexOf('/');
  const addressText = slash < 0 ? text : text.slice(0, slash);
  const parsed = parseIp(addressText);
  if (!parsed.ok) return parsed;
  const { version, bytes } = parsed.address;
  if (isIpv4Mapped(parsed.address)) {
    return { ok: false, reason: 'write IPv4 blocks as IPv4 (192.0.2.0/24), not as IPv4-mapped IPv6' };
  }
  const bits = bytes.length * 8;
  let prefix = bits;
  if (slash >= 0) {
    const prefixText = text.slice(slash + 1);
    if (!/^(?:0|[1-9]\d{0,2})$/.test(prefixText) || Number(prefixText) > bits) {
      return { ok: false, reason: `the prefix length must be a number from 0 to ${bits}` };
    }
    prefix = Number(prefixText);
  }
  const network = mask(bytes, prefix);
  if (!network.every((byte, i) => byte === bytes[i])) {
    const suggestion = `${formatIp({ version, bytes: network })}/${prefix}`;
    return {
      ok: false,
      reason: `host bits are set after the /${prefix} prefix; did you mean ${suggestion}?`,
    };
  }
  return { ok: true, cidr: { version, bytes: network, prefix } };
}

export function formatCidr(cidr: Cidr): string {
  return `${formatIp({ version: cidr.version, bytes: cidr.bytes })}/${cidr.prefix}`;
}

/** Whether the block holds the address; IPv4-mapped IPv6 addresses are compared as IPv4. */
export function cidrContains(cidr: Cidr, address: IpAddress): boolean {
  const candidate = comparable(address);
  if (candidate.version !== cidr.version) return false;
  const masked = mask(candidate.bytes, cidr.prefix);
  return masked.every((byte, i) => byte === cidr.bytes[i]);
}

function mask(bytes: Uint8Array, prefix: number): Uint8Array {
  const out = new Uint8Array(bytes.length);
  for (let i = 0; i < bytes.length; i++) {
    const keep = Math.max(0, Math.min(8, prefix - 8 * i));
    out[i] = bytes[i]! & ((0xff << (8 - keep)) & 0xff);
  }
  return out;
}
