/**
 * The one CA-certificate builder: the TBSCertificate of a root, an intermediate or a
 * cross-certificate (RFC 5280 §4.1), for `signet init`, tests and the offline ceremony alike. The
 * callers decide the values (a reviewed ceremony profile, init's defaults); this decides the
 * extensions a CA certificate carries and their criticality. Signing is src/issuance's.
 */

import {
  encodeAuthorityInfoAccess,
  encodeAuthorityKeyIdentifier,
  encodeBasicConstraints,
  encodeCertificatePolicies,
  encodeCrlDistributionPoints,
  encodeExtendedKeyUsage,
  encodeExtension,
  encodeKeyUsage,
  encodeTbsCertificate,
} from './certificate.ts';
import { octetString } from './der.ts';
import { type IssuerContext, subjectKeyIdentifier } from './issuer.ts';
import { encodeNameConstraints, type NameConstraintsInput } from './name-constraints.ts';
import { OID } from './oids.ts';
import type { KeyUsageName } from './types.ts';

export interface CaTbsInput {
  /** Positive INTEGER content octets. */
  serial: Uint8Array;
  /** Who signs; for a root, itself (createSelfIssuerContext). */
  issuer: Pick<IssuerContext, 'subject' | 'subjectKeyIdentifier' | 'signatureAlgorithm'>;
  /** The new CA's subject Name, DER. */
  subject: Uint8Array;
  /** The new CA's SubjectPublicKeyInfo, DER. */
  publicKey: Uint8Array;
  notBefore: Date;
  notAfter: Date;
  /** basicConstraints pathLenConstraint; omitted means unlimited. */
  pathLength?: number | undefined;
  keyUsages: readonly KeyUsageName[];
  extendedKeyUsages?: readonly string[] | undefined;
  /** RFC 5280 §4.2.1.10 says critical; a ceremony profile may say otherwise for old verifiers. */
  nameConstraints?: { critical: boolean; value: NameConstraintsInput } | undefined;
  policyOids?: readonly string[] | undefined;
  crlUrl?: string | undefined;
  ocspUrl?: string | undefined;
  caIssuersUrl?: string | undefined;
}

function caExtensions(input: CaTbsInput): Uint8Array[] {
  const extensions = [
    // RFC 5280 §4.2.1.2: CA certificates MUST carry a subjectKeyIdentifier.
    encodeExtension(OID.subjectKeyIdentifier, false, octetString(subjectKeyIdentifier(input.publicKey))),
    // RFC 5280 §4.2.1.1: MUST be present except in self-signed certificates, where it MAY be.
    encodeExtension(
      OID.authorityKeyIdentifier,
      false,
      encodeAuthorityKeyIdentifier(input.issuer.subjectKeyIdentifier),
    ),
    // RFC 5280 §4.2.1.9: critical in CA certificates.
    encodeExtension(OID.basicConstraints, true, encodeBasicConstraints(true, input.pathLength)),
    // RFC 5280 §4.2.1.3: SHOULD be critical.
    encodeExtension(OID.keyUsage, true, encodeKeyUsage(input.keyUsages)),
  ];
  if (input.extendedKeyUsages?.length) {
    extensions.push(encodeExtension(OID.extKeyUsage, false, encodeExtendedKeyUsage(input.extendedKeyUsages)));
  }
  if (input.nameConstraints) {
    extensions.push(
      encodeExtension(
        OID.nameConstraints,
        input.nameConstraints.critical,
        encodeNameConstraints(input.nameConstraints.value),
      ),
    );
  }
  if (input.policyOids?.length) {
    extensions.push(
      encodeExtension(OID.certificatePolicies, false, encodeCertificatePolicies(input.policyOids)),
    );
  }
  if (input.crlUrl) {
    extensions.push(
      encodeExtension(OID.crlDistributionPoints, false, encodeCrlDistributionPoints(input.crlUrl)),
    );
  }
  if (input.ocspUrl || input.caIssuersUrl) {
    // RFC 5280 §4.2.2.1: MUST be non-critical.
    extensions.push(
      encodeExtension(
        OID.authorityInfoAccess,
        false,
        encodeAuthorityInfoAccess({
          ...(input.ocspUrl ? { ocspUrl: input.ocspUrl } : {}),
          ...(input.caIssuersUrl ? { caIssuersUrl: input.caIssuersUrl } : {}),
        }),
      ),
    );
  }
  return extensions;
}

/** A CA certificate's TBSCertificate, with exactly the validity given. */
export function encodeCaTbs(input: CaTbsInput): Uint8Array {
  return encodeTbsCertificate({
    serial: input.serial,
    signatureAlgorithm: input.issuer.signatureAlgorithm.identifier,
    issuer: input.issuer.subject,
    notBefore: input.notBefore,
    notAfter: input.notAfter,
    subject: input.subject,
    publicKey: input.publicKey,
    extensions: caExtensions(input),
  });
}
