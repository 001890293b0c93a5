import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { formatPolicyError, loadPolicies, loadPolicyFile, parsePolicy } from '../../src/policy/load.ts';
import { aPolicy, errorsOf, policyYaml } from './builders.ts';

/** The one error for a patched base policy, formatted as the CLI prints it. */
function errorFor(patch: Record<string, unknown>): string {
  const errors = errorsOf(policyYaml(patch));
  return errors.map(formatPolicyError).join('\n');
}

describe('policy files are validated strictly', () => {
  test('a well-formed policy loads with its defaults filled in', () => {
    const policy = aPolicy();
    expect(policy.name).toBe('test');
    expect(policy.validity).toEqual({
      defaultSeconds: 30 * 86_400,
      maxSeconds: 90 * 86_400,
      minSeconds: 3_600,
      backdateSeconds: 60,
    });
    expect(policy.sans).toMatchObject({ min: 1, max: 100 });
    expect(policy.sans.dns).toMatchObject({ wildcards: false, maxLabels: 127, deny: [] });
    expect(policy.extensions).toEqual({ passthrough: [], others: 'refuse' });
    expect(policy.keyUsage).toEqual(['digitalSignature', 'keyEncipherment']);
    expect(policy.overrides).toEqual({ sans: false, validity: false });
    expect(policy.subject.cnNotInSans).toBe('refuse');
  });

  test('an error names the file, the line and the key path', () => {
    const text = [
      'issuer: dev-intermediate',
      'validity: { default: P30D, max: P90D }',
      'key_algorithms: [ecdsa-p256]',
      'extended_key_usage: [serverAuth]',
      'sans:',
      '  dns:',
      '    allow:',
      '      exact:',
      '        - example.com',
      '        - www.example.com',
      '        - bad_name.example.com',
    ].join('\n');
    const errors = errorsOf(text, 'web-server');
    expect(errors.map(formatPolicyError)).toEqual([
      "policies/web-server.yaml:11 sans.dns.allow.exact[2]: 'bad_name.example.com': the label 'bad_name' contains '_'; DNS names in certificates use letters, digits and hyphens (RFC 1123 §2.1)",
    ]);
  });

  test('an unknown key is an error at its own line, with a suggestion', () => {
    const text =
      'issuer: dev-intermediate\nvalidity: { default: P30D, max: P90D }\nkey_algorithms: [ecdsa-p256]\nextended_key_usage: [serverAuth]\nsans: { dns: { allow: { exact: [example.com] } } }\nocsp_must_stapel: true\n';
    expect(errorsOf(text).map(formatPolicyError)).toEqual([
      "policies/test.yaml:6 ocsp_must_stapel: unknown key; did you mean 'ocsp_must_staple'?",
    ]);
  });

  test.each([
    ['a wrong type', { sans: { max: 'ten' } }, "sans.max: must be a number, not the string 'ten'"],
    ['a fraction', { sans: { max: 1.5 } }, 'sans.max: must be a whole number'],
    ['a missing required key', { issuer: undefined }, 'issuer: is required'],
    [
      'an unknown nested key',
      { sans: { dns: { allow: { suffixes: ['example.com'] } } } },
      'sans.dns.allow.suffixes: unknown key',
    ],
    [
      'an unknown subject attribute',
      { subject: { attributes: { UID: {} } } },
      'subject.attributes.UID: unknown key',
    ],
    [
      'a wrong enum value',
      { subject: { cn_not_in_sans: 'ignore' } },
      'subject.cn_not_in_sans: must be one of refuse, drop',
    ],
    ['an empty key algorithm list', { key_algorithms: [] }, 'key_algorithms: must list at least 1 entry'],
    [
      'an unknown key algorithm',
      { key_algorithms: ['dsa-1024'] },
      "key_algorithms[0]: 'dsa-1024' is not a key algorithm",
    ],
    [
      'a small RSA key',
      { key_algorithms: ['rsa-1024'] },
      "key_algorithms[0]: 'rsa-1024' is not a key algorithm",
    ],
    [
      'a repeated key algorithm',
      { key_algorithms: ['ed25519', 'ed25519'] },
      "key_algorithms[1]: 'ed25519' is listed twice",
    ],
    ['a duration in months', { validity: { max: 'P3M' } }, 'validity.max: '],
    [
      'a Go-style duration',
      { validity: { default: '720h' } },
      "validity.default: '720h' is not an ISO 8601 duration",
    ],
    [
      'a default over max',
      { validity: { default: 'P100D' } },
      'validity.default: default P100D is longer than max P90D',
    ],
    [
      'a default under min',
      { validity: { default: 'PT30M' } },
      'validity.default: default PT30M is shorter than min PT1H',
    ],
    [
      'min over max',
      { validity: { min: 'P91D', default: 'P91D' } },
      'validity.min: min P91D is longer than max P90D',
    ],
    [
      'a zero minimum',
      { validity: { min: 'PT0S' } },
      'validity.min: the minimum validity must be at least one second',
    ],
    [
      'a backdate of two days',
      { validity: { backdate: 'P2D' } },
      'validity.backdate: backdating by more than P1D',
    ],
    [
      'an issuer that is not a slug',
      { issuer: 'Dev Intermediate' },
      "issuer: 'Dev Intermediate' is not an issuer id",
    ],
    [
      '0.0.0.0/0',
      { sans: { ip: { allow: ['0.0.0.0/0'] } } },
      "sans.ip.allow[0]: '0.0.0.0/0' allows every IPv4 address",
    ],
    [
      '::/0',
      { sans: { ip: { allow: ['192.0.2.0/24', '::/0'] } } },
      "sans.ip.allow[1]: '::/0' allows every IPv6 address",
    ],
    ['a CIDR with host bits', { sans: { ip: { allow: ['192.0.2.1/24'] } } }, 'did you mean 192.0.2.0/24?'],
    [
      'a malformed CIDR',
      { sans: { ip: { allow: ['192.0.2.0/33'] } } },
      "sans.ip.allow[0]: '192.0.2.0/33' is not a CIDR block",
    ],
    [
      'a wildcard without wildcards: true',
      { sans: { dns: { allow: { exact: ['*.example.com'] } } } },
      'sans.dns.wildcards is false',
    ],
    [
      'a wildcard in subdomains_of',
      { sans: { dns: { wildcards: true, allow: { subdomains_of: ['*.example.com'] } } } },
      'is a wildcard, which is not allowed here',
    ],
    [
      'a TLD in subdomains_of',
      { sans: { dns: { allow: { subdomains_of: ['com'] } } } },
      "sans.dns.allow.subdomains_of[0]: 'com' is a top-level domain",
    ],
    ['a raw Unicode name', { sans: { dns: { allow: { exact: ['bücher.example'] } } } }, 'raw Unicode'],
    ['a trailing dot', { sans: { dns: { deny: ['internal.example.com.'] } } }, 'sans.dns.deny[0]: '],
    [
      'a name longer than max_labels',
      { sans: { dns: { max_labels: 2, allow: { exact: ['a.example.com'] } } } },
      'more labels than max_labels (2)',
    ],
    ['sans.min over sans.max', { sans: { min: 5, max: 2 } }, 'sans.min: min 5 is greater than max 2'],
    [
      'a type max over sans.max',
      { sans: { max: 2, dns: { max: 3 } } },
      'sans.dns.max: 3 is greater than sans.max (2)',
    ],
    ['no SAN type when one is needed', { sans: { dns: undefined } }, 'sans: sans.min is 1 but no SAN type'],
    ['1001 SANs', { sans: { max: 1001 } }, 'sans.max: must be at most 1000'],
    [
      'an invalid email',
      { sans: { email: { allow: { exact: ['alice'] } } } },
      "sans.email.allow.exact[0]: 'alice' has no @",
    ],
    [
      'a URI rule with an upper-case scheme',
      { sans: { uri: { allow: [{ scheme: 'HTTPS', host: 'example.com', path: '/' }] } } },
      'sans.uri.allow[0].scheme: ',
    ],
    [
      'a URI rule with a partial wildcard',
      { sans: { uri: { allow: [{ scheme: 'spiffe', host: 'example.org', path: '/ns/a*' }] } } },
      'sans.uri.allow[0].path: ',
    ],
    [
      'a SPIFFE rule with a port',
      { sans: { uri: { allow: [{ scheme: 'spiffe', host: 'example.org', port: 443, path: '/' }] } } },
      'sans.uri.allow[0].port: a SPIFFE ID has no port',
    ],
    [
      'a URI rule without a path',
      { sans: { uri: { allow: [{ scheme: 'https', host: 'example.com' }] } } },
      'sans.uri.allow[0].path: is required',
    ],
    [
      'a pattern that does not compile',
      { subject: { attributes: { OU: { pattern: '(' } } } },
      'subject.attributes.OU.pattern: the pattern does not compile',
    ],
    [
      'a pattern that would break out of its anchors',
      { subject: { attributes: { OU: { pattern: 'a)|(.*' } } } },
      'subject.attributes.OU.pattern: the pattern does not compile',
    ],
    [
      'a fixed value outside its pattern',
      { subject: { attributes: { O: { fixed: 'Acme', pattern: '[a-z]+' } } } },
      'does not match the pattern',
    ],
    [
      'a fixed CN',
      { subject: { attributes: { CN: { fixed: 'x' } } } },
      'subject.attributes.CN.fixed: CN cannot be fixed',
    ],
    [
      'a required CN that is dropped',
      { subject: { attributes: { CN: { required: true } }, cn_not_in_sans: 'drop' } },
      'subject.attributes.CN.required: ',
    ],
    [
      'a bad fixed country',
      { subject: { attributes: { C: { fixed: 'USA' } } } },
      'subject.attributes.C.fixed: ',
    ],
    [
      'keyCertSign',
      { key_usage: ['digitalSignature', 'keyCertSign'] },
      'key_usage[1]: keyCertSign makes a CA certificate',
    ],
    ['an unknown key usage', { key_usage: ['sign'] }, 'key_usage[0]: must be one of digitalSignature'],
    [
      'anyExtendedKeyUsage by name',
      { extended_key_usage: ['anyExtendedKeyUsage'] },
      'extended_key_usage[0]: anyExtendedKeyUsage lets',
    ],
    [
      'anyExtendedKeyUsage by OID',
      { extended_key_usage: ['2.5.29.37.0'] },
      'extended_key_usage[0]: anyExtendedKeyUsage lets',
    ],
    [
      'an unknown EKU name',
      { extended_key_usage: ['webServer'] },
      "extended_key_usage[0]: 'webServer' is neither",
    ],
    [
      'a repeated EKU by OID',
      { extended_key_usage: ['serverAuth', '1.3.6.1.5.5.7.3.1'] },
      'extended_key_usage[1]: ',
    ],
    [
      'a CA-controlled passthrough',
      { extensions: { passthrough: ['2.5.29.19'] } },
      'extensions.passthrough[0]: basicConstraints (2.5.29.19) is set by the CA',
    ],
    [
      'a malformed OID',
      { certificate_policies: ['1.2.03'] },
      "certificate_policies[0]: '1.2.03' is not a dotted object identifier",
    ],
  ])('refuses %s', (_name, patch, expected) => {
    expect(errorFor(patch)).toContain(expected);
  });

  test.each([
    ['a syntax error', 'issuer: [unclosed\n', /^policies\/test\.yaml:\d+: /],
    ['a repeated key', 'issuer: a\nissuer: b\n', /^policies\/test\.yaml:2 issuer: this key appears twice$/m],
    ['an alias', 'x: &a [1]\nkey_algorithms: *a\n', /aliases .* are not allowed/],
    [
      'a tag',
      'issuer: !!str dev\n',
      /^policies\/test\.yaml:1 issuer: tags \(tag:yaml.org,2002:str\) are not allowed/,
    ],
    ['two documents', 'issuer: a\n---\nissuer: b\n', /multiple documents/],
    ['an empty file', '', /^policies\/test\.yaml: the file is empty$/],
    ['a top-level list', '- a\n- b\n', /must be a mapping of keys, not a list/],
  ])('refuses YAML with %s', (_name, text, pattern) => {
    expect(errorsOf(text).map(formatPolicyError).join('\n')).toMatch(pattern);
  });

  test('reports unknown keys and problems of meaning in the same run', () => {
    const errors = errorsOf(
      `${policyYaml({ sans: { ip: { allow: ['0.0.0.0/0'] } } })}ocsp_must_stapel: true\n`,
    );
    expect(errors.map((e) => e.path).sort()).toEqual(['ocsp_must_stapel', 'sans.ip.allow[0]']);
  });

  test('refuses a file whose name is not a policy name', () => {
    const result = parsePolicy({ text: policyYaml(), file: 'policies/Web Server.yaml', name: 'Web Server' });
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.errors[0]?.message).toContain('is not a policy name');
  });

  test('lists every problem of meaning in a file, not just the first, in line order', () => {
    const errors = errorsOf(policyYaml({ issuer: 'X', key_algorithms: ['dsa'], sans: { min: 5, max: 2 } }));
    expect(errors.length).toBe(3);
    const lines = errors.map((e) => e.line ?? 0);
    expect(lines).toEqual([...lines].sort((a, b) => a - b));
  });
});

describe('loading a folder', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'signet-policies-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test('loads every YAML file, named after the file, and leaves other files alone', async () => {
    await writeFile(join(dir, 'alpha.yaml'), policyYaml());
    await writeFile(join(dir, 'beta.yml'), policyYaml());
    await writeFile(join(dir, 'README.md'), '# not a policy');
    const { policies, errors } = await loadPolicies(dir);
    expect(errors).toEqual([]);
    expect([...policies.keys()].sort()).toEqual(['alpha', 'beta']);
  });

  test('reports the bad files with their paths and keeps the good ones', async () => {
    await writeFile(join(dir, 'good.yaml'), policyYaml());
    await writeFile(join(dir, 'bad.yaml'), policyYaml({ sans: { max: 'x' } }));
    const { policies, errors } = await loadPolicies(dir);
    expect([...policies.keys()]).toEqual(['good']);
    expect(errors.map(formatPolicyError)).toEqual([
      expect.stringMatching(/bad\.yaml:\d+ sans\.max: must be a number/),
    ]);
  });

  test('refuses two files that define the same policy', async () => {
    await writeFile(join(dir, 'same.yaml'), policyYaml());
    await writeFile(join(dir, 'same.yml'), policyYaml());
    const { errors } = await loadPolicies(dir);
    expect(errors.map((e) => e.message)).toEqual([
      expect.stringContaining("already defines the policy 'same'"),
    ]);
  });

  test('reports a missing folder instead of throwing', async () => {
    const { policies, errors } = await loadPolicies(join(dir, 'missing'));
    expect(policies.size).toBe(0);
    expect(errors[0]?.message).toContain('cannot read the policy folder (ENOENT)');
  });

  test('reports a missing file instead of throwing', async () => {
    const result = await loadPolicyFile(join(dir, 'missing.yaml'));
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.errors[0]?.message).toContain('ENOENT');
  });
});
