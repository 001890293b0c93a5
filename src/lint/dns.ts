/** DNS name syntax as certificates may carry it (RFC 1034 §3.5, RFC 1123 §2.1, RFC 5890 §2.3). */

import { domainToASCII, domainToUnicode } from 'node:url';

/**
 * Why a dNSName is not a syntactically valid preferred-name-syntax host name with only a
 * leftmost whole-label wildcard (BR §7.1.2.7.12), or undefined when it is valid.
 */
export function dnsNameProblem(name: string): string | undefined {
  if (name.length === 0) return 'is empty';
  if (name.length > 253) return 'is longer than 253 octets';
  if (name.endsWith('.')) return 'ends with a dot';
  const labels = name.split('.');
  if (labels.length < 2) return 'has a single label';
  for (const [index, label] of labels.entries()) {
    if (label === '*' && index === 0) {
      if (labels.length < 3) return 'is a wildcard directly under a top-level domain';
      continue;
    }
    if (label.includes('*')) return 'has a wildcard other than a whole leftmost label';
    if (label.length === 0) return 'has an empty label';
    if (label.length > 63) return `has a label longer than 63 octets`;
    if (!/^[A-Za-z0-9-]+$/.test(label))
      return `has a label with characters outside letters, digits and hyphen`;
    if (label.startsWith('-') || label.endsWith('-')) return 'has a label starting or ending with a hyphen';
    // RFC 5891 §4.2.3.1: "--" in positions 3 and 4 is reserved for A-labels ("xn--").
    if (label.slice(2, 4) === '--') {
      if (label.slice(0, 4).toLowerCase() !== 'xn--') return `has a reserved label ${label}`;
      const unicode = domainToUnicode(label);
      if (unicode === '' || unicode === label || domainToASCII(unicode) !== label.toLowerCase()) {
        return `has an invalid A-label ${label}`;
      }
    }
  }
  const tld = labels[labels.length - 1]!;
  if (/^\d+$/.test(tld)) return 'has an all-numeric top-level label';
  return undefined;
}

/**
 * Special-use and private names nobody can prove control of publicly (RFC 6761, RFC 6762 .local,
 * RFC 8375 home.arpa, ICANN's .internal, and the de facto private suffixes). BR §4.2.2 forbids
 * internal names in publicly-trusted certificates.
 */
const INTERNAL_SUFFIXES = [
  'local',
  'localhost',
  'internal',
  'test',
  'invalid',
  'example',
  'onion',
  'arpa',
  'lan',
  'corp',
  'home',
  'intranet',
  'private',
  'localdomain',
];

export function isInternalName(name: string): boolean {
  const labels = name.toLowerCase().split('.');
  if (labels.length < 2) return true;
  return INTERNAL_SUFFIXES.includes(labels[labels.length - 1]!);
}
