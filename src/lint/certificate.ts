/**
 * The TBSCertificate as the rules see it, read by the strict DER reader: raw encodings of the
 * Names, the SPKI and the signature AlgorithmIdentifier (so comparisons are byte for byte), and
 * extension values decoded on demand by the strict decoders of extensions.ts. The reader shares
 * no code with the builder's writer; OpenSSL, GnuTLS and Node check the result independently in
 * the tests.
 */

import { content, decodeOid, encoding, readDer, TAG, type Tlv } from '../x509/der.ts';
import { type CertificateFields, readCertificateFields } from '../x509/issuer.ts';

export interface LintExtension {
  oid: string;
  critical: boolean;
  /** extnValue contents (DER of the extension's value). */
  value: Uint8Array;
}

export interface SubjectValue {
  oid: string;
  /** Universal tag of the value's string type. */
  tag: number;
  /** Decoded text (latin1 for types we do not decode). */
  value: string;
  /** Number of attributes in its RDN. */
  rdnSize: number;
}

export interface LintCertificate {
  /** The TBSCertificate DER being linted. */
  der: Uint8Array;
  raw: CertificateFields;
  /** 1, 2 or 3. */
  version: number;
  /** The serialNumber INTEGER's content octets. */
  serial: Uint8Array;
  signatureAlgorithm: Uint8Array;
  issuer: Uint8Array;
  subject: Uint8Array;
  subjectValues: SubjectValue[];
  notBefore: Date;
  notAfter: Date;
  notBeforeTag: number;
  notAfterTag: number;
  publicKey: Uint8Array;
  /** The SubjectPublicKeyInfo algorithm OID. */
  publicKeyAlgorithm: string;
  extensions: LintExtension[];
  extension(oid: string): LintExtension | undefined;
  /** Decodes an extension's value (decoders in extensions.ts), once; throws if it does not decode. */
  decode<T>(extension: LintExtension, decoder: (value: Uint8Array) => T): T;
}

export class LintParseError extends Error {
  override readonly name = 'LintParseError';
  constructor(
    readonly rule: 'tbs-der' | 'tbs-structure',
    message: string,
  ) {
    super(message);
  }
}

const utf8 = new TextDecoder('utf-8', { fatal: false });

function subjectValues(subject: Tlv): SubjectValue[] {
  const values: SubjectValue[] = [];
  for (const rdn of subject.children) {
    for (const atv of rdn.children) {
      const [type, value] = atv.children;
      if (!type || !value || type.tag !== TAG.OID)
        throw new LintParseError('tbs-structure', 'malformed subject');
      const bytes = content(value);
      const text = value.tag === TAG.UTF8_STRING ? utf8.decode(bytes) : Buffer.from(bytes).toString('latin1');
      values.push({ oid: decodeOid(type), tag: value.tag, value: text, rdnSize: rdn.children.length });
    }
  }
  return values;
}

/** Parses a TBSCertificate for linting; throws LintParseError naming the failed rule. */
export function parseTbsForLint(der: Uint8Array): LintCertificate {
  let root: Tlv;
  try {
    root = readDer(der, { maxDepth: 16 });
  } catch (error) {
    throw new LintParseError('tbs-der', `the TBSCertificate is not strict DER: ${(error as Error).message}`);
  }
  let raw: CertificateFields;
  let values: SubjectValue[];
  let publicKeyAlgorithm: string;
  try {
    raw = readCertificateFields(root, true);
    values = subjectValues(raw.subject);
    const algorithm = raw.spki.children[0]?.children[0];
    if (!algorithm || algorithm.tag !== TAG.OID) throw new Error('malformed SubjectPublicKeyInfo');
    publicKeyAlgorithm = decodeOid(algorithm);
  } catch (error) {
    throw new LintParseError('tbs-structure', `not a TBSCertificate: ${(error as Error).message}`);
  }
  const extensions: LintExtension[] = raw.extensionList;
  const decoded = new Map<LintExtension, Map<unknown, unknown>>();
  return {
    der,
    raw,
    version: raw.version,
    serial: content(raw.serial),
    signatureAlgorithm: encoding(raw.signature),
    issuer: encoding(raw.issuer),
    subject: encoding(raw.subject),
    subjectValues: values,
    notBefore: raw.notBefore,
    notAfter: raw.notAfter,
    notBeforeTag: raw.validity.children[0]!.tag,
    notAfterTag: raw.validity.children[1]!.tag,
    publicKey: encoding(raw.spki),
    publicKeyAlgorithm,
    extensions,
    extension: (oid) => extensions.find((extension) => extension.oid === oid),
    decode<T>(extension: LintExtension, decoder: (value: Uint8Array) => T): T {
      let byDecoder = decoded.get(extension);
      if (!byDecoder) {
        byDecoder = new Map();
        decoded.set(extension, byDecoder);
      }
      if (!byDecoder.has(decoder)) byDecoder.set(decoder, decoder(extension.value));
      return byDecoder.get(decoder) as T;
    },
  };
}
