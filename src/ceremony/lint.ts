import { AsnConvert } from '@peculiar/asn1-schema';
import {
  AuthorityKeyIdentifier,
  BasicConstraints,
  IssuingDistributionPoint,
  KeyUsage,
  TBSCertList,
} from '@peculiar/asn1-x509';
import { type IssuanceToken, lintCertificate } from '../issuance/token.ts';
import { lintCrl as lintCrlRules } from '../lint/crl.ts';
import { encoding, equalBytes, readDer } from '../x509/der.ts';
import type { IssuerContext } from '../x509/issuer.ts';
import { readCertificateFields } from '../x509/issuer.ts';
import { KEY_USAGE_BITS, OID } from '../x509/oids.ts';
import type { CertificateProfile, CrlProfile, CrossProfile } from './config.ts';
import type { RevocationEntry } from './validate.ts';

/**
 * Lint before sign. A CA certificate passes the online CA's linter (src/lint, with its root and
 * intermediate profiles; only a pass yields the issuance token that signing needs) and the
 * ceremony's own conformance rules: the TBS says exactly what the reviewed profile says
 * (validity to the second, key usage, path length, name constraints, policies, URLs). A CRL
 * gets src/lint's CRL rules (the online CRL writer's) and the ceremony's conformance to its profile.
 */

export interface CeremonyFinding {
  code: string;
  severity: 'error' | 'warning';
  message: string;
}

export interface LintOutcome {
  passed: boolean;
  findings: CeremonyFinding[];
  /** From src/issuance's lintCertificate when everything passed; signing needs it. */
  token?: IssuanceToken;
}

export interface CaLinter {
  lintCertificate(
    tbs: Uint8Array,
    options: {
      issuer: IssuerContext;
      profile: 'root' | 'intermediate';
      expected: CertificateProfile | CrossProfile;
    },
  ): LintOutcome;
  lintCrl(
    tbs: Uint8Array,
    options: { issuer: IssuerContext; expected: CrlProfile; revoked: RevocationEntry[]; number: bigint },
  ): LintOutcome;
}

const error = (code: string, message: string): CeremonyFinding => ({ code, severity: 'error', message });

/** The ceremony's conformance rules for a CA certificate's TBS against its reviewed profile. */
export function profileConformance(
  tbs: Uint8Array,
  profile: CertificateProfile | CrossProfile,
): CeremonyFinding[] {
  const findings: CeremonyFinding[] = [];
  let fields: ReturnType<typeof readCertificateFields>;
  try {
    fields = readCertificateFields(tbs, true);
  } catch (e) {
    return [
      error('ceremony.profile.unreadable', `the TBSCertificate cannot be read: ${(e as Error).message}`),
    ];
  }
  if (fields.notBefore.getTime() !== Date.parse(profile['not-before'])) {
    findings.push(
      error(
        'ceremony.profile.not_before',
        `notBefore is ${fields.notBefore.toISOString()}, not ${profile['not-before']}`,
      ),
    );
  }
  if (fields.notAfter.getTime() !== Date.parse(profile['not-after'])) {
    findings.push(
      error(
        'ceremony.profile.not_after',
        `notAfter is ${fields.notAfter.toISOString()}, not ${profile['not-after']}`,
      ),
    );
  }
  const basic = fields.extensions.get(OID.basicConstraints);
  if (!basic?.critical) {
    findings.push(
      error(
        'ceremony.profile.basic_constraints',
        'basicConstraints is missing or not critical (RFC 5280 §4.2.1.9)',
      ),
    );
  } else {
    const value = AsnConvert.parse(basic.value, BasicConstraints);
    const pathLen = value.pathLenConstraint === undefined ? undefined : Number(value.pathLenConstraint);
    if (!value.cA || pathLen !== profile['path-length']) {
      findings.push(
        error(
          'ceremony.profile.basic_constraints',
          `basicConstraints says cA=${value.cA} pathLen=${pathLen ?? 'none'}, the profile cA=true pathLen=${profile['path-length'] ?? 'none'}`,
        ),
      );
    }
  }
  const ku = fields.extensions.get(OID.keyUsage);
  if (!ku) {
    findings.push(error('ceremony.profile.key_usage', 'keyUsage is missing (RFC 5280 §4.2.1.3)'));
  } else {
    const bits = AsnConvert.parse(ku.value, KeyUsage).toNumber();
    // asn1-x509 numbers the named bits from 1 << 0 = digitalSignature, as RFC 5280 §4.2.1.3 orders them.
    let expected = 0;
    for (const usage of profile['key-usages']) expected |= 1 << KEY_USAGE_BITS[usage];
    if (bits !== expected) {
      findings.push(error('ceremony.profile.key_usage', 'keyUsage differs from the profile'));
    }
  }
  const presence: [string, boolean, string][] = [
    [OID.nameConstraints, profile['name-constraints'] !== undefined, 'nameConstraints'],
    [OID.certificatePolicies, profile['policy-oids'].length > 0, 'certificatePolicies'],
    [OID.crlDistributionPoints, profile['crl-url'] !== undefined, 'cRLDistributionPoints'],
    [
      OID.authorityInfoAccess,
      profile['issuer-url'] !== undefined || profile['ocsp-url'] !== undefined,
      'authorityInfoAccess',
    ],
    [OID.extKeyUsage, (profile['extended-key-usages']?.length ?? 0) > 0, 'extKeyUsage'],
  ];
  for (const [oid, wanted, name] of presence) {
    if (fields.extensions.has(oid) !== wanted) {
      findings.push(
        error(
          'ceremony.profile.extensions',
          `${name} is ${wanted ? 'missing' : 'present but not in the profile'}`,
        ),
      );
    }
  }
  const nc = fields.extensions.get(OID.nameConstraints);
  if (nc && profile['name-constraints'] && nc.critical !== profile['name-constraints'].critical) {
    findings.push(
      error('ceremony.profile.name_constraints', 'nameConstraints criticality differs from the profile'),
    );
  }
  return findings;
}

/** The ceremony's CRL rules (RFC 5280 §5) against the reviewed CRL profile. */
export function crlConformance(
  tbs: Uint8Array,
  {
    issuer,
    expected,
    revoked,
    number: expectedNumber,
  }: { issuer: IssuerContext; expected: CrlProfile; revoked: RevocationEntry[]; number: bigint },
): CeremonyFinding[] {
  const findings: CeremonyFinding[] = [];
  let list: TBSCertList;
  try {
    readDer(tbs, { maxDepth: 16 });
    list = AsnConvert.parse(tbs, TBSCertList);
  } catch (e) {
    return [error('ceremony.crl.unreadable', `the TBSCertList cannot be read: ${(e as Error).message}`)];
  }
  const top = readDer(tbs, { maxDepth: 16 }).children;
  // §5.1.2.1: v2 (INTEGER 1) with extensions.
  if (list.version !== 1)
    findings.push(error('ceremony.crl.version', 'the CRL is not v2 (RFC 5280 §5.1.2.1)'));
  if (!top[1] || !equalBytes(encoding(top[1]), issuer.signatureAlgorithm.identifier)) {
    findings.push(
      error('ceremony.crl.signature_algorithm', "the signature algorithm is not the issuer key's"),
    );
  }
  if (!top[2] || !equalBytes(encoding(top[2]), issuer.subject)) {
    findings.push(
      error(
        'ceremony.crl.issuer',
        "the CRL issuer is not the issuer certificate's subject (RFC 5280 §5.1.2.3)",
      ),
    );
  }
  if (list.thisUpdate.getTime().getTime() !== Date.parse(expected['this-update'])) {
    findings.push(error('ceremony.crl.this_update', 'thisUpdate differs from the profile'));
  }
  if (list.nextUpdate?.getTime().getTime() !== Date.parse(expected['next-update'])) {
    findings.push(
      error(
        'ceremony.crl.next_update',
        'nextUpdate is missing or differs from the profile (RFC 5280 §5.1.2.5)',
      ),
    );
  }
  const extensions = new Map((list.crlExtensions ?? []).map((e) => [e.extnID, e]));
  const aki = extensions.get(OID.authorityKeyIdentifier);
  const akiValue = aki ? AsnConvert.parse(aki.extnValue.buffer, AuthorityKeyIdentifier) : undefined;
  if (
    !akiValue?.keyIdentifier ||
    !equalBytes(new Uint8Array(akiValue.keyIdentifier.buffer), issuer.subjectKeyIdentifier)
  ) {
    findings.push(
      error(
        'ceremony.crl.authority_key_identifier',
        "authorityKeyIdentifier is missing or not the issuer's (RFC 5280 §5.2.1)",
      ),
    );
  }
  const number = extensions.get('2.5.29.20');
  const numberValue = number
    ? BigInt(
        `0x${Buffer.from(readDerInteger(new Uint8Array(number.extnValue.buffer))).toString('hex') || '0'}`,
      )
    : undefined;
  if (number?.critical || numberValue !== expectedNumber) {
    findings.push(
      error(
        'ceremony.crl.number',
        `cRLNumber is missing, critical or not ${expectedNumber} (RFC 5280 §5.2.3)`,
      ),
    );
  }
  const idp = extensions.get('2.5.29.28');
  const idpValue = idp ? AsnConvert.parse(idp.extnValue.buffer, IssuingDistributionPoint) : undefined;
  if (!idp?.critical || !idpValue?.onlyContainsCACerts || idpValue.onlyContainsUserCerts) {
    findings.push(
      error(
        'ceremony.crl.issuing_distribution_point',
        'the critical issuingDistributionPoint with onlyContainsCACerts is missing (RFC 5280 §5.2.5)',
      ),
    );
  }
  const serials = (list.revokedCertificates ?? []).map((r) =>
    Buffer.from(r.userCertificate)
      .toString('hex')
      .replace(/^(00)+(?=.)/, ''),
  );
  const wanted = revoked.map((r) => r.serial).sort();
  if (serials.slice().sort().join(',') !== wanted.join(',')) {
    findings.push(error('ceremony.crl.entries', 'the revoked certificates differ from the profile'));
  }
  return findings;
}

function readDerInteger(der: Uint8Array): Uint8Array {
  const tlv = readDer(der, { maxDepth: 1 });
  return der.subarray(tlv.contentStart, tlv.end);
}

export const defaultCaLinter: CaLinter = {
  lintCertificate(tbs, { issuer, profile, expected }) {
    const result = lintCertificate(tbs, { issuer, profile });
    const findings: CeremonyFinding[] = result.findings.map((f) => ({
      code: `lint.${f.rule}`,
      severity: f.severity,
      message: `${f.message} (${f.citation})`,
    }));
    findings.push(...profileConformance(tbs, expected));
    const passed = findings.every((f) => f.severity !== 'error');
    return { passed, findings, ...(passed && result.ok ? { token: result.token } : {}) };
  },
  lintCrl(tbs, options) {
    const findings: CeremonyFinding[] = lintCrlRules(tbs, { issuer: options.issuer }).map((f) => ({
      code: `lint.${f.rule}`,
      severity: f.severity,
      message: `${f.message} (${f.citation})`,
    }));
    findings.push(...crlConformance(tbs, options));
    return { passed: findings.every((f) => f.severity !== 'error'), findings };
  },
};
