/**
 * The CRL linter: a TBSCertList is checked before it is signed, by the online CRL writer and the
 * ceremony alike, as certificates are. The list is read one level at a time (a CRL may hold a
 * hundred thousand entries): the header fields and extensions fully, each entry only as far as
 * its serial, date and extensions. Like the certificate linter it yields findings only.
 */

import {
  content,
  DerError,
  decodeInteger,
  decodeOid,
  decodeTime,
  readChildrenOf,
  readDer,
  readTlvAt,
  TAG,
  type TlvBounds,
  tlvContent,
  tlvEncoding,
} from '../x509/der.ts';
import { CRL_RULES } from './crl-rules/index.ts';
import type { CrlExtension, CrlLintContext, CrlLintRule, LintCrl } from './crl-types.ts';
import type { LintFinding } from './types.ts';

export type { CrlLintContext, LintCrl };

const isTime = (t: TlvBounds | undefined) =>
  t !== undefined && (t.tag === TAG.UTC_TIME || t.tag === TAG.GENERALIZED_TIME);

function readSmall(bytes: Uint8Array, t: TlvBounds) {
  return readDer(tlvEncoding(bytes, t), { maxDepth: 8 });
}

/** Extensions ::= SEQUENCE OF Extension, read fully (they are small). */
function readExtensions(der: Uint8Array): { map: Map<string, CrlExtension>; oids: string[] } {
  const map = new Map<string, CrlExtension>();
  const oids: string[] = [];
  const list = readDer(der, { maxDepth: 8 });
  if (list.tag !== TAG.SEQUENCE) throw new DerError('malformed', 'Extensions is not a SEQUENCE');
  for (const extension of list.children) {
    const [oidTlv, second, third] = extension.children;
    const valueTlv = third ?? second;
    if (oidTlv?.tag !== TAG.OID || valueTlv?.tag !== TAG.OCTET_STRING) {
      throw new DerError('malformed', 'an Extension is not SEQUENCE { OID, BOOLEAN?, OCTET STRING }');
    }
    const oid = decodeOid(oidTlv);
    oids.push(oid);
    const critical = third !== undefined && content(second!)[0] === 0xff;
    if (!map.has(oid)) map.set(oid, { critical, value: content(valueTlv) });
  }
  return { map, oids };
}

/** The year a UTCTime (YY, RFC 5280 §4.1.2.5.1) or GeneralizedTime (YYYY) starts with. */
function yearOf(bytes: Uint8Array, t: TlvBounds): number {
  const digit = (i: number) => bytes[t.contentStart + i]! - 0x30;
  if (t.tag === TAG.UTC_TIME) {
    const yy = digit(0) * 10 + digit(1);
    return yy >= 50 ? 1900 + yy : 2000 + yy;
  }
  return digit(0) * 1000 + digit(1) * 100 + digit(2) * 10 + digit(3);
}

function readEntryExtensions(bytes: Uint8Array, list: TlvBounds): (CrlExtension & { oid: Uint8Array })[] {
  return readChildrenOf(bytes, list).map((extension) => {
    const [oidTlv, second, third] = readChildrenOf(bytes, extension);
    const valueTlv = third ?? second;
    if (oidTlv?.tag !== TAG.OID || valueTlv?.tag !== TAG.OCTET_STRING) {
      throw new DerError('malformed', 'an entry Extension is not SEQUENCE { OID, BOOLEAN?, OCTET STRING }');
    }
    return {
      oid: tlvEncoding(bytes, oidTlv),
      critical: third !== undefined && bytes[second!.contentStart] === 0xff,
      value: tlvContent(bytes, valueTlv),
    };
  });
}

/** Reads a TBSCertList (RFC 5280 §5.1.2). Throws DerError for what is not one. */
export function parseTbsCertListForLint(tbs: Uint8Array): LintCrl {
  const outer = readTlvAt(tbs);
  if (outer.tag !== TAG.SEQUENCE || outer.end !== tbs.byteLength)
    throw new DerError('malformed', 'a TBSCertList is one SEQUENCE');
  const fields = readChildrenOf(tbs, outer);
  let version = 1;
  if (fields[0]?.tag === TAG.INTEGER) version = Number(decodeInteger(readSmall(tbs, fields.shift()!))) + 1;
  const [, issuer, thisUpdate] = fields.splice(0, 3);
  if (!issuer || issuer.tag !== TAG.SEQUENCE || !isTime(thisUpdate)) {
    throw new DerError('malformed', 'the TBSCertList lacks its signature, issuer or thisUpdate');
  }
  const nextUpdate = isTime(fields[0]) ? fields.shift()! : undefined;
  const revoked = fields[0]?.tag === TAG.SEQUENCE ? fields.shift()! : undefined;
  const extensionsField = fields[0]?.tag === 0xa0 ? fields.shift()! : undefined;
  if (fields.length > 0) throw new DerError('malformed', 'unexpected fields in the TBSCertList');
  const extensions = extensionsField
    ? readExtensions(tlvEncoding(tbs, readChildrenOf(tbs, extensionsField)[0]!))
    : { map: new Map<string, CrlExtension>(), oids: [] };
  return {
    version,
    issuer: tlvEncoding(tbs, issuer),
    thisUpdateTag: thisUpdate!.tag,
    thisUpdate: decodeTime(readSmall(tbs, thisUpdate!)),
    ...(nextUpdate
      ? { nextUpdateTag: nextUpdate.tag, nextUpdate: decodeTime(readSmall(tbs, nextUpdate)) }
      : {}),
    extensions: extensions.map,
    extensionOids: extensions.oids,
    *entries() {
      if (!revoked) return;
      for (const entry of readChildrenOf(tbs, revoked)) {
        const [serial, date, entryExtensions] = readChildrenOf(tbs, entry);
        if (serial?.tag !== TAG.INTEGER || !isTime(date)) {
          throw new DerError(
            'malformed',
            'a revokedCertificates entry is not SEQUENCE { serial, date, ... }',
          );
        }
        yield {
          serial: tlvContent(tbs, serial),
          revocationDateTag: date!.tag,
          revocationYear: yearOf(tbs, date!),
          extensions: entryExtensions ? readEntryExtensions(tbs, entryExtensions) : [],
        };
      }
    },
  };
}

const RULE_BY_ID = new Map(CRL_RULES.map((rule) => [rule.id, rule]));

/** Runs the CRL rules over a TBSCertList; every finding, in rule order. Never throws for a bad CRL. */
export function lintCrl(tbs: Uint8Array, context: CrlLintContext): LintFinding[] {
  const finding = (rule: CrlLintRule, message: string): LintFinding => ({
    rule: rule.id,
    severity: rule.severity,
    message,
    citation: rule.citation,
  });
  let crl: LintCrl;
  try {
    crl = parseTbsCertListForLint(tbs);
  } catch (error) {
    const structure = RULE_BY_ID.get('crl-structure')!;
    return [finding(structure, `the TBSCertList cannot be read: ${(error as Error).message}`)];
  }
  const findings: LintFinding[] = [];
  for (const rule of CRL_RULES) {
    let result: string[] | string | undefined;
    try {
      result = rule.check(crl, context);
    } catch (error) {
      result = `could not be checked: ${(error as Error).message}`;
    }
    const messages = result === undefined ? [] : typeof result === 'string' ? [result] : result;
    for (const message of messages) findings.push(finding(rule, message));
  }
  return findings;
}
