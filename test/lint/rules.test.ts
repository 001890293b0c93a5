import { generateKeyPairSync } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, test } from 'vitest';
import { lintCertificate } from '../../src/issuance/token.ts';
import { fixedClock } from '../../src/lib/clock.ts';
import { RULES } from '../../src/lint/lint.ts';
import type { LintProfile } from '../../src/lint/types.ts';
import { NULL_DER, oid, sequence, time, tlv, utf8String } from '../../src/x509/der.ts';
import { createSelfIssuerContext, type IssuerContext } from '../../src/x509/issuer.ts';
import { OID } from '../../src/x509/oids.ts';
import { createTestChain, generateTestKey, type TestChain, type TestKey } from '../x509/fixtures.ts';
import {
  akiExt,
  basicExt,
  ekuExt,
  encodeSpec,
  ext,
  goodIntermediateSpec,
  goodLeafSpec,
  goodRootSpec,
  keyUsageExt,
  sanExt,
  skiExt,
  subjectOf,
  type TbsSpec,
  withExtension,
} from './fixtures.ts';

const NOW = new Date('2026-06-01T12:00:00Z');

let chain: TestChain;
let constrained: TestChain;
let leafKey: TestKey;
let caKey: TestKey;
let self: IssuerContext;
let weakRsaSpki: Uint8Array;

beforeAll(async () => {
  const [rootKey, issuerKey, leaf, ca] = await Promise.all([
    generateTestKey('ecdsa-p384'),
    generateTestKey('ecdsa-p256'),
    generateTestKey('ecdsa-p256'),
    generateTestKey('ecdsa-p256'),
  ]);
  leafKey = leaf;
  caKey = ca;
  const clock = fixedClock('2026-01-01T00:00:00Z');
  chain = await createTestChain(rootKey, issuerKey, { clock });
  constrained = await createTestChain(rootKey, issuerKey, {
    clock,
    nameConstraints: {
      permitted: [
        { type: 'dns', value: 'example.com' },
        { type: 'ip', value: '192.0.2.0/24' },
      ],
      excluded: [{ type: 'dns', value: 'secret.example.com' }],
    },
  });
  self = createSelfIssuerContext({
    id: 'lint-root',
    subject: [
      { type: 'O', value: 'Signet Test' },
      { type: 'CN', value: 'Lint Root' },
    ],
    publicKey: caKey.spki,
    notBefore: new Date(NOW.getTime() - 120_000),
    notAfter: new Date('2046-01-01T00:00:00Z'),
    pathLenConstraint: 1,
  });
  weakRsaSpki = new Uint8Array(
    generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey.export({ format: 'der', type: 'spki' }),
  );
});

interface Case {
  profile: LintProfile;
  issuer: () => IssuerContext;
  /** The TBS DER, from a spec or raw bytes. */
  tbs: () => Uint8Array;
}

const leaf = (edit: (spec: TbsSpec) => TbsSpec, issuer: () => IssuerContext = () => chain.issuer): Case => ({
  profile: 'leaf',
  issuer,
  tbs: () => encodeSpec(edit(goodLeafSpec(issuer(), leafKey.spki, NOW))),
});
const intermediate = (edit: (spec: TbsSpec) => TbsSpec): Case => ({
  profile: 'intermediate',
  issuer: () => chain.rootContext,
  tbs: () => encodeSpec(edit(goodIntermediateSpec(chain.rootContext, caKey.spki, NOW))),
});
const root = (edit: (spec: TbsSpec) => TbsSpec): Case => ({
  profile: 'root',
  issuer: () => self,
  tbs: () => encodeSpec(edit(goodRootSpec(self, NOW))),
});
const dnsSan =
  (value: string) =>
  (spec: TbsSpec): TbsSpec =>
    withExtension(
      { ...spec, subject: subjectOf([]) },
      OID.subjectAltName,
      sanExt([{ type: 'dns', value }], true),
    );

/**
 * Every rule's bad fixture, named after the case. Each changes one thing of a passing
 * certificate; `also` lists rules that the same change necessarily breaks as well.
 */
const BAD: [name: string, rule: string, make: () => Case, also?: string[]][] = [
  [
    'tbs_long_form_length_for_short_value',
    'tbs-der',
    () => ({
      ...leaf((s) => s),
      tbs: () => rewrap(encodeSpec(goodLeafSpec(chain.issuer, leafKey.spki, NOW))),
    }),
  ],
  [
    'extension_critical_false_written_out',
    'tbs-der',
    () =>
      leaf((s) =>
        withExtension(s, OID.extKeyUsage, {
          ...ekuExt(['serverAuth']),
          criticalDer: Uint8Array.from([1, 1, 0]),
        }),
      ),
  ],
  [
    'tbs_without_subject_public_key_info',
    'tbs-structure',
    () => ({ ...leaf((s) => s), tbs: () => truncatedTbs() }),
  ],
  [
    'extension_value_ber_indefinite',
    'extension-values-der',
    () =>
      leaf((s) => ({
        ...s,
        extensions: [
          ...s.extensions,
          ext('1.3.6.1.4.1.99999.3', false, Uint8Array.from([0x30, 0x80, 0x00, 0x00])),
        ],
      })),
  ],
  ['version_v1', 'version-v3', () => leaf((s) => ({ ...s, version: null }))],
  ['version_v2', 'version-v3', () => leaf((s) => ({ ...s, version: 1 }))],
  [
    'serial_negative',
    'serial-positive',
    () => leaf((s) => ({ ...s, serial: Uint8Array.from([0x80, ...new Array<number>(16).fill(1)]) })),
  ],
  [
    'serial_zero',
    'serial-positive',
    () => leaf((s) => ({ ...s, serial: Uint8Array.from([0]) })),
    ['serial-entropy'],
  ],
  ['serial_21_octets', 'serial-length', () => leaf((s) => ({ ...s, serial: new Uint8Array(21).fill(0x31) }))],
  ['serial_4_octets', 'serial-entropy', () => leaf((s) => ({ ...s, serial: Uint8Array.from([1, 2, 3, 4]) }))],
  [
    'signature_sha1_with_rsa',
    'signature-algorithm-allowed',
    () => leaf((s) => ({ ...s, signatureAlgorithm: sequence(oid(OID.sha1WithRSAEncryption), NULL_DER) })),
    ['signature-algorithm-matches-issuer'],
  ],
  [
    'signature_ecdsa_sha384_from_p256_issuer',
    'signature-algorithm-matches-issuer',
    () => leaf((s) => ({ ...s, signatureAlgorithm: sequence(oid(OID.ecdsaWithSha384)) })),
  ],
  [
    'issuer_name_differs',
    'issuer-name-matches',
    () => leaf((s) => ({ ...s, issuer: subjectOf([{ type: 'CN', value: 'Someone Else' }]) })),
  ],
  [
    'validity_not_after_before_not_before',
    'validity-order',
    () => leaf((s) => ({ ...s, notAfter: time(new Date(NOW.getTime() - 3600_000)) })),
  ],
  [
    'validity_beyond_issuer',
    'validity-within-issuer',
    () => leaf((s) => ({ ...s, notAfter: time(new Date('2049-01-01T00:00:00Z')) })),
  ],
  [
    'validity_before_issuer',
    'validity-within-issuer',
    () => leaf((s) => ({ ...s, notBefore: time(new Date('2020-01-01T00:00:00Z')) })),
  ],
  [
    'validity_generalized_time_before_2050',
    'validity-time-encoding',
    () => leaf((s) => ({ ...s, notAfter: tlv(0x18, Buffer.from('20260801000000Z')) })),
  ],
  [
    'issuer_unique_id_present',
    'unique-identifiers-absent',
    () => leaf((s) => ({ ...s, issuerUniqueId: Uint8Array.from([0, 1, 2]) })),
  ],
  [
    'san_twice',
    'extensions-unique',
    () =>
      leaf((s) => ({
        ...s,
        extensions: [...s.extensions, sanExt([{ type: 'dns', value: 'www.example.com' }])],
      })),
  ],
  [
    'key_rsa_1024',
    'subject-public-key-allowed',
    () =>
      leaf((s) =>
        withExtension(
          { ...s, spki: weakRsaSpki },
          OID.keyUsage,
          keyUsageExt(['digitalSignature', 'keyEncipherment']),
        ),
      ),
  ],
  ['ski_missing', 'subject-key-identifier', () => leaf((s) => withExtension(s, OID.subjectKeyIdentifier))],
  [
    'aki_missing',
    'authority-key-identifier',
    () => leaf((s) => withExtension(s, OID.authorityKeyIdentifier)),
  ],
  [
    'aki_other_key',
    'authority-key-identifier',
    () => leaf((s) => withExtension(s, OID.authorityKeyIdentifier, akiExt(new Uint8Array(20).fill(9)))),
  ],
  [
    'basic_constraints_missing',
    'basic-constraints-leaf',
    () => leaf((s) => withExtension(s, OID.basicConstraints)),
  ],
  [
    'basic_constraints_not_critical',
    'basic-constraints-leaf',
    () => leaf((s) => withExtension(s, OID.basicConstraints, basicExt(false, false))),
  ],
  [
    'basic_constraints_ca_false_written_out',
    'basic-constraints-leaf',
    () =>
      leaf((s) =>
        withExtension(
          s,
          OID.basicConstraints,
          ext(OID.basicConstraints, true, sequence(Uint8Array.from([1, 1, 0]))),
        ),
      ),
  ],
  [
    'basic_constraints_ca_true_in_leaf',
    'basic-constraints-leaf',
    () => leaf((s) => withExtension(s, OID.basicConstraints, basicExt(true))),
  ],
  ['key_usage_missing', 'key-usage-leaf', () => leaf((s) => withExtension(s, OID.keyUsage))],
  [
    'key_usage_not_critical',
    'key-usage-leaf',
    () => leaf((s) => withExtension(s, OID.keyUsage, keyUsageExt(['digitalSignature'], false))),
  ],
  [
    'key_usage_key_encipherment_on_ec',
    'key-usage-leaf',
    () => leaf((s) => withExtension(s, OID.keyUsage, keyUsageExt(['digitalSignature', 'keyEncipherment']))),
  ],
  [
    'key_usage_key_cert_sign_in_leaf',
    'key-usage-leaf',
    () => leaf((s) => withExtension(s, OID.keyUsage, keyUsageExt(['digitalSignature', 'keyCertSign']))),
  ],
  [
    'key_usage_ec_without_digital_signature',
    'key-usage-leaf',
    () => leaf((s) => withExtension(s, OID.keyUsage, keyUsageExt(['keyAgreement']))),
  ],
  ['eku_missing', 'eku-present', () => leaf((s) => withExtension(s, OID.extKeyUsage))],
  [
    'eku_any',
    'eku-no-any',
    () => leaf((s) => withExtension(s, OID.extKeyUsage, ekuExt(['serverAuth', OID.anyExtendedKeyUsage]))),
  ],
  [
    'san_missing',
    'san-present',
    () =>
      leaf((s) =>
        withExtension({ ...s, subject: subjectOf([{ type: 'O', value: 'Example' }]) }, OID.subjectAltName),
      ),
  ],
  [
    'san_empty',
    'san-not-empty',
    () => leaf((s) => withExtension(s, OID.subjectAltName, ext(OID.subjectAltName, false, sequence()))),
    ['subject-cn-in-san'],
  ],
  [
    'san_not_critical_with_empty_subject',
    'san-critical-when-subject-empty',
    () =>
      leaf((s) =>
        withExtension(
          { ...s, subject: subjectOf([]) },
          OID.subjectAltName,
          sanExt([{ type: 'dns', value: 'www.example.com' }], false),
        ),
      ),
  ],
  [
    'cn_not_in_san',
    'subject-cn-in-san',
    () => leaf((s) => ({ ...s, subject: subjectOf([{ type: 'CN', value: 'other.example.com' }]) })),
  ],
  ['dns_underscore_label', 'dns-name-syntax', () => leaf(dnsSan('bad_label.example.com'))],
  ['dns_trailing_dot', 'dns-name-syntax', () => leaf(dnsSan('www.example.com.'))],
  ['dns_wildcard_not_leftmost', 'dns-name-syntax', () => leaf(dnsSan('www.*.example.com'))],
  ['dns_partial_wildcard', 'dns-name-syntax', () => leaf(dnsSan('w*.example.com'))],
  ['dns_invalid_a_label', 'dns-name-syntax', () => leaf(dnsSan('xn--a.example.com'))],
  ['dns_label_64_octets', 'dns-name-syntax', () => leaf(dnsSan(`${'a'.repeat(64)}.example.com`))],
  ['dns_local', 'dns-name-not-internal', () => leaf(dnsSan('printer.local'))],
  ['dns_internal', 'dns-name-not-internal', () => leaf(dnsSan('db.corp.internal'))],
  [
    'ip_five_octets',
    'san-ip-syntax',
    () =>
      leaf((s) =>
        withExtension(
          { ...s, subject: subjectOf([]) },
          OID.subjectAltName,
          ext(OID.subjectAltName, true, sequence(tlv(0x87, Uint8Array.from([192, 0, 2, 1, 0])))),
        ),
      ),
  ],
  [
    'email_with_display_name',
    'san-email-syntax',
    () =>
      leaf((s) =>
        withExtension(
          { ...s, subject: subjectOf([]) },
          OID.subjectAltName,
          sanExt([{ type: 'email', value: 'Ops <ops@example.com>' }], true),
        ),
      ),
  ],
  [
    'uri_relative',
    'san-uri-syntax',
    () =>
      leaf((s) =>
        withExtension(
          { ...s, subject: subjectOf([]) },
          OID.subjectAltName,
          sanExt([{ type: 'uri', value: 'relative/path' }], true),
        ),
      ),
  ],
  [
    'name_outside_permitted_subtree',
    'name-constraints',
    () => leaf(dnsSan('www.example.net'), () => constrained.issuer),
  ],
  [
    'name_in_excluded_subtree',
    'name-constraints',
    () => leaf(dnsSan('a.secret.example.com'), () => constrained.issuer),
  ],
  [
    'name_excluded_by_a_ca_above_the_issuer',
    'name-constraints',
    // The issuer permits it; the CA above the issuer excludes it (RFC 5280 §6.1.4 (g)).
    () =>
      leaf(dnsSan('a.secret.example.net'), () => ({
        ...chain.issuer,
        nameConstraints: { permitted: [{ type: 'dns', value: 'example.net' }], excluded: [] },
        superiorNameConstraints: [
          { permitted: [], excluded: [{ type: 'dns', value: 'secret.example.net' }] },
        ],
      })),
  ],
  [
    'name_outside_the_permitted_subtree_of_a_ca_above',
    'name-constraints',
    () =>
      leaf(dnsSan('www.example.org'), () => ({
        ...chain.issuer,
        nameConstraints: { permitted: [{ type: 'dns', value: 'example.org' }], excluded: [] },
        superiorNameConstraints: [{ permitted: [{ type: 'dns', value: 'example.com' }], excluded: [] }],
      })),
  ],
  [
    'ip_outside_permitted_subtree',
    'name-constraints',
    () =>
      leaf(
        (s) =>
          withExtension(
            s,
            OID.subjectAltName,
            sanExt([
              { type: 'dns', value: 'www.example.com' },
              { type: 'ip', value: '198.51.100.1' },
            ]),
          ),
        () => constrained.issuer,
      ),
  ],
  [
    'cn_outside_permitted_subtree',
    'name-constraints',
    () =>
      leaf(
        (s) => ({ ...s, subject: subjectOf([{ type: 'CN', value: 'www.example.net' }]) }),
        () => constrained.issuer,
      ),
    ['subject-cn-in-san'],
  ],
  [
    'organization_of_65_characters',
    'subject-attribute-length',
    () =>
      leaf((s) => ({
        ...s,
        subject: subjectOf([
          { type: 'O', value: 'o'.repeat(65) },
          { type: 'CN', value: 'www.example.com' },
        ]),
      })),
  ],
  [
    'country_of_three_letters',
    'subject-attribute-length',
    () => leaf((s) => ({ ...s, subject: subjectOf([{ type: 'C', value: 'USA' }]) })),
  ],
  [
    'organization_as_bmp_string',
    'subject-string-encoding',
    () =>
      leaf((s) => ({
        ...s,
        subject: sequence(
          tlv(0x31, sequence(oid('2.5.4.10'), tlv(0x1e, Buffer.from('\u0000E\u0000x', 'latin1')))),
        ),
      })),
  ],
  [
    'aki_critical',
    'extension-criticality',
    () =>
      leaf((s) =>
        withExtension(s, OID.authorityKeyIdentifier, {
          ...akiExt(chain.issuer.subjectKeyIdentifier),
          critical: true,
        }),
      ),
  ],
  [
    'crl_distribution_point_missing',
    'revocation-urls',
    () => leaf((s) => withExtension(s, OID.crlDistributionPoints)),
  ],
  ['aia_missing', 'revocation-urls', () => leaf((s) => withExtension(s, OID.authorityInfoAccess))],
  [
    'ca_basic_constraints_ca_false',
    'ca-basic-constraints',
    () => intermediate((s) => withExtension(s, OID.basicConstraints, basicExt(false))),
    ['ca-path-length'],
  ],
  [
    'ca_basic_constraints_not_critical',
    'ca-basic-constraints',
    () => intermediate((s) => withExtension(s, OID.basicConstraints, basicExt(true, false, 0))),
  ],
  [
    'ca_key_usage_without_crl_sign',
    'ca-key-usage',
    () => intermediate((s) => withExtension(s, OID.keyUsage, keyUsageExt(['keyCertSign']))),
  ],
  [
    'ca_key_usage_with_key_encipherment',
    'ca-key-usage',
    () =>
      intermediate((s) =>
        withExtension(s, OID.keyUsage, keyUsageExt(['keyEncipherment', 'keyCertSign', 'cRLSign'])),
      ),
  ],
  [
    'ca_path_length_not_below_issuer',
    'ca-path-length',
    () => intermediate((s) => withExtension(s, OID.basicConstraints, basicExt(true, true, 1))),
  ],
  [
    'ca_path_length_unlimited_under_constrained_issuer',
    'ca-path-length',
    () => intermediate((s) => withExtension(s, OID.basicConstraints, basicExt(true, true))),
  ],
  [
    'ca_subject_empty',
    'ca-subject-present',
    () => intermediate((s) => ({ ...s, subject: subjectOf([]) })),
    ['san-critical-when-subject-empty'],
  ],
  [
    'root_issuer_not_subject',
    'root-self-signed',
    () => root((s) => ({ ...s, issuer: subjectOf([{ type: 'CN', value: 'Other' }]) })),
    ['issuer-name-matches'],
  ],
  [
    'root_with_eku',
    'root-self-signed',
    () => root((s) => ({ ...s, extensions: [...s.extensions, ekuExt(['serverAuth'])] })),
  ],
  [
    'root_key_not_its_own',
    'root-self-signed',
    () =>
      root((s) => ({
        ...s,
        spki: leafKey.spki,
        extensions: [skiExt(leafKey.spki), ...s.extensions.slice(1)],
      })),
  ],
];

/** The outer SEQUENCE re-written with a needlessly long length form. */
function rewrap(der: Uint8Array): Uint8Array {
  const headerLength = der[1]! & 0x80 ? 2 + (der[1]! & 0x7f) : 2;
  const body = der.subarray(headerLength);
  return Uint8Array.from([
    0x30,
    0x84,
    ...[24, 16, 8, 0].map((shift) => (body.length >>> shift) & 0xff),
    ...body,
  ]);
}

function truncatedTbs(): Uint8Array {
  const spec = goodLeafSpec(chain.issuer, leafKey.spki, NOW);
  return sequence(
    tlv(0xa0, tlv(0x02, Uint8Array.from([2]))),
    tlv(0x02, spec.serial),
    spec.signatureAlgorithm,
    spec.issuer,
  );
}

describe('the linter', () => {
  test.each([
    ['a leaf', () => leaf((s) => s)],
    ['a leaf with an empty subject and a critical SAN', () => leaf(dnsSan('www.example.com'))],
    [
      'a leaf within the issuer’s name constraints',
      () =>
        leaf(
          (s) => s,
          () => constrained.issuer,
        ),
    ],
    ['a leaf with an internal name when the policy allows it', () => leaf(dnsSan('printer.local'))],
    ['an intermediate', () => intermediate((s) => s)],
    ['a root', () => root((s) => s)],
  ] as const)('passes %s without findings and yields a token', (name, make) => {
    const testCase = make();
    const result = lintCertificate(testCase.tbs(), {
      issuer: testCase.issuer(),
      profile: testCase.profile,
      allowInternalNames: name.includes('internal'),
    });
    expect(result.findings).toEqual([]);
    expect(result.ok).toBe(true);
    expect(result.token).toBeDefined();
  });

  test.each(BAD)('refuses %s with %s', (_name, rule, make, also = []) => {
    const testCase = make();
    const result = lintCertificate(testCase.tbs(), { issuer: testCase.issuer(), profile: testCase.profile });
    expect(result.ok).toBe(false);
    expect(result.token).toBeUndefined();
    const broken = [
      ...new Set(result.findings.filter((f) => f.severity === 'error').map((f) => f.rule)),
    ].sort();
    expect(broken).toEqual([rule, ...also].sort());
    const finding = result.findings.find((f) => f.rule === rule)!;
    expect(finding.citation).toMatch(/RFC|BR|X\.690/);
    expect(finding.message.length).toBeGreaterThan(5);
  });

  test('every rule has a bad fixture, every rule file is registered, and every rule cites its source', () => {
    const covered = new Set(BAD.map(([, rule]) => rule));
    expect(RULES.map((rule) => rule.id).filter((id) => !covered.has(id))).toEqual([]);
    const files = readdirSync(join(import.meta.dirname, '../../src/lint/rules'))
      .filter((file) => file.endsWith('.ts') && file !== 'index.ts')
      .map((file) => file.replace(/\.ts$/, ''))
      .sort();
    expect(RULES.map((rule) => rule.id).sort()).toEqual(files);
    for (const rule of RULES) expect(rule.citation).toMatch(/RFC \d+|BR §|X\.690/);
  });

  test('an extension value that does not decode is a finding of the rule that reads it, not a crash', () => {
    const spec = withExtension(goodLeafSpec(chain.issuer, leafKey.spki, NOW), OID.basicConstraints, {
      oid: OID.basicConstraints,
      critical: true,
      value: utf8String('not basic constraints'),
    });
    const result = lintCertificate(encodeSpec(spec), { issuer: chain.issuer, profile: 'leaf' });
    expect(result.ok).toBe(false);
    expect(result.findings.map((f) => f.rule)).toContain('basic-constraints-leaf');
  });

  test('bytes that are not a TBSCertificate are refused with a finding, not a throw', () => {
    const garbage = lintCertificate(Uint8Array.from([1, 2, 3]), { issuer: chain.issuer, profile: 'leaf' });
    expect(garbage.findings.map((f) => f.rule)).toEqual(['tbs-der']);
    const wrongShape = lintCertificate(sequence(sequence()), { issuer: chain.issuer, profile: 'leaf' });
    expect(wrongShape.findings.map((f) => f.rule)).toEqual(['tbs-structure']);
  });
});
