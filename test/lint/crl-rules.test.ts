import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { lintCrl } from '../../src/lint/crl.ts';
import { CRL_RULES } from '../../src/lint/crl-rules/index.ts';
import { encodeAuthorityKeyIdentifier } from '../../src/x509/certificate.ts';
import { encodeCrlTbs } from '../../src/x509/crl-encoder.ts';
import {
  contextTag,
  enumerated,
  integerFromBigInt,
  integerFromNumber,
  NULL_DER,
  octetString,
  oid,
  sequence,
  TRUE_DER,
  time,
  tlv,
} from '../../src/x509/der.ts';
import { encodeName } from '../../src/x509/names.ts';
import { OID } from '../../src/x509/oids.ts';

/**
 * CRL lint fixtures: a TBSCertList described field by field, so each bad case changes exactly one
 * thing of a good one (named after the case, as Boulder names its CRL fixtures).
 */

const issuer = {
  subject: encodeName([{ type: 'CN', value: 'Fixture CA' }]),
  subjectKeyIdentifier: Uint8Array.from({ length: 20 }, (_, i) => i + 1),
};
const ALGORITHM = sequence(oid('1.2.840.10045.4.3.2'));

interface Extension {
  oid: string;
  critical?: boolean;
  value: Uint8Array;
}
interface EntrySpec {
  serial: bigint;
  date: Date;
  extensions?: Extension[];
  dateDer?: Uint8Array;
}
interface CrlSpec {
  version: number | null;
  issuer: Uint8Array;
  thisUpdate: Uint8Array;
  nextUpdate: Uint8Array | null;
  entries: EntrySpec[];
  extensions: Extension[];
}

const encodeExtension = (e: Extension) =>
  sequence(oid(e.oid), ...(e.critical ? [TRUE_DER] : []), octetString(e.value));
const aki = (keyIdentifier = issuer.subjectKeyIdentifier): Extension => ({
  oid: OID.authorityKeyIdentifier,
  value: encodeAuthorityKeyIdentifier(keyIdentifier),
});
const crlNumber = (value: Uint8Array = integerFromNumber(7)): Extension => ({ oid: OID.crlNumber, value });
const reason = (code: number, critical = false): Extension => ({
  oid: OID.crlReason,
  critical,
  value: enumerated(code),
});
const idp = (critical: boolean, ...flags: Uint8Array[]): Extension => ({
  oid: OID.issuingDistributionPoint,
  critical,
  value: sequence(...flags),
});
const ONLY_USER = tlv(0x81, Uint8Array.of(0xff));
const ONLY_CA = tlv(0x82, Uint8Array.of(0xff));

const good = (): CrlSpec => ({
  version: 1,
  issuer: issuer.subject,
  thisUpdate: time(new Date('2026-06-01T12:00:00Z')),
  nextUpdate: time(new Date('2026-06-08T12:00:00Z')),
  entries: [{ serial: 0x0a1bn, date: new Date('2026-05-30T00:00:00Z'), extensions: [reason(1)] }],
  extensions: [aki(), crlNumber()],
});

function encode(spec: CrlSpec): Uint8Array {
  const fields = [
    ...(spec.version === null ? [] : [integerFromNumber(spec.version)]),
    ALGORITHM,
    spec.issuer,
    spec.thisUpdate,
    ...(spec.nextUpdate ? [spec.nextUpdate] : []),
  ];
  if (spec.entries.length > 0) {
    fields.push(
      sequence(
        ...spec.entries.map((entry) =>
          sequence(
            integerFromBigInt(entry.serial),
            entry.dateDer ?? time(entry.date),
            ...(entry.extensions?.length ? [sequence(...entry.extensions.map(encodeExtension))] : []),
          ),
        ),
      ),
    );
  }
  if (spec.extensions.length > 0) {
    fields.push(tlv(contextTag(0, true), sequence(...spec.extensions.map(encodeExtension))));
  }
  return sequence(...fields);
}

const change = (edit: (spec: CrlSpec) => void): Uint8Array => {
  const spec = good();
  edit(spec);
  return encode(spec);
};

const rulesOf = (tbs: Uint8Array) =>
  lintCrl(tbs, { issuer })
    .filter((f) => f.severity === 'error')
    .map((f) => f.rule);

describe('the CRL linter', () => {
  test('finds nothing in a good CRL', () => {
    expect(lintCrl(encode(good()), { issuer })).toEqual([]);
  });

  test('finds nothing in what the CRL encoder writes, with a CA-only issuing distribution point', async () => {
    const { tbs } = await encodeCrlTbs({
      issuer,
      signatureAlgorithm: ALGORITHM,
      number: 12n,
      thisUpdate: new Date('2026-06-01T12:00:00Z'),
      nextUpdate: new Date('2060-06-01T12:00:00Z'),
      entries: [
        { serial: '0a1b', revokedAt: new Date('2026-05-30T00:00:00Z'), reason: 'keyCompromise' },
        { serial: '0a1c', revokedAt: new Date('2055-01-01T00:00:00Z'), reason: 'unspecified' },
      ],
      issuingDistributionPoint: { onlyContainsCACerts: true },
    });
    expect(lintCrl(tbs, { issuer })).toEqual([]);
  });

  test.each([
    {
      name: 'crl_v1_with_extensions',
      rule: 'crl-structure',
      tbs: () =>
        change((s) => {
          s.version = null;
        }),
    },
    {
      name: 'crl_issuer_not_ca_subject',
      rule: 'crl-structure',
      tbs: () =>
        change((s) => {
          s.issuer = encodeName([{ type: 'CN', value: 'Someone else' }]);
        }),
    },
    {
      name: 'crl_extension_twice',
      rule: 'crl-structure',
      tbs: () => change((s) => void s.extensions.push(crlNumber())),
    },
    { name: 'crl_not_der', rule: 'crl-structure', tbs: () => Uint8Array.of(0x30, 0x80, 0x00, 0x00) },
    {
      name: 'crl_no_aki',
      rule: 'crl-authority-key-identifier',
      tbs: () => change((s) => void s.extensions.shift()),
    },
    {
      name: 'crl_aki_critical',
      rule: 'crl-authority-key-identifier',
      tbs: () =>
        change((s) => {
          s.extensions[0] = { ...aki(), critical: true };
        }),
    },
    {
      name: 'crl_aki_wrong_key',
      rule: 'crl-authority-key-identifier',
      tbs: () =>
        change((s) => {
          s.extensions[0] = aki(new Uint8Array(20).fill(9));
        }),
    },
    { name: 'crl_no_number', rule: 'crl-number', tbs: () => change((s) => void s.extensions.pop()) },
    {
      name: 'crl_number_critical',
      rule: 'crl-number',
      tbs: () =>
        change((s) => {
          s.extensions[1] = { ...crlNumber(), critical: true };
        }),
    },
    {
      name: 'crl_number_negative',
      rule: 'crl-number',
      tbs: () =>
        change((s) => {
          s.extensions[1] = crlNumber(tlv(0x02, Uint8Array.of(0xff)));
        }),
    },
    {
      name: 'crl_number_too_long',
      rule: 'crl-number',
      tbs: () =>
        change((s) => {
          s.extensions[1] = crlNumber(integerFromBigInt(1n << 170n));
        }),
    },
    {
      name: 'crl_number_not_integer',
      rule: 'crl-number',
      tbs: () =>
        change((s) => {
          s.extensions[1] = crlNumber(NULL_DER);
        }),
    },
    {
      name: 'crl_no_next_update',
      rule: 'crl-times',
      tbs: () =>
        change((s) => {
          s.nextUpdate = null;
        }),
    },
    {
      name: 'crl_next_update_before_this_update',
      rule: 'crl-times',
      tbs: () =>
        change((s) => {
          s.nextUpdate = time(new Date('2026-05-01T00:00:00Z'));
        }),
    },
    {
      name: 'crl_this_update_generalized_before_2050',
      rule: 'crl-times',
      tbs: () =>
        change((s) => {
          s.thisUpdate = tlv(0x18, Buffer.from('20260601120000Z'));
        }),
    },
    {
      name: 'crl_revocation_date_generalized_before_2050',
      rule: 'crl-times',
      tbs: () =>
        change((s) => {
          s.entries[0]!.dateDer = tlv(0x18, Buffer.from('20260530000000Z'));
        }),
    },
    {
      name: 'crl_reason_unspecified_present',
      rule: 'crl-reason-codes',
      tbs: () =>
        change((s) => {
          s.entries[0]!.extensions = [reason(0)];
        }),
    },
    {
      name: 'crl_reason_certificate_hold',
      rule: 'crl-reason-codes',
      tbs: () =>
        change((s) => {
          s.entries[0]!.extensions = [reason(6)];
        }),
    },
    {
      name: 'crl_reason_unassigned_7',
      rule: 'crl-reason-codes',
      tbs: () =>
        change((s) => {
          s.entries[0]!.extensions = [reason(7)];
        }),
    },
    {
      name: 'crl_reason_critical',
      rule: 'crl-reason-codes',
      tbs: () =>
        change((s) => {
          s.entries[0]!.extensions = [reason(1, true)];
        }),
    },
    {
      name: 'crl_idp_not_critical',
      rule: 'crl-issuing-distribution-point',
      tbs: () => change((s) => void s.extensions.push(idp(false, ONLY_CA))),
    },
    {
      name: 'crl_idp_user_and_ca',
      rule: 'crl-issuing-distribution-point',
      tbs: () => change((s) => void s.extensions.push(idp(true, ONLY_USER, ONLY_CA))),
    },
    {
      name: 'crl_idp_explicit_false',
      rule: 'crl-issuing-distribution-point',
      tbs: () => change((s) => void s.extensions.push(idp(true, tlv(0x82, Uint8Array.of(0))))),
    },
  ])('$name breaks $rule', ({ rule, tbs }) => {
    expect(rulesOf(tbs())).toEqual([rule]);
  });

  test('every CRL rule has its own file, named after its id', () => {
    const files = readdirSync(join(import.meta.dirname, '../../src/lint/crl-rules'))
      .filter((file) => file !== 'index.ts')
      .map((file) => file.replace(/\.ts$/, ''))
      .sort();
    expect(CRL_RULES.map((rule) => rule.id).sort()).toEqual(files);
  });
});
