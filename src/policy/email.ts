/**
 * Email addresses for rfc822Name SANs (RFC 5280 §4.2.1.6): an RFC 5321 §4.1.2 Mailbox whose
 * local part is a dot-atom (RFC 5322 §3.2.3) and whose domain is a DNS name checked like a
 * dNSName. rfc822Name is an IA5String, so addresses with non-ASCII local parts would need an
 * SmtpUTF8Mailbox otherName (RFC 9598), which Signet does not issue. Quoted local parts and
 * address literals are refused: they are legal mail syntax but no one needs them in a
 * certificate, and each is a way to smuggle characters past a rule.
 */

import { checkDnsName } from './dns.ts';
import { printable } from './text.ts';

export type EmailResult =
  | { ok: true; address: string; local: string; domain: string }
  | { ok: false; reason: string };

// RFC 5322 §3.2.3 atext.
const DOT_ATOM = /^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*$/;

export function checkEmail(input: string): EmailResult {
  if (typeof input !== 'string' || input.length === 0) return { ok: false, reason: 'the address is empty' };
  const shown = printable(input);
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what this refuses
  if (/[\u0000-\u001f\u007f]/.test(input)) {
    return { ok: false, reason: `'${shown}' contains control characters (such as CR or LF)` };
  }
  if (/\s/.test(input)) return { ok: false, reason: `'${shown}' contains white space` };
  // biome-ignore lint/suspicious/noControlCharactersInRegex: the ASCII range is the point
  if (/[^\u0000-\u007f]/.test(input)) {
    return {
      ok: false,
      reason: `'${shown}' contains non-ASCII characters; rfc822Name is ASCII only (RFC 5280 §4.2.1.6, RFC 9598)`,
    };
  }
  if (input.length > 254)
    return { ok: false, reason: 'the address is longer than 254 characters (RFC 5321 §4.5.3.1.3)' };
  const at = input.lastIndexOf('@');
  if (at < 0) return { ok: false, reason: `'${shown}' has no @` };
  const local = input.slice(0, at);
  const domainText = input.slice(at + 1);
  if (local.startsWith('"'))
    return { ok: false, reason: `'${shown}' has a quoted local part, which is not accepted` };
  if (local.length === 0) return { ok: false, reason: `'${shown}' has nothing before the @` };
  if (local.length > 64)
    return { ok: false, reason: 'the local part is longer than 64 characters (RFC 5321 §4.5.3.1.1)' };
  if (!DOT_ATOM.test(local)) {
    return {
      ok: false,
      reason: local.includes('@')
        ? `'${shown}' has more than one @`
        : `the local part '${printable(local)}' is not a dot-atom (RFC 5322 §3.2.3)`,
    };
  }
  if (domainText.startsWith('['))
    return { ok: false, reason: `'${shown}' has an address literal, which is not accepted` };
  const domain = checkDnsName(domainText);
  if (!domain.ok) return { ok: false, reason: `the domain is not valid: ${domain.reason}` };
  if (domain.wildcard) return { ok: false, reason: `the domain '${domainText}' is a wildcard` };
  // The local part is case-sensitive (RFC 5321 §2.4); the domain is not.
  return { ok: true, address: `${local}@${domain.name}`, local, domain: domain.name };
}
