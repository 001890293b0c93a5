/**
 * Lint fixtures: a TBSCertificate described field by field, so each bad case changes exactly
 * one thing of a good one and no builder stands in the way. Encoded with the test's own DER
 * writer calls, not the certificate builder.
 */

import {
  encodeAuthorityInfoAccess,
  encodeAuthorityKeyIdentifier,
  encodeBasicConstraints,
  encodeCrlDistributionPoints,
  encodeExtendedKeyUsage,
  encodeKeyUsage,
} from '../../src/x509/certificate.ts';
import {
  contextTag,
  integerFromNumber,
  octetString,
  oid,
  sequence,
  TRUE_DER,
  time,
  tlv,
} from '../../src/x509/der.ts';
import { type IssuerContext, subjectKeyIdentifier } from '../../src/x509/issuer.ts';
import { encodeGeneralNames, encodeName } from '../../src/x509/names.ts';
import { OID } from '../../src/x509/oids.ts';
import type { KeyUsageName, San, SubjectAttribute } from '../../src/x509/types.ts';

export interface ExtensionSpec {
  oid: string;
  critical: boolean;
  /** extnValue contents. */
  value: Uint8Array;
  /** Raw critical BOOLEAN to write instead of the DER one (for encoding cases). */
  criticalDer?: Uint8Array;
}

export interface TbsSpec {
  /** null: no version field (v1). */
  version: number | null;
  /** INTEGER content octets, written as they are (may be negative). */
  serial: Uint8Array;
  signatureAlgorithm: Uint8Array;
  issuer: Uint8Array;
  notBefore: Uint8Array;
  notAfter: Uint8Array;
  subject: Uint8Array;
  spki: Uint8Array;
  issuerUniqueId?: Uint8Array;
  extensions: ExtensionSpec[];
}

export function encodeSpec(spec: TbsSpec): Uint8Array {
  const fields: Uint8Array[] = [];
  if (spec.version !== null) fields.push(tlv(contextTag(0, true), integerFromNumber(spec.version)));
  fields.push(
    tlv(0x02, spec.serial),
    spec.signatureAlgorithm,
    spec.issuer,
    sequence(spec.notBefore, spec.notAfter),
    spec.subject,
    spec.spki,
  );
  if (spec.issuerUniqueId) fields.push(tlv(contextTag(1, false), spec.issuerUniqueId));
  if (spec.extensions.length > 0) {
    fields.push(
      tlv(
        contextTag(3, true),
        sequence(
          ...spec.extensions.map((extension) =>
            extension.criticalDer
              ? sequence(oid(extension.oid), extension.criticalDer, octetString(extension.value))
              : extension.critical
                ? sequence(oid(extension.oid), TRUE_DER, octetString(extension.value))
                : sequence(oid(extension.oid), octetString(extension.value)),
          ),
        ),
      ),
    );
  }
  return sequence(...fields);
}

export const ext = (extensionOid: string, critical: boolean, value: Uint8Array): ExtensionSpec => ({
  oid: extensionOid,
  critical,
  value,
});

export const sanExt = (sans: San[], critical = false): ExtensionSpec =>
  ext(OID.subjectAltName, critical, encodeGeneralNames(sans));

export const keyUsageExt = (usages: KeyUsageName[], critical = true): ExtensionSpec =>
  ext(OID.keyUsage, critical, encodeKeyUsage(usages));

export const ekuExt = (purposes: string[]): ExtensionSpec =>
  ext(OID.extKeyUsage, false, encodeExtendedKeyUsage(purposes));

export const basicExt = (ca: boolean, critical = true, pathLen?: number): ExtensionSpec =>
  ext(OID.basicConstraints, critical, encodeBasicConstraints(ca, pathLen));

export const akiExt = (keyId: Uint8Array): ExtensionSpec =>
  ext(OID.authorityKeyIdentifier, false, encodeAuthorityKeyIdentifier(keyId));

export const skiExt = (spki: Uint8Array): ExtensionSpec =>
  ext(OID.subjectKeyIdentifier, false, octetString(subjectKeyIdentifier(spki)));

/** A leaf that passes every rule for `issuer`: the baseline each bad case changes once. */
export function goodLeafSpec(issuer: IssuerContext, spki: Uint8Array, now: Date): TbsSpec {
  const notBefore = new Date(Math.floor(now.getTime() / 1000) * 1000 - 60_000);
  const notAfter = new Date(notBefore.getTime() + 90 * 86400_000 - 1000);
  return {
    version: 2,
    serial: Uint8Array.from([0x5a, ...new Array<number>(16).fill(0x11)]),
    signatureAlgorithm: issuer.signatureAlgorithm.identifier,
    issuer: issuer.subject,
    notBefore: time(notBefore),
    notAfter: time(notAfter),
    subject: encodeName([{ type: 'CN', value: 'www.example.com' }]),
    spki,
    extensions: [
      skiExt(spki),
      akiExt(issuer.subjectKeyIdentifier),
      basicExt(false),
      keyUsageExt(['digitalSignature']),
      ekuExt(['serverAuth']),
      sanExt([
        { type: 'dns', value: 'www.example.com' },
        { type: 'ip', value: '192.0.2.1' },
      ]),
      ...(issuer.crlUrl
        ? [ext(OID.crlDistributionPoints, false, encodeCrlDistributionPoints(issuer.crlUrl))]
        : []),
      ...(issuer.ocspUrl || issuer.caIssuersUrl
        ? [ext(OID.authorityInfoAccess, false, encodeAuthorityInfoAccess(issuer))]
        : []),
    ],
  };
}

/** An intermediate that passes every rule under `root`. */
export function goodIntermediateSpec(root: IssuerContext, spki: Uint8Array, now: Date, pathLen = 0): TbsSpec {
  const leaf = goodLeafSpec(root, spki, now);
  return {
    ...leaf,
    subject: encodeName([
      { type: 'O', value: 'Signet Test' },
      { type: 'CN', value: 'Lint Intermediate' },
    ]),
    extensions: [
      skiExt(spki),
      akiExt(root.subjectKeyIdentifier),
      basicExt(true, true, pathLen),
      keyUsageExt(['keyCertSign', 'cRLSign']),
      ...(root.crlUrl
        ? [ext(OID.crlDistributionPoints, false, encodeCrlDistributionPoints(root.crlUrl))]
        : []),
      ...(root.caIssuersUrl ? [ext(OID.authorityInfoAccess, false, encodeAuthorityInfoAccess(root))] : []),
    ],
  };
}

/** A root that passes every rule against its own self context. */
export function goodRootSpec(self: IssuerContext, now: Date): TbsSpec {
  return {
    ...goodLeafSpec(self, self.publicKey, now),
    subject: self.subject,
    extensions: [skiExt(self.publicKey), basicExt(true, true, 1), keyUsageExt(['keyCertSign', 'cRLSign'])],
  };
}

/** Replaces (or with `undefined`, removes) the extension with this OID. */
export function withExtension(spec: TbsSpec, extensionOid: string, replacement?: ExtensionSpec): TbsSpec {
  const extensions = spec.extensions.flatMap((extension) =>
    extension.oid === extensionOid ? (replacement ? [replacement] : []) : [extension],
  );
  return { ...spec, extensions };
}

export const subjectOf = (attributes: SubjectAttribute[]): Uint8Array => encodeName(attributes);
