/**
 * What the policy engine reasons about in object identifiers. The OIDs themselves are the one
 * table in src/x509/oids.ts; this adds the policy's views of it.
 */

import { EKU_OIDS, ekuOid, OID } from '../x509/oids.ts';

export { EKU_OIDS, ekuOid };

export const ANY_EXTENDED_KEY_USAGE = OID.anyExtendedKeyUsage;

/** The extensions a request may ask for that the policy decides on. */
export const EXTENSION_OIDS = {
  subjectKeyIdentifier: OID.subjectKeyIdentifier,
  keyUsage: OID.keyUsage,
  subjectAltName: OID.subjectAltName,
  basicConstraints: OID.basicConstraints,
  extendedKeyUsage: OID.extKeyUsage,
  tlsFeature: OID.tlsFeature,
} as const;

/**
 * Extensions whose content the CA decides, never the requester: identity, constraints, key
 * usages, revocation pointers and policies. A policy may not pass any of these through.
 */
export const CA_CONTROLLED_EXTENSIONS: Record<string, string> = {
  '2.5.29.14': 'subjectKeyIdentifier',
  '2.5.29.15': 'keyUsage',
  '2.5.29.17': 'subjectAltName',
  '2.5.29.18': 'issuerAltName',
  '2.5.29.19': 'basicConstraints',
  '2.5.29.30': 'nameConstraints',
  '2.5.29.31': 'cRLDistributionPoints',
  '2.5.29.32': 'certificatePolicies',
  '2.5.29.33': 'policyMappings',
  '2.5.29.35': 'authorityKeyIdentifier',
  '2.5.29.36': 'policyConstraints',
  '2.5.29.37': 'extendedKeyUsage',
  '2.5.29.46': 'freshestCRL',
  '2.5.29.54': 'inhibitAnyPolicy',
  '1.3.6.1.5.5.7.1.1': 'authorityInfoAccess',
  '1.3.6.1.5.5.7.1.24': 'tlsFeature',
  '1.3.6.1.4.1.11129.2.4.2': 'signedCertificateTimestampList',
  '1.3.6.1.4.1.11129.2.4.3': 'precertificatePoison',
  '1.3.6.1.5.5.7.48.1.5': 'ocspNoCheck',
};

/** Dotted-decimal OID (X.660): first arc 0-2, second below 40 under arcs 0 and 1, no leading zeros. */
export function isOid(text: string): boolean {
  if (typeof text !== 'string' || text.length > 200) return false;
  if (!/^[0-2](?:\.(?:0|[1-9]\d{0,18}))+$/.test(text)) return false;
  const [first, second] = text.split('.');
  return first === '2' || Number(second) < 40;
}

/** The name for a known EKU OID, else the OID itself. */
export function ekuName(oid: string): string {
  for (const [name, value] of Object.entries(EKU_OIDS)) if (value === oid) return name;
  return oid;
}
