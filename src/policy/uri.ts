/**
 * URIs for uniformResourceIdentifier SANs (RFC 5280 §4.2.1.6: absolute, RFC 3986 syntax, with
 * a host when there is an authority) and the path patterns policies match them with.
 *
 * Only what a rule can judge is accepted: scheme://host[:port]/path. Userinfo, queries,
 * fragments, IP-literal hosts, dot segments, empty segments and needless percent-encodings are
 * refused, because each lets two spellings name the same resource and so slip past a deny rule.
 * spiffe:// URIs are further held to the SPIFFE ID standard (SPIFFE-ID §2).
 */

import { checkDnsName } from './dns.ts';
import { printable } from './text.ts';

export interface ParsedUri {
  /** The URI with scheme and host in lower case. */
  uri: string;
  scheme: string;
  host: string;
  port?: number;
  /** '' or starting with '/'. */
  path: string;
  /** The path's segments; [] for '' and '/'. */
  segments: string[];
}

export type UriResult = ({ ok: true } & ParsedUri) | { ok: false; reason: string };

const MAX_URI_LENGTH = 2048;
const SCHEME = /^[A-Za-z][A-Za-z0-9+.-]*$/;
// RFC 3986 §3.3 pchar.
const SEGMENT = /^(?:[A-Za-z0-9\-._~!$&'()*+,;=:@]|%[0-9A-Fa-f]{2})+$/;
// SPIFFE-ID §2.1 and §2.2.
const SPIFFE_TRUST_DOMAIN = /^[a-z0-9._-]+$/;
const SPIFFE_SEGMENT = /^[A-Za-z0-9._-]+$/;

function fail(reason: string): UriResult {
  return { ok: false, reason };
}

export function checkUri(input: string): UriResult {
  if (typeof input !== 'string' || input.length === 0) return fail('the URI is empty');
  const shown = printable(input);
  if (input.length > MAX_URI_LENGTH) return fail(`the URI is longer than ${MAX_URI_LENGTH} characters`);
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what this refuses
  if (/[\u0000-\u001f\u007f]/.test(input)) return fail(`'${shown}' contains control characters`);
  if (/\s/.test(input))
    return fail(`'${shown}' contains spaces; a URI writes them percent-encoded (RFC 3986 §2.1)`);
  // biome-ignore lint/suspicious/noControlCharactersInRegex: the ASCII range is the point
  if (/[^\u0000-\u007f]/.test(input)) {
    return fail(
      `'${shown}' contains non-ASCII characters; a URI writes them percent-encoded (RFC 3986 §2.1)`,
    );
  }
  const colon = input.indexOf(':');
  const schemeText = colon < 0 ? '' : input.slice(0, colon);
  if (!SCHEME.test(schemeText))
    return fail(`'${shown}' is not an absolute URI with a scheme (RFC 5280 §4.2.1.6)`);
  const scheme = schemeText.toLowerCase();
  if (input.includes('#'))
    return fail(`'${shown}' has a fragment (#...), which does not belong in a certificate`);
  if (input.includes('?')) return fail(`'${shown}' has a query (?...), which no rule can match`);
  const rest = input.slice(colon + 1);
  if (!rest.startsWith('//')) return fail(`'${shown}' has no authority (scheme://host/...)`);
  const afterSlashes = rest.slice(2);
  const slash = afterSlashes.indexOf('/');
  const authority = slash < 0 ? afterSlashes : afterSlashes.slice(0, slash);
  const path = slash < 0 ? '' : afterSlashes.slice(slash);
  if (authority.includes('@'))
    return fail(`'${shown}' has userinfo (user@), which does not belong in a certificate`);
  if (authority.startsWith('[')) return fail(`'${shown}' has an IP-literal host, which is not accepted`);
  const portAt = authority.lastIndexOf(':');
  const hostText = portAt < 0 ? authority : authority.slice(0, portAt);
  let port: number | undefined;
  if (portAt >= 0) {
    const portText = authority.slice(portAt + 1);
    if (!/^[1-9]\d{0,4}$/.test(portText) || Number(portText) > 65_535) {
      return fail(`'${shown}' has an invalid port '${printable(portText)}'`);
    }
    port = Number(portText);
  }
  if (hostText.length === 0) return fail(`'${shown}' has no host`);
  if (scheme === 'spiffe') return checkSpiffe(input, schemeText, hostText, port, path);
  const host = checkDnsName(hostText);
  if (!host.ok) return fail(`the host is not valid: ${host.reason}`);
  if (host.wildcard) return fail(`the host '${hostText}' is a wildcard`);
  const segments = splitPath(path);
  if (typeof segments === 'string') return fail(segments);
  const uri = `${scheme}://${host.name}${port === undefined ? '' : `:${port}`}${path}`;
  return { ok: true, uri, scheme, host: host.name, ...(port === undefined ? {} : { port }), path, segments };
}

function splitPath(path: string): string[] | string {
  if (path === '' || path === '/') return [];
  const segments = path.slice(1).split('/');
  for (const segment of segments) {
    if (segment === '') return `the path '${printable(path)}' has an empty segment (// or a trailing /)`;
    if (segment === '.' || segment === '..') {
      return `the path '${printable(path)}' has a dot segment, which is not accepted (RFC 3986 §5.2.4)`;
    }
    if (!SEGMENT.test(segment)) {
      return `the path segment '${printable(segment)}' has characters a URI must percent-encode, or a broken %-escape (RFC 3986 §3.3)`;
    }
    for (const [, hex] of segment.matchAll(/%([0-9A-Fa-f]{2})/g)) {
      if (hex !== hex!.toUpperCase()) {
        return `the path segment '${segment}' writes a percent-encoding in lower case; RFC 3986 §6.2.2.1 normalises to upper case`;
      }
      if (/[A-Za-z0-9\-._~]/.test(String.fromCharCode(Number.parseInt(hex!, 16)))) {
        return `the path segment '${segment}' percent-encodes an unreserved character, which must be written plainly (RFC 3986 §6.2.2.2)`;
      }
    }
  }
  return segments;
}

// SPIFFE-ID §2: spiffe://trust-domain/path, lower-case scheme and trust domain, segments of
// letters, digits, dots, hyphens and underscores, no port, no empty, dot or trailing segments.
function checkSpiffe(
  input: string,
  schemeText: string,
  host: string,
  port: number | undefined,
  path: string,
): UriResult {
  const shown = printable(input);
  if (schemeText !== 'spiffe')
    return fail(`'${shown}': the SPIFFE scheme must be written in lower case (SPIFFE-ID §2)`);
  if (port !== undefined) return fail(`'${shown}': a SPIFFE ID has no port (SPIFFE-ID §2.1)`);
  if (!SPIFFE_TRUST_DOMAIN.test(host)) {
    return fail(
      `'${shown}': a SPIFFE trust domain uses only lower-case letters, digits, dots, hyphens and underscores (SPIFFE-ID §2.1)`,
    );
  }
  if (path === '/' || path.endsWith('/'))
    return fail(`'${shown}': a SPIFFE ID path has no trailing / (SPIFFE-ID §2.2)`);
  const segments = path === '' ? [] : path.slice(1).split('/');
  for (const segment of segments) {
    if (segment === '') return fail(`'${shown}': a SPIFFE ID path has no empty segments (SPIFFE-ID §2.2)`);
    if (segment === '.' || segment === '..') {
      return fail(`'${shown}': a SPIFFE ID path has no . or .. segments (SPIFFE-ID §2.2)`);
    }
    if (!SPIFFE_SEGMENT.test(segment)) {
      return fail(
        `'${shown}': SPIFFE ID path segments use only letters, digits, dots, hyphens and underscores (SPIFFE-ID §2.2)`,
      );
    }
  }
  return { ok: true, uri: input, scheme: 'spiffe', host, path, segments };
}

/** Whether a rule's literal segment or host is valid in a SPIFFE ID (SPIFFE-ID §2). */
export function isSpiffeSegment(segment: string): boolean {
  return SPIFFE_SEGMENT.test(segment);
}
export function isSpiffeTrustDomain(host: string): boolean {
  return SPIFFE_TRUST_DOMAIN.test(host);
}

/**
 * A path pattern: '/' or '/'-separated segments, each a literal, '*' (exactly one segment) or,
 * last only, '**' (one or more segments). '*' never matches part of a segment or a '/', so
 * /ns/*\/sa/* means what it says.
 */
export interface PathPattern {
  text: string;
  segments: string[];
}

export type PathPatternResult = { ok: true; pattern: PathPattern } | { ok: false; reason: string };

export function parsePathPattern(text: string): PathPatternResult {
  if (typeof text !== 'string' || !text.startsWith('/')) {
    return { ok: false, reason: "a path pattern starts with '/'" };
  }
  if (text === '/') return { ok: true, pattern: { text, segments: [] } };
  const segments = text.slice(1).split('/');
  for (const [i, segment] of segments.entries()) {
    if (segment === '') return { ok: false, reason: `'${text}' has an empty segment (// or a trailing /)` };
    if (segment === '*') continue;
    if (segment === '**') {
      if (i !== segments.length - 1) return { ok: false, reason: "'**' may only be the last segment" };
      continue;
    }
    if (segment.includes('*')) {
      return { ok: false, reason: `'${segment}': '*' stands for a whole segment and cannot be part of one` };
    }
    const checked = splitPath(`/${segment}`);
    if (typeof checked === 'string') return { ok: false, reason: checked };
  }
  return { ok: true, pattern: { text, segments } };
}

export function matchPath(pattern: PathPattern, segments: readonly string[]): boolean {
  const p = pattern.segments;
  if (p.length > 0 && p[p.length - 1] === '**') {
    if (segments.length < p.length) return false;
    return p.slice(0, -1).every((part, i) => part === '*' || part === segments[i]);
  }
  if (segments.length !== p.length) return false;
  return p.every((part, i) => part === '*' || part === segments[i]);
}
