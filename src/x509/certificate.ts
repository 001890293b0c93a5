/**
 * The certificate builder: CertificateTemplate + issuer + serial + clock → TBSCertificate DER in
 * the RFC 5280 profile, and the hand assembly of TBS + algorithm + signature into a Certificate.
 *
 * Speed (NOTES.md "Where issuance time goes"): the TBS is concatenated from DER pieces. What is
 * fixed per issuer (issuer Name, signature AlgorithmIdentifier, AKI, CRL DP, AIA) is encoded once
 * and cached; the CSR's SubjectPublicKeyInfo goes in byte for byte; only the serial, validity,
 * subject, SAN, SKI and usages are encoded per certificate. The less common structures (CRL DP,
 * AIA, certificatePolicies) are built with @peculiar/asn1-x509 classes and cached.
 */

import { randomBytes } from 'node:crypto';
import { AsnConvert } from '@peculiar/asn1-schema';
import {
  AccessDescription,
  AuthorityInfoAccessSyntax,
  CertificatePolicies,
  CRLDistributionPoints,
  DistributionPoint,
  DistributionPointName,
  GeneralName,
  PolicyInformation,
} from '@peculiar/asn1-x509';
import type { Clock } from '../lib/clock.ts';
import { AppError } from '../lib/errors.ts';
import { crlShardOf, deltaCrlUrl, shardCrlUrl } from './crl-urls.ts';
import {
  bitString,
  contextTag,
  integerFromNumber,
  integerFromUnsigned,
  octetString,
  oid,
  sequence,
  TRUE_DER,
  time,
  tlv,
  toHex,
} from './der.ts';
import type { IssuerContext } from './issuer.ts';
import { subjectKeyIdentifier } from './issuer.ts';
import { canonicalIp, encodeGeneralNames, encodeName } from './names.ts';
import { ekuOid, KEY_USAGE_BITS, OID } from './oids.ts';
import type { CertificateTemplate, KeyUsageName, RawExtension, SubjectAttribute } from './types.ts';

// ---- Serial numbers (RFC 5280 §4.1.2.2, BR §7.1) ------------------------------------------------

/** Octets of a generated serial: 17, of which 134 bits random (Boulder uses 136 bits). */
export const SERIAL_OCTETS = 17;

/**
 * A fresh serial from the CSPRNG: 17 octets, the first in 0x40..0x7f, so the INTEGER is positive,
 * always 17 octets long (no sign octet, no leading zero) and carries 134 random bits — above the
 * 64 that BR §7.1 asks for and within RFC 5280's 20 octets.
 */
export function generateSerial(): Uint8Array {
  const serial = new Uint8Array(randomBytes(SERIAL_OCTETS));
  serial[0] = 0x40 | (serial[0]! & 0x3f);
  return serial;
}

/** DESIGN.md "Serials": lowercase hex of the INTEGER's content octets. */
export function serialToHex(serial: Uint8Array): string {
  const encoded = integerFromUnsigned(serial);
  return toHex(encoded.subarray(2));
}

function checkSerial(serial: Uint8Array): void {
  const encoded = integerFromUnsigned(serial);
  const contentLength = encoded.length - 2;
  // RFC 5280 §4.1.2.2: positive, at most 20 octets.
  if (serial.every((byte) => byte === 0)) throw new RangeError('serial number must be positive');
  if (contentLength > 20) throw new RangeError('serial number longer than 20 octets (RFC 5280 §4.1.2.2)');
}

// ---- Extensions ---------------------------------------------------------------------------------

/** Extension ::= SEQUENCE { extnID, critical BOOLEAN DEFAULT FALSE, extnValue OCTET STRING }. */
export function encodeExtension(extensionOid: string, critical: boolean, value: Uint8Array): Uint8Array {
  // X.690 §11.5: critical FALSE is the DEFAULT and so is omitted.
  return critical
    ? sequence(oid(extensionOid), TRUE_DER, octetString(value))
    : sequence(oid(extensionOid), octetString(value));
}

/** RFC 5280 §4.2.1.3 KeyUsage as a DER named-bit BIT STRING (trailing zero bits removed). */
export function encodeKeyUsage(usages: readonly KeyUsageName[]): Uint8Array {
  let bits = 0;
  for (const usage of usages) bits |= 1 << KEY_USAGE_BITS[usage];
  if (bits === 0) throw new RangeError('keyUsage needs at least one bit (RFC 5280 §4.2.1.3)');
  let highest = 0;
  for (let bit = 0; bit < 9; bit++) if (bits & (1 << bit)) highest = bit;
  const length = highest + 1;
  const octets = Math.ceil(length / 8);
  const bytes = new Uint8Array(octets);
  for (let bit = 0; bit < length; bit++) if (bits & (1 << bit)) bytes[bit >> 3]! |= 0x80 >> (bit & 7);
  return bitString(bytes, octets * 8 - length);
}

export function encodeExtendedKeyUsage(purposes: readonly string[]): Uint8Array {
  return sequence(...purposes.map((purpose) => oid(ekuOid(purpose))));
}

/** basicConstraints: DER omits cA FALSE, so an end entity's value is an empty SEQUENCE. */
export function encodeBasicConstraints(ca: boolean, pathLen?: number): Uint8Array {
  if (!ca) return sequence();
  return pathLen === undefined ? sequence(TRUE_DER) : sequence(TRUE_DER, integerFromNumber(pathLen));
}

/** AuthorityKeyIdentifier ::= SEQUENCE { keyIdentifier [0] IMPLICIT OCTET STRING } (RFC 5280 §4.2.1.1). */
export function encodeAuthorityKeyIdentifier(keyIdentifier: Uint8Array): Uint8Array {
  return sequence(tlv(contextTag(0, false), keyIdentifier));
}

export function encodeCrlDistributionPoints(url: string): Uint8Array {
  const value = new CRLDistributionPoints([
    new DistributionPoint({
      distributionPoint: new DistributionPointName({
        fullName: [new GeneralName({ uniformResourceIdentifier: url })],
      }),
    }),
  ]);
  return new Uint8Array(AsnConvert.serialize(value));
}

export function encodeAuthorityInfoAccess(urls: { ocspUrl?: string; caIssuersUrl?: string }): Uint8Array {
  const descriptions: AccessDescription[] = [];
  if (urls.ocspUrl) {
    descriptions.push(
      new AccessDescription({
        accessMethod: OID.ocsp,
        accessLocation: new GeneralName({ uniformResourceIdentifier: urls.ocspUrl }),
      }),
    );
  }
  if (urls.caIssuersUrl) {
    descriptions.push(
      new AccessDescription({
        accessMethod: OID.caIssuers,
        accessLocation: new GeneralName({ uniformResourceIdentifier: urls.caIssuersUrl }),
      }),
    );
  }
  return new Uint8Array(AsnConvert.serialize(new AuthorityInfoAccessSyntax(descriptions)));
}

export function encodeCertificatePolicies(policyOids: readonly string[]): Uint8Array {
  const value = new CertificatePolicies(
    policyOids.map((policyIdentifier) => new PolicyInformation({ policyIdentifier })),
  );
  return new Uint8Array(AsnConvert.serialize(value));
}

/** RFC 7633 TLS feature status_request (5): "must staple". */
const MUST_STAPLE = sequence(integerFromNumber(5));

// ---- TBSCertificate -----------------------------------------------------------------------------

/** [0] EXPLICIT Version v3 (2): RFC 5280 §4.1.2.1, extensions need v3. */
const VERSION_V3 = tlv(contextTag(0, true), integerFromNumber(2));

export interface TbsParts {
  serial: Uint8Array;
  /** AlgorithmIdentifier DER (must equal the Certificate's signatureAlgorithm, RFC 5280 §4.1.2.3). */
  signatureAlgorithm: Uint8Array;
  /** Issuer Name DER. */
  issuer: Uint8Array;
  notBefore: Date;
  notAfter: Date;
  /** Subject Name DER. */
  subject: Uint8Array;
  /** SubjectPublicKeyInfo DER. */
  publicKey: Uint8Array;
  /** Each a complete Extension DER (see encodeExtension). */
  extensions: readonly Uint8Array[];
}

/** Concatenates a v3 TBSCertificate from its DER parts. */
export function encodeTbsCertificate(parts: TbsParts): Uint8Array {
  checkSerial(parts.serial);
  const fields = [
    VERSION_V3,
    integerFromUnsigned(parts.serial),
    parts.signatureAlgorithm,
    parts.issuer,
    sequence(time(parts.notBefore), time(parts.notAfter)),
    parts.subject,
    parts.publicKey,
  ];
  if (parts.extensions.length > 0) fields.push(tlv(contextTag(3, true), sequence(...parts.extensions)));
  return sequence(...fields);
}

/**
 * Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signatureValue BIT STRING }
 * (RFC 5280 §4.1), by hand: the TBS bytes go in exactly as they were linted and signed.
 */
export function assembleCertificate(
  tbsDer: Uint8Array,
  signatureAlgorithmDer: Uint8Array,
  signature: Uint8Array,
): Uint8Array {
  return sequence(tbsDer, signatureAlgorithmDer, bitString(signature));
}

// ---- Leaf certificates from a template ----------------------------------------------------------

export interface BuildTbsOptions {
  /** From generateSerial(); unsigned big-endian. */
  serial: Uint8Array;
  clock: Clock;
}

export interface BuiltTbs {
  der: Uint8Array;
  /** Lowercase hex of the INTEGER content octets (DESIGN.md "Serials"). */
  serialNumber: string;
  notBefore: Date;
  notAfter: Date;
  /** The CRL shard whose distribution point the certificate names (0 when unsharded). */
  crlShard: number;
}

/** Per-issuer DER pieces, computed on first use. */
interface IssuerPieces {
  authorityKeyIdentifier: Uint8Array;
  /** Per CRL shard: the cRLDistributionPoints and freshestCRL extensions. */
  crlPointers: Map<number, Uint8Array[]>;
  authorityInfoAccess?: Uint8Array;
}

const issuerPieces = new WeakMap<IssuerContext, IssuerPieces>();

function piecesFor(issuer: IssuerContext): IssuerPieces {
  let pieces = issuerPieces.get(issuer);
  if (!pieces) {
    pieces = {
      authorityKeyIdentifier: encodeExtension(
        OID.authorityKeyIdentifier,
        false,
        encodeAuthorityKeyIdentifier(issuer.subjectKeyIdentifier),
      ),
      crlPointers: new Map(),
    };
    if (issuer.ocspUrl || issuer.caIssuersUrl) {
      // RFC 5280 §4.2.2.1: this extension MUST be non-critical.
      pieces.authorityInfoAccess = encodeExtension(
        OID.authorityInfoAccess,
        false,
        encodeAuthorityInfoAccess(issuer),
      );
    }
    issuerPieces.set(issuer, pieces);
  }
  return pieces;
}

/**
 * The CRL pointers of a certificate of `shard`: its shard's distribution point (RFC 5280
 * §4.2.1.13) and, with delta CRLs, the Freshest CRL (§4.2.1.15; non-critical, "MUST be marked as
 * non-critical by conforming CAs"). Cached per shard.
 */
function crlPointers(issuer: IssuerContext, pieces: IssuerPieces, shard: number): Uint8Array[] {
  const crlUrl = issuer.crlUrl;
  if (!crlUrl) return [];
  let list = pieces.crlPointers.get(shard);
  if (!list) {
    const shards = issuer.crlShards ?? 1;
    list = [
      encodeExtension(
        OID.crlDistributionPoints,
        false,
        encodeCrlDistributionPoints(shardCrlUrl(crlUrl, shard, shards)),
      ),
    ];
    if (issuer.deltaCrls) {
      list.push(
        encodeExtension(
          OID.freshestCrl,
          false,
          encodeCrlDistributionPoints(deltaCrlUrl(crlUrl, shard, shards)),
        ),
      );
    }
    pieces.crlPointers.set(shard, list);
  }
  return list;
}

/** Small memo for pieces that depend only on a policy's settings (few distinct values). */
function memo<T>(limit: number, build: (key: string) => T): (key: string) => T {
  const cache = new Map<string, T>();
  return (key) => {
    let value = cache.get(key);
    if (value === undefined) {
      value = build(key);
      if (cache.size >= limit) cache.clear();
      cache.set(key, value);
    }
    return value;
  };
}

const keyUsageExtension = memo(64, (key) =>
  // RFC 5280 §4.2.1.3: conforming CAs SHOULD mark this extension critical.
  encodeExtension(OID.keyUsage, true, encodeKeyUsage(key.split(',') as KeyUsageName[])),
);
const ekuExtension = memo(64, (key) =>
  encodeExtension(OID.extKeyUsage, false, encodeExtendedKeyUsage(key.split(','))),
);
const policiesExtension = memo(64, (key) =>
  encodeExtension(OID.certificatePolicies, false, encodeCertificatePolicies(key.split(','))),
);
const BASIC_CONSTRAINTS_LEAF = encodeExtension(OID.basicConstraints, true, encodeBasicConstraints(false));
const MUST_STAPLE_EXTENSION = encodeExtension(OID.tlsFeature, false, MUST_STAPLE);

/** Key usages a leaf key of each type can actually perform (RFC 5480 §3, RFC 8410 §5, RFC 4055). */
const LEAF_KEY_USAGES: Record<'rsa' | 'ec' | 'ed25519', ReadonlySet<KeyUsageName>> = {
  rsa: new Set(['digitalSignature', 'nonRepudiation', 'keyEncipherment', 'dataEncipherment']),
  ec: new Set(['digitalSignature', 'nonRepudiation', 'keyAgreement']),
  ed25519: new Set(['digitalSignature', 'nonRepudiation']),
};

export function keyTypeOf(keyAlgorithm: string): 'rsa' | 'ec' | 'ed25519' {
  if (keyAlgorithm.startsWith('rsa-')) return 'rsa';
  if (keyAlgorithm.startsWith('ecdsa-')) return 'ec';
  if (keyAlgorithm === 'ed25519') return 'ed25519';
  throw new RangeError(`unknown key algorithm ${keyAlgorithm}`);
}

/**
 * The key usages a leaf gets: what the policy asked for, less what the key type cannot do (no
 * keyEncipherment for EC or Ed25519, never keyCertSign or cRLSign); digitalSignature for EC and
 * Ed25519 keys and when nothing is left; and for RSA serving TLS (serverAuth), digitalSignature
 * and keyEncipherment.
 */
export function leafKeyUsage(
  keyAlgorithm: string,
  requested: readonly KeyUsageName[],
  extendedKeyUsage: readonly string[],
): KeyUsageName[] {
  const keyType = keyTypeOf(keyAlgorithm);
  const allowed = LEAF_KEY_USAGES[keyType];
  const usages = new Set(requested.filter((usage) => allowed.has(usage)));
  // EC and Ed25519 leaf keys sign (ECDSA in TLS, EdDSA): digitalSignature always (BR §7.1.2.7.11).
  if (usages.size === 0 || keyType !== 'rsa') usages.add('digitalSignature');
  if (keyType === 'rsa' && extendedKeyUsage.some((eku) => ekuOid(eku) === ekuOid('serverAuth'))) {
    usages.add('digitalSignature');
    usages.add('keyEncipherment');
  }
  return (Object.keys(KEY_USAGE_BITS) as KeyUsageName[]).filter((usage) => usages.has(usage));
}

/** The CN stays only when it is also one of the SANs (BR §7.1.4.3; CN is deprecated for names). */
function subjectForLeaf(template: CertificateTemplate): SubjectAttribute[] {
  const dnsNames = new Set(
    template.sans.filter((san) => san.type === 'dns').map((san) => san.value.toLowerCase()),
  );
  const ips = new Set(template.sans.filter((san) => san.type === 'ip').map((san) => canonicalIp(san.value)));
  return template.subject.filter((attribute) => {
    if (attribute.type !== 'CN') return true;
    const ip = canonicalIp(attribute.value);
    return ip ? ips.has(ip) : dnsNames.has(attribute.value.toLowerCase());
  });
}

/** The CA-set extensions, which passthrough extensions may not duplicate. */
const CA_SET_EXTENSIONS = new Set<string>([
  OID.subjectKeyIdentifier,
  OID.authorityKeyIdentifier,
  OID.basicConstraints,
  OID.keyUsage,
  OID.extKeyUsage,
  OID.subjectAltName,
  OID.certificatePolicies,
  OID.crlDistributionPoints,
  OID.freshestCrl,
  OID.authorityInfoAccess,
  OID.tlsFeature,
  OID.nameConstraints,
]);

export class IssuerExpiredError extends AppError {
  constructor(issuer: string) {
    super('ca.issuer_expired', 'unavailable', `issuer ${issuer} cannot issue: its validity has ended`);
  }
}

/**
 * Validity (RFC 5280 §4.1.2.5): notBefore = now - backdate, whole seconds; notAfter so that the
 * period, counted inclusively as BR §1.6.1 does, is `validitySeconds` long; both held inside
 * the issuer's own validity.
 */
export function leafValidity(
  clock: Clock,
  validitySeconds: number,
  backdateSeconds: number,
  issuer: IssuerContext,
): { notBefore: Date; notAfter: Date } {
  if (!Number.isInteger(validitySeconds) || validitySeconds < 1)
    throw new RangeError('validitySeconds must be >= 1');
  if (!Number.isInteger(backdateSeconds) || backdateSeconds < 0)
    throw new RangeError('backdateSeconds must be >= 0');
  const now = Math.floor(clock.now().getTime() / 1000) * 1000;
  let notBefore = now - backdateSeconds * 1000;
  let notAfter = notBefore + (validitySeconds - 1) * 1000;
  notBefore = Math.max(notBefore, issuer.notBefore.getTime());
  notAfter = Math.min(notAfter, issuer.notAfter.getTime());
  if (notAfter < notBefore || issuer.notAfter.getTime() < now) throw new IssuerExpiredError(issuer.id);
  return { notBefore: new Date(notBefore), notAfter: new Date(notAfter) };
}

/**
 * Builds a leaf's TBSCertificate from a policy's template. The result still has to pass the
 * linter before anything signs it (src/lint).
 */
export function buildTbsCertificate(
  template: CertificateTemplate,
  issuer: IssuerContext,
  options: BuildTbsOptions,
): BuiltTbs {
  if (template.issuer !== issuer.id) {
    throw new Error(`template is for issuer ${template.issuer}, not ${issuer.id}`);
  }
  const { notBefore, notAfter } = leafValidity(
    options.clock,
    template.validitySeconds,
    template.backdateSeconds,
    issuer,
  );
  const subject = subjectForLeaf(template);
  const pieces = piecesFor(issuer);

  const extensions: Uint8Array[] = [
    encodeExtension(OID.subjectKeyIdentifier, false, octetString(subjectKeyIdentifier(template.publicKey))),
    pieces.authorityKeyIdentifier,
    BASIC_CONSTRAINTS_LEAF,
    keyUsageExtension(
      leafKeyUsage(template.keyAlgorithm, template.keyUsage, template.extendedKeyUsage).join(','),
    ),
  ];
  if (template.extendedKeyUsage.length > 0)
    extensions.push(ekuExtension(template.extendedKeyUsage.join(',')));
  if (template.sans.length > 0) {
    // RFC 5280 §4.2.1.6: with an empty subject the SAN extension MUST be critical.
    extensions.push(
      encodeExtension(OID.subjectAltName, subject.length === 0, encodeGeneralNames(template.sans)),
    );
  }
  if (template.policyOids.length > 0) extensions.push(policiesExtension(template.policyOids.join(',')));
  const crlShard = issuer.crlUrl ? crlShardOf(options.serial, issuer.crlShards ?? 1) : 0;
  extensions.push(...crlPointers(issuer, pieces, crlShard));
  if (pieces.authorityInfoAccess) extensions.push(pieces.authorityInfoAccess);
  if (template.ocspMustStaple) extensions.push(MUST_STAPLE_EXTENSION);
  extensions.push(...passthrough(template.passthroughExtensions));

  const der = encodeTbsCertificate({
    serial: options.serial,
    signatureAlgorithm: issuer.signatureAlgorithm.identifier,
    issuer: issuer.subject,
    notBefore,
    notAfter,
    subject: encodeName(subject),
    publicKey: template.publicKey,
    extensions,
  });
  return { der, serialNumber: serialToHex(options.serial), notBefore, notAfter, crlShard };
}

function passthrough(extensions: readonly RawExtension[]): Uint8Array[] {
  const seen = new Set<string>();
  return extensions.map((extension) => {
    if (CA_SET_EXTENSIONS.has(extension.oid)) {
      throw new Error(`passthrough extension ${extension.oid} would duplicate one the CA sets`);
    }
    if (seen.has(extension.oid)) throw new Error(`passthrough extension ${extension.oid} given twice`);
    seen.add(extension.oid);
    return encodeExtension(extension.oid, extension.critical, extension.value);
  });
}
