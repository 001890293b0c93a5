/** Every lint rule, one per file, in the order findings are reported. */

import type { LintRule } from '../types.ts';
import { rule as authorityKeyIdentifier } from './authority-key-identifier.ts';
import { rule as basicConstraintsLeaf } from './basic-constraints-leaf.ts';
import { rule as caBasicConstraints } from './ca-basic-constraints.ts';
import { rule as caKeyUsage } from './ca-key-usage.ts';
import { rule as caPathLength } from './ca-path-length.ts';
import { rule as caSubjectPresent } from './ca-subject-present.ts';
import { rule as dnsNameNotInternal } from './dns-name-not-internal.ts';
import { rule as dnsNameSyntax } from './dns-name-syntax.ts';
import { rule as ekuNoAny } from './eku-no-any.ts';
import { rule as ekuPresent } from './eku-present.ts';
import { rule as extensionCriticality } from './extension-criticality.ts';
import { rule as extensionValuesDer } from './extension-values-der.ts';
import { rule as extensionsUnique } from './extensions-unique.ts';
import { rule as issuerNameMatches } from './issuer-name-matches.ts';
import { rule as keyUsageLeaf } from './key-usage-leaf.ts';
import { rule as nameConstraints } from './name-constraints.ts';
import { rule as revocationUrls } from './revocation-urls.ts';
import { rule as rootSelfSigned } from './root-self-signed.ts';
import { rule as sanCriticalWhenSubjectEmpty } from './san-critical-when-subject-empty.ts';
import { rule as sanEmailSyntax } from './san-email-syntax.ts';
import { rule as sanIpSyntax } from './san-ip-syntax.ts';
import { rule as sanNotEmpty } from './san-not-empty.ts';
import { rule as sanPresent } from './san-present.ts';
import { rule as sanUriSyntax } from './san-uri-syntax.ts';
import { rule as serialEntropy } from './serial-entropy.ts';
import { rule as serialLength } from './serial-length.ts';
import { rule as serialPositive } from './serial-positive.ts';
import { rule as signatureAlgorithmAllowed } from './signature-algorithm-allowed.ts';
import { rule as signatureAlgorithmMatchesIssuer } from './signature-algorithm-matches-issuer.ts';
import { rule as subjectAttributeLength } from './subject-attribute-length.ts';
import { rule as subjectCnInSan } from './subject-cn-in-san.ts';
import { rule as subjectKeyIdentifier } from './subject-key-identifier.ts';
import { rule as subjectPublicKeyAllowed } from './subject-public-key-allowed.ts';
import { rule as subjectStringEncoding } from './subject-string-encoding.ts';
import { rule as tbsDer } from './tbs-der.ts';
import { rule as tbsStructure } from './tbs-structure.ts';
import { rule as uniqueIdentifiersAbsent } from './unique-identifiers-absent.ts';
import { rule as validityOrder } from './validity-order.ts';
import { rule as validityTimeEncoding } from './validity-time-encoding.ts';
import { rule as validityWithinIssuer } from './validity-within-issuer.ts';
import { rule as versionV3 } from './version-v3.ts';

export const RULES: readonly LintRule[] = [
  authorityKeyIdentifier,
  basicConstraintsLeaf,
  caBasicConstraints,
  caKeyUsage,
  caPathLength,
  caSubjectPresent,
  dnsNameNotInternal,
  dnsNameSyntax,
  ekuNoAny,
  ekuPresent,
  extensionCriticality,
  extensionValuesDer,
  extensionsUnique,
  issuerNameMatches,
  keyUsageLeaf,
  nameConstraints,
  revocationUrls,
  rootSelfSigned,
  sanCriticalWhenSubjectEmpty,
  sanEmailSyntax,
  sanIpSyntax,
  sanNotEmpty,
  sanPresent,
  sanUriSyntax,
  serialEntropy,
  serialLength,
  serialPositive,
  signatureAlgorithmAllowed,
  signatureAlgorithmMatchesIssuer,
  subjectAttributeLength,
  subjectCnInSan,
  subjectKeyIdentifier,
  subjectPublicKeyAllowed,
  subjectStringEncoding,
  tbsDer,
  tbsStructure,
  uniqueIdentifiersAbsent,
  validityOrder,
  validityTimeEncoding,
  validityWithinIssuer,
  versionV3,
];
