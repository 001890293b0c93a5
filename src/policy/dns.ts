/**
 * DNS names as they may appear in a dNSName SAN (RFC 5280 §4.2.1.6): preferred name syntax
 * (RFC 1123 §2.1 letters, digits, hyphens), internationalised labels only as IDNA A-labels
 * (RFC 5890 §2.3.2.1), no trailing dot, a wildcard only as the whole leftmost label
 * (RFC 9525 §6.3). Upper case is lowered (DNS names compare case-insensitively, RFC 4343);
 * everything else that is wrong is refused with its reason, never repaired.
 */

import { domainToASCII } from 'node:url';
import { parseIp } from './ip.ts';
import { decodePunycode, encodePunycode } from './punycode.ts';
import { printable } from './text.ts';

export type DnsNameResult =
  | {
      ok: true;
      /** Lower case, A-label form, e.g. `*.xn--bcher-kva.example`. */
      name: string;
      labels: string[];
      wildcard: boolean;
      /** The same name with A-labels decoded, for people to read. */
      unicode: string;
    }
  | { ok: false; code: 'policy.dns_name_invalid' | 'policy.wildcard_not_allowed'; reason: string };

const LDH_LABEL = /^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$/;
const MAX_NAME_LENGTH = 253;
const MAX_LABEL_LENGTH = 63;

function invalid(reason: string): DnsNameResult {
  return { ok: false, code: 'policy.dns_name_invalid', reason };
}

export function checkDnsName(input: string): DnsNameResult {
  if (typeof input !== 'string' || input.length === 0) return invalid('the name is empty');
  if (input.length > 1024) {
    return invalid(`the name is ${input.length} characters long; the limit is ${MAX_NAME_LENGTH}`);
  }
  const shown = printable(input);
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what this refuses
  if (/[\u0000-\u001f\u007f]/.test(input)) return invalid(`'${shown}' contains control characters`);
  if (/\s/.test(input)) return invalid(`'${shown}' contains white space`);
  // biome-ignore lint/suspicious/noControlCharactersInRegex: the ASCII range is the point
  if (/[^\u0000-\u007f]/.test(input)) {
    const suggestion = input.includes('*') ? '' : domainToASCII(input.replace(/\.$/, ''));
    return invalid(
      `'${shown}' contains raw Unicode; internationalised names must be written as IDNA A-labels ` +
        `(RFC 5890 §2.3.2.1)${suggestion ? `, here '${suggestion}'` : ''}`,
    );
  }
  if (input.endsWith('.')) {
    return invalid(`'${shown}' ends with a dot; certificates carry names without the trailing root dot`);
  }
  if (parseIp(input).ok || /^\d+(?:\.\d+){3}$/.test(input) || input.includes(':')) {
    return invalid(`'${shown}' is an IP address, not a DNS name; request it as an IP SAN`);
  }
  const name = input.toLowerCase();
  if (name.length > MAX_NAME_LENGTH) {
    return invalid(
      `the name is ${name.length} characters long; the limit is ${MAX_NAME_LENGTH} (RFC 1035 §2.3.4)`,
    );
  }
  const labels = name.split('.');
  if (labels.some((label) => label.length === 0)) {
    return invalid(`'${shown}' has an empty label (a leading dot or two dots in a row)`);
  }
  const wildcard = labels[0] === '*';
  for (const [i, label] of labels.entries()) {
    if (i === 0 && wildcard) continue;
    if (label.includes('*')) {
      return invalid(
        i === 0
          ? `'${shown}': a wildcard must be the whole leftmost label, as in *.example.com (RFC 9525 §6.3)`
          : `'${shown}': only the leftmost label may be a wildcard (RFC 9525 §6.3)`,
      );
    }
    const problem = checkLabel(label);
    if (problem) return invalid(`'${shown}': ${problem}`);
  }
  if (/^\d+$/.test(labels[labels.length - 1]!)) {
    return invalid(`'${shown}': the last label is all digits, which no top-level domain is (RFC 3696 §2)`);
  }
  if (wildcard && labels.length < 3) {
    return {
      ok: false,
      code: 'policy.wildcard_not_allowed',
      reason: `'${shown}' would cover every name under a top-level domain`,
    };
  }
  const unicode = labels.map((label) => (label.startsWith('xn--') ? decodeALabel(label) : label)).join('.');
  return { ok: true, name, labels, wildcard, unicode };
}

function checkLabel(label: string): string | undefined {
  if (label.length > MAX_LABEL_LENGTH) {
    return `the label '${label.slice(0, 20)}...' is ${label.length} characters long; the limit is 63 (RFC 1035 §2.3.4)`;
  }
  if (!LDH_LABEL.test(label)) {
    const bad = label.match(/[^a-z0-9-]/);
    if (bad) {
      return `the label '${printable(label)}' contains '${printable(bad[0])}'; DNS names in certificates use letters, digits and hyphens (RFC 1123 §2.1)`;
    }
    return `the label '${label}' starts or ends with a hyphen (RFC 1123 §2.1)`;
  }
  if (label.slice(2, 4) === '--') {
    if (!label.startsWith('xn--')) {
      return `the label '${label}' has hyphens in the third and fourth positions, which are reserved for encodings (RFC 5891 §4.2.3.1)`;
    }
    const problem = checkALabel(label);
    if (problem) return `the label '${label}' is a malformed A-label: ${problem}`;
  }
  return undefined;
}

const SCRIPTS: [string, RegExp][] = [
  ['Latin', /\p{Script=Latin}/u],
  ['Cyrillic', /\p{Script=Cyrillic}/u],
  ['Greek', /\p{Script=Greek}/u],
];

// What IDNA2008 lets into a label, approximated by its LetterDigits category (RFC 5892 §2.1):
// lower-case and other letters, combining marks and decimal digits, plus the hyphen.
const U_LABEL_CHAR = /^[\p{Ll}\p{Lo}\p{Lm}\p{Mn}\p{Mc}\p{Nd}-]$/u;

/** Why an xn-- label is not a valid A-label (RFC 5891 §5.4), or undefined when it is. */
export function checkALabel(label: string): string | undefined {
  const body = label.slice(4);
  if (body.length === 0) return 'nothing follows the xn-- prefix';
  const decoded = decodePunycode(body);
  if (!decoded.ok) return `the punycode does not decode: ${decoded.reason}`;
  const u = decoded.value;
  // biome-ignore lint/suspicious/noControlCharactersInRegex: the ASCII range is the point
  if (/^[\u0000-\u007f]*$/.test(u))
    return `it decodes to the plain ASCII '${printable(u)}', which is never encoded`;
  if (encodePunycode(u) !== body)
    return `it does not encode back to itself (the canonical form is xn--${encodePunycode(u)})`;
  if (u.normalize('NFC') !== u) return 'its Unicode form is not in Normalization Form C (RFC 5891 §5.3)';
  if (u.normalize('NFKC').toLowerCase() !== u) {
    return 'its Unicode form has upper-case or compatibility characters, which IDNA2008 disallows (RFC 5892 §2.2)';
  }
  for (const char of u) {
    if (!U_LABEL_CHAR.test(char)) {
      const code = char.codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0');
      return `its Unicode form contains U+${code}, which IDNA2008 does not allow in names (RFC 5892 §2.1)`;
    }
  }
  if (/^\p{M}/u.test(u)) return 'its Unicode form starts with a combining mark (RFC 5891 §4.2.3.2)';
  if (u.startsWith('-') || u.endsWith('-'))
    return 'its Unicode form starts or ends with a hyphen (RFC 5891 §4.2.3.1)';
  const scripts = SCRIPTS.filter(([, pattern]) => pattern.test(u)).map(([script]) => script);
  if (scripts.length > 1) {
    return `'${u}' mixes ${scripts.join(' and ')} letters, the mark of a homograph of another name (UTS #39 §5.1)`;
  }
  // A label that the WHATWG/UTS #46 mapping would change is not in its final form either.
  if (domainToASCII(u) !== label) return `'${u}' is not stable under IDNA mapping (UTS #46 §4)`;
  return undefined;
}

function decodeALabel(label: string): string {
  const decoded = decodePunycode(label.slice(4));
  return decoded.ok ? decoded.value : label;
}

/** Whether `name` lies strictly below `parent` (both normalised): a.example.com under example.com. */
export function isStrictlyBelow(name: string, parent: string): boolean {
  return name.length > parent.length && name.endsWith(`.${parent}`);
}

/** Whether `name` is `parent` or lies below it. */
export function isWithin(name: string, parent: string): boolean {
  return name === parent || isStrictlyBelow(name, parent);
}
