import { readFileSync } from 'node:fs';
import { describe, expect, it, test } from 'vitest';
import { parse, stringify } from 'yaml';
import { parseCeremonyConfig } from '../../src/ceremony/config.ts';
import { type ConfigProblem, isConfigInvalid } from '../../src/ceremony/errors.ts';

const example = (name: string): Record<string, unknown> =>
  parse(readFileSync(new URL(`../../ceremonies/examples/${name}.yaml`, import.meta.url), 'utf8'));

/** Sets (or, with `undefined`, deletes) the value at a dotted path of a parsed example. */
function edit(doc: Record<string, unknown>, path: string, value: unknown): Record<string, unknown> {
  const keys = path.split('.');
  let node = doc as Record<string, unknown>;
  for (const key of keys.slice(0, -1)) node = node[key] as Record<string, unknown>;
  const last = keys.at(-1)!;
  if (value === undefined) delete node[last];
  else node[last] = value;
  return doc;
}

function problemsOf(text: string): ConfigProblem[] {
  try {
    parseCeremonyConfig(text, 'test.yaml');
  } catch (error) {
    if (isConfigInvalid(error)) return error.details.problems;
    throw error;
  }
  return [];
}

describe('the example ceremony files', () => {
  test.each(['root', 'key', 'intermediate', 'crl', 'crl-next', 'hierarchy', 'cross-certificate'])(
    '%s.yaml parses cleanly',
    (name) => {
      expect(problemsOf(stringify(example(name)))).toEqual([]);
    },
  );
});

describe('a bad ceremony configuration is refused with the path of the mistake', () => {
  test.each([
    [
      'an unknown top-level key',
      'root',
      (d: Record<string, unknown>) => edit(d, 'colour', 'blue'),
      'colour',
      'ceremony.config.unknown_key',
    ],
    [
      'an unknown nested key',
      'root',
      (d: Record<string, unknown>) => edit(d, 'certificate-profile.subject.email', 'x@example.com'),
      'certificate-profile.subject.email',
      'ceremony.config.unknown_key',
    ],
    [
      'a missing ceremony type',
      'root',
      (d: Record<string, unknown>) => edit(d, 'ceremony-type', undefined),
      'ceremony-type',
      'ceremony.config.required',
    ],
    [
      'an unknown ceremony type',
      'root',
      (d: Record<string, unknown>) => edit(d, 'ceremony-type', 'rooot'),
      'ceremony-type',
      'ceremony.config.invalid_value',
    ],
    [
      'a missing policy-url',
      'root',
      (d: Record<string, unknown>) => edit(d, 'policy-url', undefined),
      'policy-url',
      'ceremony.config.required',
    ],
    [
      'a policy-url that is not a URL',
      'key',
      (d: Record<string, unknown>) => edit(d, 'policy-url', 'section 6'),
      'policy-url',
      'ceremony.config.invalid_value',
    ],
    [
      'no participants',
      'root',
      (d: Record<string, unknown>) => edit(d, 'participants', []),
      'participants',
      'ceremony.config.invalid_value',
    ],
    [
      'an RSA size on an ECDSA key',
      'root',
      (d: Record<string, unknown>) => edit(d, 'key.rsa-mod-length', 4096),
      'key.rsa-mod-length',
      'ceremony.config.rsa_size_without_rsa',
    ],
    [
      'an RSA key without its size',
      'key',
      (d: Record<string, unknown>) => edit(edit(d, 'key.type', 'rsa'), 'key.ecdsa-curve', undefined),
      'key.rsa-mod-length',
      'ceremony.config.required',
    ],
    [
      'a curve on an Ed25519 key',
      'key',
      (d: Record<string, unknown>) => edit(d, 'key.type', 'ed25519'),
      'key.ecdsa-curve',
      'ceremony.config.curve_without_ecdsa',
    ],
    [
      'an RSA size that is not offered',
      'key',
      (d: Record<string, unknown>) =>
        edit(edit(edit(d, 'key.type', 'rsa'), 'key.ecdsa-curve', undefined), 'key.rsa-mod-length', 1024),
      'key.rsa-mod-length',
      'ceremony.config.invalid_value',
    ],
    [
      'not-after before not-before',
      'root',
      (d: Record<string, unknown>) => edit(d, 'certificate-profile.not-after', '2025-01-01T00:00:00Z'),
      'certificate-profile.not-after',
      'ceremony.config.validity_empty',
    ],
    [
      'a time that is not exact UTC',
      'root',
      (d: Record<string, unknown>) => edit(d, 'certificate-profile.not-before', '2026-01-01'),
      'certificate-profile.not-before',
      'ceremony.config.invalid_value',
    ],
    [
      'an impossible date',
      'root',
      (d: Record<string, unknown>) => edit(d, 'certificate-profile.not-before', '2026-02-30T00:00:00Z'),
      'certificate-profile.not-before',
      'ceremony.config.invalid_value',
    ],
    [
      'a CA profile without keyCertSign',
      'root',
      (d: Record<string, unknown>) =>
        edit(d, 'certificate-profile.key-usages', ['cRLSign', 'digitalSignature']),
      'certificate-profile.key-usages',
      'ceremony.config.ca_without_key_cert_sign',
    ],
    [
      'a root without digitalSignature and no other transcript signer',
      'root',
      (d: Record<string, unknown>) => edit(d, 'certificate-profile.key-usages', ['keyCertSign', 'cRLSign']),
      'transcript.signing-key',
      'ceremony.config.transcript_signer_missing',
    ],
    [
      'a transcript signer in a partition created empty',
      'root',
      (d: Record<string, unknown>) =>
        edit(
          edit(d, 'certificate-profile.key-usages', ['keyCertSign', 'cRLSign']),
          'transcript.signing-key',
          'other-key',
        ),
      'transcript.signing-key',
      'ceremony.config.transcript_signer_unknown',
    ],
    [
      'a hierarchy transcript signer whose profile omits digitalSignature',
      'hierarchy',
      (d: Record<string, unknown>) => {
        edit(d, 'transcript.signing-key', 'example-issuing-2026');
        const inter = (d.intermediates as Record<string, unknown>[])[0]!;
        return edit(inter, 'certificate-profile.key-usages', ['keyCertSign', 'cRLSign']) && d;
      },
      'transcript.signing-key',
      'ceremony.config.transcript_signer_not_allowed',
    ],
    [
      'a threshold above the number of custodians',
      'root',
      (d: Record<string, unknown>) => edit(d, 'offline-partition.create.threshold', 4),
      'offline-partition.create.threshold',
      'ceremony.config.threshold_above_shares',
    ],
    [
      'a threshold of one',
      'root',
      (d: Record<string, unknown>) => edit(d, 'offline-partition.create.threshold', 1),
      'offline-partition.create.threshold',
      'ceremony.config.invalid_value',
    ],
    [
      'both dir and socket for a partition',
      'key',
      (d: Record<string, unknown>) => edit(d, 'partition.socket', 'issuing.sock'),
      'partition',
      'ceremony.config.exactly_one',
    ],
    [
      'a partition created through a socket',
      'root',
      (d: Record<string, unknown>) =>
        edit(edit(d, 'offline-partition.dir', undefined), 'offline-partition.socket', 'root.sock'),
      'offline-partition.create',
      'ceremony.config.create_needs_dir',
    ],
    [
      'two outputs at one path',
      'root',
      (d: Record<string, unknown>) => edit(d, 'outputs.certificate-path', 'root-pub.pem'),
      'outputs.certificate-path',
      'ceremony.config.duplicate_output',
    ],
    [
      'a share written over an output',
      'root',
      (d: Record<string, unknown>) => edit(d, 'outputs.certificate-path', 'shares/dave.share'),
      'outputs.certificate-path',
      'ceremony.config.duplicate_output',
    ],
    [
      'a transcript path that is not .json',
      'root',
      (d: Record<string, unknown>) => edit(d, 'transcript.path', 'transcript.txt'),
      'transcript.path',
      'ceremony.config.invalid_value',
    ],
    [
      'both a public key and a CSR for the subject key',
      'intermediate',
      (d: Record<string, unknown>) => edit(d, 'subject-key.csr-path', 'intermediate.csr'),
      'subject-key',
      'ceremony.config.exactly_one',
    ],
    [
      'an IP constraint that is not CIDR',
      'intermediate',
      (d: Record<string, unknown>) =>
        edit(d, 'certificate-profile.name-constraints.permitted.ip', ['192.0.2.1']),
      'certificate-profile.name-constraints.permitted.ip.0',
      'ceremony.config.invalid_value',
    ],
    [
      'a URL that is not ASCII',
      'intermediate',
      (d: Record<string, unknown>) =>
        edit(d, 'certificate-profile.crl-url', 'http://crl.exämple.com/root.crl'),
      'certificate-profile.crl-url',
      'ceremony.config.invalid_value',
    ],
    [
      'a control character in the subject',
      'root',
      (d: Record<string, unknown>) =>
        edit(d, 'certificate-profile.subject.organization', 'Example\u0000Inc.'),
      'certificate-profile.subject.organization',
      'ceremony.config.invalid_value',
    ],
    [
      'an IP constraint with host bits set',
      'intermediate',
      (d: Record<string, unknown>) =>
        edit(d, 'certificate-profile.name-constraints.excluded.ip', ['192.0.2.1/24']),
      'certificate-profile.name-constraints.excluded.ip.0',
      'ceremony.config.invalid_value',
    ],
    [
      'a DNS constraint in upper case',
      'intermediate',
      (d: Record<string, unknown>) =>
        edit(d, 'certificate-profile.name-constraints.excluded.dns', ['Example.COM']),
      'certificate-profile.name-constraints.excluded.dns.0',
      'ceremony.config.invalid_value',
    ],
    [
      'empty name constraints',
      'intermediate',
      (d: Record<string, unknown>) => edit(d, 'certificate-profile.name-constraints', { permitted: {} }),
      'certificate-profile.name-constraints',
      'ceremony.config.name_constraints_empty',
    ],
    [
      'a policy OID that is not dotted',
      'intermediate',
      (d: Record<string, unknown>) => edit(d, 'certificate-profile.policy-oids', ['anyPolicy']),
      'certificate-profile.policy-oids.0',
      'ceremony.config.invalid_value',
    ],
    [
      'a key block in an intermediate ceremony',
      'intermediate',
      (d: Record<string, unknown>) => edit(d, 'subject-key.key', { label: 'x', type: 'ed25519' }),
      'subject-key.key',
      'ceremony.config.unknown_key',
    ],
    [
      'an intermediate outliving the root in a hierarchy',
      'hierarchy',
      (d: Record<string, unknown>) =>
        edit(
          (d.intermediates as Record<string, unknown>[])[0]!,
          'certificate-profile.not-after',
          '2047-01-01T00:00:00Z',
        ) && d,
      'intermediates.0.certificate-profile.not-after',
      'ceremony.config.validity_outside_issuer',
    ],
    [
      'an intermediate starting before the root in a hierarchy',
      'hierarchy',
      (d: Record<string, unknown>) =>
        edit(
          (d.intermediates as Record<string, unknown>[])[0]!,
          'certificate-profile.not-before',
          '2025-12-31T23:59:59Z',
        ) && d,
      'intermediates.0.certificate-profile.not-before',
      'ceremony.config.validity_outside_issuer',
    ],
    [
      'an intermediate path length the root does not allow',
      'hierarchy',
      (d: Record<string, unknown>) => {
        edit(d, 'root.certificate-profile.path-length', 1);
        return (
          edit((d.intermediates as Record<string, unknown>[])[0]!, 'certificate-profile.path-length', 1) && d
        );
      },
      'intermediates.0.certificate-profile.path-length',
      'ceremony.config.path_length_exceeded',
    ],
    [
      'an intermediate key without an online partition',
      'hierarchy',
      (d: Record<string, unknown>) => edit(d, 'online-partition', undefined),
      'intermediates.0.subject-key.key',
      'ceremony.config.online_partition_missing',
    ],
    [
      'an intermediate key labelled like the root',
      'hierarchy',
      (d: Record<string, unknown>) =>
        edit(
          (d.intermediates as Record<string, unknown>[])[0]!,
          'subject-key.key.label',
          'example-root-r2',
        ) && d,
      'intermediates.0.subject-key.key.label',
      'ceremony.config.duplicate',
    ],
    [
      'a hierarchy root without cRLSign',
      'hierarchy',
      (d: Record<string, unknown>) =>
        edit(d, 'root.certificate-profile.key-usages', ['keyCertSign', 'digitalSignature']),
      'root.certificate-profile.key-usages',
      'ceremony.config.crl_without_crl_sign',
    ],
    [
      'a CRL whose next update is before this update',
      'crl',
      (d: Record<string, unknown>) => edit(d, 'crl-profile.next-update', '2026-01-01T00:00:00Z'),
      'crl-profile.next-update',
      'ceremony.config.validity_empty',
    ],
    [
      'a CRL number that does not fit 20 octets',
      'crl',
      (d: Record<string, unknown>) => edit(d, 'crl-profile.number', '9'.repeat(49)),
      'crl-profile.number',
      'ceremony.config.invalid_value',
    ],
    [
      'a CRL with neither a number nor the CRL it follows',
      'crl',
      (d: Record<string, unknown>) => edit(d, 'crl-profile.number', undefined),
      'crl-profile.number',
      'ceremony.config.required',
    ],
    [
      "a hierarchy's first CRL said to follow another",
      'hierarchy',
      (d: Record<string, unknown>) => edit(d, 'crl.crl-profile.previous-crl-path', 'root-2027.crl'),
      'crl.crl-profile.previous-crl-path',
      'ceremony.config.invalid_value',
    ],
    [
      'a revocation with neither certificate nor serial',
      'crl',
      (d: Record<string, unknown>) =>
        edit(d, 'crl-profile.revoked-certificates', [{ 'revocation-date': '2026-12-01T00:00:00Z' }]),
      'crl-profile.revoked-certificates.0',
      'ceremony.config.exactly_one',
    ],
    [
      'a revocation after the CRL was issued',
      'crl',
      (d: Record<string, unknown>) =>
        edit(d, 'crl-profile.revoked-certificates', [
          { serial: '01', 'revocation-date': '2027-06-01T00:00:00Z' },
        ]),
      'crl-profile.revoked-certificates.0.revocation-date',
      'ceremony.config.revoked_after_this_update',
    ],
    [
      'an unknown revocation reason',
      'crl',
      (d: Record<string, unknown>) =>
        edit(d, 'crl-profile.revoked-certificates', [
          { serial: '01', 'revocation-date': '2026-06-01T00:00:00Z', reason: 'certificateHold' },
        ]),
      'crl-profile.revoked-certificates.0.reason',
      'ceremony.config.invalid_value',
    ],
    [
      'a subject on a cross-certificate',
      'cross-certificate',
      (d: Record<string, unknown>) => edit(d, 'certificate-profile.subject', { 'common-name': 'x' }),
      'certificate-profile.subject',
      'ceremony.config.unknown_key',
    ],
  ])('%s', (_name, base, mutate, path, code) => {
    const problems = problemsOf(stringify(mutate(example(base))));
    expect(problems).toContainEqual(expect.objectContaining({ path, code }));
  });

  it("numbers a hierarchy's first CRL 1 when no number is given", () => {
    expect(problemsOf(stringify(edit(example('hierarchy'), 'crl.crl-profile.number', undefined)))).toEqual(
      [],
    );
  });

  it('reports every problem at once, not only the first', () => {
    const doc = edit(edit(example('root'), 'colour', 'blue'), 'key.rsa-mod-length', 4096);
    const problems = problemsOf(stringify(edit(doc, 'policy-url', undefined)));
    expect(problems.map((p) => p.path).sort()).toEqual(['colour', 'policy-url']);
  });

  it('reports cross-field problems together once the schema holds', () => {
    const doc = edit(example('root'), 'key.rsa-mod-length', 4096);
    edit(doc, 'offline-partition.create.threshold', 4);
    expect(
      problemsOf(stringify(doc))
        .map((p) => p.path)
        .sort(),
    ).toEqual(['key.rsa-mod-length', 'offline-partition.create.threshold']);
  });

  test.each([
    ['invalid YAML', 'ceremony-type: [root', 'ceremony.config.yaml'],
    ['a duplicated key', 'ceremony-type: root\nceremony-type: key\n', 'ceremony.config.yaml'],
    ['a YAML alias', 'ceremony-type: root\na: &x 1\nb: *x\n', 'ceremony.config.yaml'],
    ['a list instead of a mapping', '- ceremony-type: root\n', 'ceremony.config.yaml'],
    ['an empty file', '', 'ceremony.config.yaml'],
  ])('%s is refused', (_name, text, code) => {
    expect(problemsOf(text)).toContainEqual(expect.objectContaining({ code }));
  });

  it('names the file and the path in the message', () => {
    expect(() => parseCeremonyConfig(stringify(edit(example('key'), 'key.size', 1)), 'key.yaml')).toThrow(
      'key.yaml: key.size: is not a known key',
    );
  });
});
