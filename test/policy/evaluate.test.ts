import { AsnConvert } from '@peculiar/asn1-schema';
import { BasicConstraints, ExtendedKeyUsage, KeyUsage, KeyUsageFlags } from '@peculiar/asn1-x509';
import { describe, expect, test } from 'vitest';
import { evaluate } from '../../src/policy/evaluate.ts';
import type { Policy, Requester, RequestOverrides } from '../../src/policy/types.ts';
import type { ParsedCsr, RawExtension, San, SubjectAttribute } from '../../src/x509/types.ts';
import { aCsr, anyone, aPolicy, type Patch } from './builders.ts';

const dns = (value: string): San => ({ type: 'dns', value });
const ip = (value: string): San => ({ type: 'ip', value });
const email = (value: string): San => ({ type: 'email', value });
const uri = (value: string): San => ({ type: 'uri', value });
const cn = (value: string): SubjectAttribute => ({ type: 'CN', value });

function run(
  policy: Policy,
  csr: Partial<ParsedCsr> = {},
  { overrides, requester = anyone }: { overrides?: RequestOverrides; requester?: Requester } = {},
) {
  return evaluate({ policy, csr: aCsr(csr), requester, ...(overrides ? { overrides } : {}) });
}

/** [code, rule] of each violation, or 'allowed'. */
function outcome(policy: Policy, csr: Partial<ParsedCsr>, options?: Parameters<typeof run>[2]) {
  const result = run(policy, csr, options);
  return result.allowed ? 'allowed' : result.violations.map((v) => [v.code, v.rule]);
}

/** A CSR that asks for exactly these SANs and nothing in its subject. */
const asking = (...sans: San[]): Partial<ParsedCsr> => ({ sans, subject: [] });

const extension = (oid: string, value: ArrayBuffer | Uint8Array, critical = false): RawExtension => ({
  oid,
  critical,
  value: new Uint8Array(value),
});

describe('DNS names', () => {
  const policy = aPolicy({
    sans: {
      dns: {
        allow: { exact: ['example.com', 'www.example.net'], subdomains_of: ['example.com'] },
        deny: ['internal.example.com'],
        wildcards: true,
        max_labels: 5,
      },
    },
  });
  const noWildcards = aPolicy();

  test.each([
    ['an exact name', 'example.com', 'example.com', 'sans.dns.allow.exact[0]'],
    ['another exact name', 'www.example.net', 'www.example.net', 'sans.dns.allow.exact[1]'],
    ['a subdomain', 'www.example.com', 'www.example.com', 'sans.dns.allow.subdomains_of[0]'],
    ['a deeper subdomain', 'a.b.example.com', 'a.b.example.com', 'sans.dns.allow.subdomains_of[0]'],
    ['upper case, lowered', 'WWW.EXAMPLE.com', 'www.example.com', 'sans.dns.allow.subdomains_of[0]'],
    [
      'a wildcard one level down',
      '*.app.example.com',
      '*.app.example.com',
      'sans.dns.allow.subdomains_of[0]',
    ],
    [
      'a punycode name',
      'xn--bcher-kva.example.com',
      'xn--bcher-kva.example.com',
      'sans.dns.allow.subdomains_of[0]',
    ],
  ])('allows %s', (_name, requested, issued, rule) => {
    const result = run(policy, asking(dns(requested)));
    expect(result.allowed).toBe(true);
    if (result.allowed) expect(result.template.sans).toEqual([dns(issued)]);
    expect(result.decisions).toContainEqual(
      expect.objectContaining({ field: 'sans[0]', outcome: 'allowed', rule }),
    );
  });

  test.each([
    ['*.com', '*.com', 'policy.wildcard_not_allowed', 'builtin.dns_syntax'],
    ['a partial wildcard', 'a*.example.com', 'policy.dns_name_invalid', 'builtin.dns_syntax'],
    ['a double wildcard', '*.*.example.com', 'policy.dns_name_invalid', 'builtin.dns_syntax'],
    ['a trailing dot', 'www.example.com.', 'policy.dns_name_invalid', 'builtin.dns_syntax'],
    ['raw Unicode', 'bücher.example.com', 'policy.dns_name_invalid', 'builtin.dns_syntax'],
    ['a malformed A-label', 'xn--abc.example.com', 'policy.dns_name_invalid', 'builtin.dns_syntax'],
    [
      'a mixed-script homograph',
      'xn--pypal-4ve.example.com',
      'policy.dns_name_invalid',
      'builtin.dns_syntax',
    ],
    ['an IP address as a DNS name', '192.0.2.1', 'policy.dns_name_invalid', 'builtin.dns_syntax'],
    [
      'an allowed name as a prefix of another domain',
      'example.com.evil.net',
      'policy.dns_not_allowed',
      'sans.dns.allow',
    ],
    [
      'a name that only ends like an allowed one',
      'evilexample.com',
      'policy.dns_not_allowed',
      'sans.dns.allow',
    ],
    ['a subdomain of an exact-only name', 'a.www.example.net', 'policy.dns_not_allowed', 'sans.dns.allow'],
    ['a denied name', 'internal.example.com', 'policy.san_denied', 'sans.dns.deny[0]'],
    ['a name below a denied one', 'db.internal.example.com', 'policy.san_denied', 'sans.dns.deny[0]'],
    ['a wildcard below a denied name', '*.internal.example.com', 'policy.san_denied', 'sans.dns.deny[0]'],
    ['a wildcard that would cover a denied name', '*.example.com', 'policy.san_denied', 'sans.dns.deny[0]'],
    ['too many labels', 'a.b.c.d.example.com', 'policy.dns_too_many_labels', 'sans.dns.max_labels'],
  ])('refuses %s', (_name, requested, code, rule) => {
    expect(outcome(policy, asking(dns(requested)))).toEqual([[code, rule]]);
  });

  test('refuses a wildcard when the policy allows none', () => {
    expect(outcome(noWildcards, asking(dns('*.example.com')))).toEqual([
      ['policy.wildcard_not_allowed', 'sans.dns.wildcards'],
    ]);
  });

  test('does not let subdomains_of allow the domain itself', () => {
    const belowOnly = aPolicy({ sans: { dns: { allow: { exact: [], subdomains_of: ['example.com'] } } } });
    expect(outcome(belowOnly, asking(dns('example.com')))).toEqual([
      ['policy.dns_not_allowed', 'sans.dns.allow'],
    ]);
  });

  test('a refusal says why in a sentence that names the allowed names', () => {
    const result = run(policy, asking(dns('example.com.evil.net')));
    expect(result.allowed).toBe(false);
    if (!result.allowed) {
      expect(result.violations[0]).toEqual({
        code: 'policy.dns_not_allowed',
        field: 'sans[0]',
        value: 'example.com.evil.net',
        rule: 'sans.dns.allow',
        message:
          "'example.com.evil.net' is not allowed by this policy, which allows example.com, www.example.net, names below example.com.",
      });
    }
  });
});

describe('IP addresses', () => {
  const policy = aPolicy({
    sans: { ip: { allow: ['192.0.2.0/24', '2001:db8::/32'], deny: ['192.0.2.0/32', '192.0.2.128/25'] } },
  });

  test.each([
    ['an IPv4 address in the block', '192.0.2.10', '192.0.2.10'],
    ['an IPv6 address in the block', '2001:db8::1', '2001:db8::1'],
    ['a long-form IPv6 address, written canonically', '2001:0DB8:0:0:0:0:0:0001', '2001:db8::1'],
    ['an IPv4-mapped IPv6 address, compared as IPv4', '::ffff:192.0.2.10', '::ffff:192.0.2.10'],
  ])('allows %s', (_name, requested, issued) => {
    const result = run(policy, asking(ip(requested)));
    expect(result.allowed && result.template.sans).toEqual([ip(issued)]);
  });

  test.each([
    ['an address outside every block', '198.51.100.1', 'policy.ip_not_allowed', 'sans.ip.allow'],
    ['a denied address', '192.0.2.0', 'policy.san_denied', 'sans.ip.deny[0]'],
    ['an address in a denied block', '192.0.2.200', 'policy.san_denied', 'sans.ip.deny[1]'],
    [
      'an IPv4-mapped address in a denied block',
      '::ffff:192.0.2.200',
      'policy.san_denied',
      'sans.ip.deny[1]',
    ],
    [
      'an IPv4-mapped address outside every block',
      '::ffff:198.51.100.1',
      'policy.ip_not_allowed',
      'sans.ip.allow',
    ],
    ['an IPv6 address outside the block', '2001:db9::1', 'policy.ip_not_allowed', 'sans.ip.allow'],
    ['a leading zero', '192.0.2.010', 'policy.ip_invalid', 'builtin.ip_syntax'],
    ['a zone identifier', 'fe80::1%eth0', 'policy.ip_invalid', 'builtin.ip_syntax'],
    ['a DNS name in an IP SAN', 'www.example.com', 'policy.ip_invalid', 'builtin.ip_syntax'],
  ])('refuses %s', (_name, requested, code, rule) => {
    expect(outcome(policy, asking(ip(requested)))).toEqual([[code, rule]]);
  });
});

describe('email addresses', () => {
  const policy = aPolicy({
    sans: {
      dns: undefined,
      email: {
        allow: { exact: ['bob@example.net'], domains: ['example.com'] },
        deny: { exact: ['root@example.com'] },
      },
    },
  });

  test.each([
    ['an address at an allowed domain', 'alice@example.com', 'alice@example.com'],
    ['a domain in upper case, lowered', 'Alice@EXAMPLE.COM', 'Alice@example.com'],
    ['an exact address', 'bob@example.net', 'bob@example.net'],
  ])('allows %s', (_name, requested, issued) => {
    const result = run(policy, asking(email(requested)));
    expect(result.allowed && result.template.sans).toEqual([email(issued)]);
  });

  test.each([
    ['an address at another domain', 'alice@example.net', 'policy.email_not_allowed', 'sans.email.allow'],
    ['an address at a subdomain', 'alice@mail.example.com', 'policy.email_not_allowed', 'sans.email.allow'],
    ['a denied address', 'root@example.com', 'policy.san_denied', 'sans.email.deny.exact[0]'],
    [
      'an address with CR/LF',
      'alice@example.com\r\nBcc: x@example.com',
      'policy.email_invalid',
      'builtin.email_syntax',
    ],
    ['a quoted local part', '"alice"@example.com', 'policy.email_invalid', 'builtin.email_syntax'],
  ])('refuses %s', (_name, requested, code, rule) => {
    expect(outcome(policy, asking(email(requested)))).toEqual([[code, rule]]);
  });

  test('shows a CR/LF in a refused value escaped, never raw', () => {
    const result = run(policy, asking(email('alice@example.com\r\nBcc: x@example.com')));
    expect(result.allowed).toBe(false);
    if (!result.allowed) {
      expect(result.violations[0]?.value).toBe('alice@example.com\\r\\nBcc: x@example.com');
      expect(JSON.stringify(result)).not.toMatch(/\\r\\n(?!Bcc)/);
      for (const v of result.violations) expect(`${v.value}${v.message}`).not.toMatch(/[\r\n]/);
    }
  });
});

describe('URIs', () => {
  const policy = aPolicy({
    subject: { attributes: { CN: undefined } },
    sans: {
      dns: undefined,
      uri: {
        allow: [
          { scheme: 'spiffe', host: 'example.org', path: '/ns/*/sa/*' },
          { scheme: 'https', host: 'example.com', path: '/users/*' },
        ],
        deny: [{ scheme: 'spiffe', host: 'example.org', path: '/ns/kube-system/sa/*' }],
      },
    },
  });

  test.each([
    ['a SPIFFE ID matching the pattern', 'spiffe://example.org/ns/default/sa/web', 'sans.uri.allow[0]'],
    ['an https URI matching the pattern', 'https://example.com/users/alice', 'sans.uri.allow[1]'],
    ['an https URI with an upper-case host, lowered', 'https://EXAMPLE.com/users/alice', 'sans.uri.allow[1]'],
  ])('allows %s', (_name, requested, rule) => {
    const result = run(policy, asking(uri(requested)));
    expect(result.allowed).toBe(true);
    expect(result.decisions).toContainEqual(expect.objectContaining({ field: 'sans[0]', rule }));
  });

  test.each([
    [
      'a denied namespace',
      'spiffe://example.org/ns/kube-system/sa/dns',
      'policy.san_denied',
      'sans.uri.deny[0]',
    ],
    [
      'another trust domain',
      'spiffe://example.net/ns/default/sa/web',
      'policy.uri_not_allowed',
      'sans.uri.allow',
    ],
    [
      'a path one segment too long',
      'spiffe://example.org/ns/a/sa/b/c',
      'policy.uri_not_allowed',
      'sans.uri.allow',
    ],
    [
      'a host-only match (the step-ca mistake)',
      'spiffe://example.org/anything',
      'policy.uri_not_allowed',
      'sans.uri.allow',
    ],
    [
      'a port the rule does not name',
      'https://example.com:8443/users/alice',
      'policy.uri_not_allowed',
      'sans.uri.allow',
    ],
    ['userinfo', 'https://alice@example.com/users/alice', 'policy.uri_invalid', 'builtin.uri_syntax'],
    ['a fragment', 'https://example.com/users/alice#admin', 'policy.uri_invalid', 'builtin.uri_syntax'],
    ['spaces', 'https://example.com/users/al ice', 'policy.uri_invalid', 'builtin.uri_syntax'],
    [
      'an encoded way around the deny rule',
      'spiffe://example.org/ns/kube%2Dsystem/sa/dns',
      'policy.uri_invalid',
      'builtin.uri_syntax',
    ],
    [
      'a dot segment way around the deny rule',
      'spiffe://example.org/ns/x/../kube-system/sa/dns',
      'policy.uri_invalid',
      'builtin.uri_syntax',
    ],
  ])('refuses %s', (_name, requested, code, rule) => {
    expect(outcome(policy, asking(uri(requested)))).toEqual([[code, rule]]);
  });
});

describe('the number and kinds of SANs', () => {
  const policy = aPolicy({ sans: { max: 3, ip: { allow: ['192.0.2.0/24'], max: 1 } } });

  test.each([
    ['no SANs', [], [['policy.no_sans', 'sans.min']]],
    [
      'a SAN type the policy does not list',
      [email('alice@example.com')],
      [['policy.san_not_allowed', 'sans']],
    ],
    [
      'a SAN type that does not exist',
      [{ type: 'otherName', value: 'x' } as unknown as San],
      [['policy.san_not_allowed', 'builtin.san_types']],
    ],
    [
      'more SANs than sans.max',
      [dns('a.example.com'), dns('b.example.com'), dns('c.example.com'), dns('d.example.com')],
      [['policy.too_many_sans', 'sans.max']],
    ],
    [
      'more of one type than its max',
      [ip('192.0.2.1'), ip('192.0.2.2')],
      [['policy.too_many_sans', 'sans.ip.max']],
    ],
    [
      'the same name twice, differing in case',
      [dns('www.example.com'), dns('WWW.example.com')],
      [['policy.san_duplicate', 'builtin.no_duplicate_sans']],
    ],
    [
      'an IPv4 address and its IPv4-mapped form',
      [ip('192.0.2.1'), ip('::ffff:192.0.2.1')],
      [
        ['policy.san_duplicate', 'builtin.no_duplicate_sans'],
        ['policy.too_many_sans', 'sans.ip.max'],
      ].reverse(),
    ],
  ])('refuses %s', (_name, sans, expected) => {
    expect(outcome(policy, asking(...(sans as San[])))).toEqual(expected);
  });

  test('refuses 1,000 SANs, and still explains each name', () => {
    const sans = Array.from({ length: 1000 }, (_, i) => dns(`host-${i}.example.com`));
    const started = performance.now();
    const result = run(aPolicy(), asking(...sans));
    expect(performance.now() - started).toBeLessThan(2000);
    expect(result.allowed).toBe(false);
    if (!result.allowed)
      expect(result.violations.map((v) => [v.code, v.rule])).toEqual([['policy.too_many_sans', 'sans.max']]);
    expect(result.decisions.filter((d) => d.field.startsWith('sans['))).toHaveLength(1000);
  });

  test('examines at most 1,000 names of a larger request', () => {
    const sans = Array.from({ length: 5000 }, (_, i) => dns(`host-${i}.example.net`));
    const result = run(aPolicy(), asking(...sans));
    expect(result.allowed).toBe(false);
    if (!result.allowed) expect(result.violations.length).toBe(1001);
  });
});

describe('the subject', () => {
  test.each<[string, Patch, SubjectAttribute[], San[], [string, string][]]>([
    [
      'a CN that is not among the SANs',
      {},
      [cn('other.example.com')],
      [dns('www.example.com')],
      [['policy.cn_not_in_sans', 'subject.cn_not_in_sans']],
    ],
    [
      'a CN and no SANs',
      {},
      [cn('www.example.com')],
      [],
      [
        ['policy.no_sans', 'sans.min'],
        ['policy.cn_not_in_sans', 'subject.cn_not_in_sans'],
      ],
    ],
    [
      'an attribute the policy does not list',
      {},
      [{ type: 'O', value: 'Example Corp' }],
      [dns('example.com')],
      [['policy.subject_attribute_not_allowed', 'subject.attributes']],
    ],
    [
      'a value other than the fixed one',
      { subject: { attributes: { O: { fixed: 'Example Corp' } } } },
      [{ type: 'O', value: 'Evil Corp' }],
      [dns('example.com')],
      [['policy.subject_attribute_mismatch', 'subject.attributes.O.fixed']],
    ],
    [
      'a value outside the pattern',
      { subject: { attributes: { OU: { pattern: '[a-z]+' } } } },
      [{ type: 'OU', value: 'Ops Team' }],
      [dns('example.com')],
      [['policy.subject_attribute_mismatch', 'subject.attributes.OU.pattern']],
    ],
    [
      'a pattern that would match only part of the value',
      { subject: { attributes: { OU: { pattern: 'ops' } } } },
      [{ type: 'OU', value: 'ops-and-admins' }],
      [dns('example.com')],
      [['policy.subject_attribute_mismatch', 'subject.attributes.OU.pattern']],
    ],
    [
      'a missing required attribute',
      { subject: { attributes: { OU: { required: true } } } },
      [],
      [dns('example.com')],
      [['policy.subject_attribute_required', 'subject.attributes.OU.required']],
    ],
    [
      'a repeated attribute',
      { subject: { attributes: { OU: {} } } },
      [
        { type: 'OU', value: 'a' },
        { type: 'OU', value: 'b' },
      ],
      [dns('example.com')],
      [['policy.subject_attribute_repeated', 'subject.attributes.OU.multiple']],
    ],
    [
      'a CN with a line break',
      {},
      [cn('www.example.com\nO=Evil')],
      [dns('www.example.com')],
      [['policy.subject_attribute_invalid', 'builtin.subject_syntax']],
    ],
    [
      'a three-letter country',
      { subject: { attributes: { C: {} } } },
      [{ type: 'C', value: 'USA' }],
      [dns('example.com')],
      [['policy.subject_attribute_invalid', 'builtin.subject_syntax']],
    ],
    [
      'a subject when the policy allows none',
      { subject: { attributes: { CN: undefined } } },
      [cn('www.example.com')],
      [dns('www.example.com')],
      [['policy.subject_attribute_not_allowed', 'subject.attributes']],
    ],
  ])('refuses %s', (_name, patch, subject, sans, expected) => {
    expect(outcome(aPolicy(patch), { subject, sans })).toEqual(expected);
  });

  test('never runs a pattern over an over-long value', () => {
    // (a+)+b backtracks exponentially; a 10,000-character value would hang the process.
    const policy = aPolicy({ subject: { attributes: { OU: { pattern: '(a+)+b' } } } });
    const started = performance.now();
    const result = run(policy, {
      subject: [{ type: 'OU', value: 'a'.repeat(10_000) }],
      sans: [dns('example.com')],
    });
    expect(performance.now() - started).toBeLessThan(500);
    expect(result.allowed || result.violations.map((v) => v.code)).toEqual([
      'policy.subject_attribute_invalid',
    ]);
  });

  test('accepts a CN that is a SAN in another case and writes it as the SAN', () => {
    const result = run(aPolicy(), { subject: [cn('WWW.Example.COM')], sans: [dns('www.example.com')] });
    expect(result.allowed && result.template.subject).toEqual([cn('www.example.com')]);
  });

  test('accepts a CN that is an IP SAN', () => {
    const policy = aPolicy({ sans: { ip: { allow: ['192.0.2.0/24'] } } });
    const result = run(policy, { subject: [cn('192.0.2.7')], sans: [ip('192.0.2.7')] });
    expect(result.allowed && result.template.subject).toEqual([cn('192.0.2.7')]);
  });

  test('drops a CN that is not among the SANs where the policy says so, and says so', () => {
    const policy = aPolicy({ subject: { cn_not_in_sans: 'drop' } });
    const result = run(policy, { subject: [cn('alice')], sans: [dns('www.example.com')] });
    expect(result.allowed && result.template.subject).toEqual([]);
    expect(result.decisions).toContainEqual(
      expect.objectContaining({ field: 'subject.CN', outcome: 'dropped', rule: 'subject.cn_not_in_sans' }),
    );
  });

  test('adds fixed attributes and orders the subject from country to common name', () => {
    const policy = aPolicy({
      subject: {
        attributes: { CN: {}, O: { fixed: 'Example Corp' }, C: { fixed: 'US' }, OU: { multiple: true } },
      },
    });
    const result = run(policy, {
      subject: [cn('www.example.com'), { type: 'OU', value: 'web' }, { type: 'OU', value: 'edge' }],
      sans: [dns('www.example.com')],
    });
    expect(result.allowed && result.template.subject).toEqual([
      { type: 'C', value: 'US' },
      { type: 'O', value: 'Example Corp' },
      { type: 'OU', value: 'web' },
      { type: 'OU', value: 'edge' },
      cn('www.example.com'),
    ]);
  });
});

describe('keys, validity and overrides', () => {
  test('refuses a key algorithm the policy does not list', () => {
    expect(outcome(aPolicy(), { keyAlgorithm: 'rsa-3072' })).toEqual([
      ['policy.key_algorithm_not_allowed', 'key_algorithms'],
    ]);
  });

  test.each([
    ['ecdsa-p256', ['digitalSignature']],
    ['ed25519', ['digitalSignature']],
    ['rsa-2048', ['digitalSignature', 'keyEncipherment']],
  ])('writes only the key usages a %s key can have', (keyAlgorithm, keyUsage) => {
    const result = run(aPolicy(), { keyAlgorithm });
    expect(result.allowed && result.template.keyUsage).toEqual(keyUsage);
  });

  test('refuses a key for which no key usage of the policy is valid', () => {
    const policy = aPolicy({ key_usage: ['keyEncipherment'] });
    expect(outcome(policy, { keyAlgorithm: 'ed25519' })).toEqual([
      ['policy.key_usage_incompatible', 'key_usage'],
    ]);
  });

  test('issues for the default validity with the backdate', () => {
    const result = run(aPolicy());
    expect(result.allowed && [result.template.validitySeconds, result.template.backdateSeconds]).toEqual([
      30 * 86_400,
      60,
    ]);
  });

  const overridable = aPolicy({ overrides: { validity: true, sans: true } });
  test.each([
    ['a validity within bounds', 'P7D', 'allowed'],
    ['the maximum validity', 'P90D', 'allowed'],
    ['a validity over the maximum', 'P91D', [['policy.validity_too_long', 'validity.max']]],
    ['a validity under the minimum', 'PT30M', [['policy.validity_too_short', 'validity.min']]],
    ['a validity in months', 'P1M', [['policy.validity_invalid', 'builtin.duration_syntax']]],
    ['a Go-style validity', '168h', [['policy.validity_invalid', 'builtin.duration_syntax']]],
  ])('answers %s', (_name, validity, expected) => {
    expect(outcome(overridable, {}, { overrides: { validity } })).toEqual(expected);
  });

  test('uses the requested validity', () => {
    const result = run(overridable, {}, { overrides: { validity: 'P7D' } });
    expect(result.allowed && result.template.validitySeconds).toBe(7 * 86_400);
  });

  test('refuses overrides the policy does not allow', () => {
    expect(
      outcome(aPolicy(), {}, { overrides: { validity: 'P7D', sans: [dns('api.example.com')] } }),
    ).toEqual([
      ['policy.override_not_allowed', 'overrides.validity'],
      ['policy.override_not_allowed', 'overrides.sans'],
    ]);
  });

  test("uses the request's SANs instead of the CSR's where the policy allows it", () => {
    const result = run(
      overridable,
      { subject: [], sans: [dns('ignored.example.net')] },
      { overrides: { sans: [dns('api.example.com')] } },
    );
    expect(result.allowed && result.template.sans).toEqual([dns('api.example.com')]);
    expect(result.decisions).toContainEqual(
      expect.objectContaining({ field: 'overrides.sans[0]', outcome: 'allowed' }),
    );
  });
});

describe('requested extensions', () => {
  const bc = (cA: boolean) => AsnConvert.serialize(new BasicConstraints({ cA }));
  const ku = (flags: number) => AsnConvert.serialize(new KeyUsage(flags));
  const eku = (...oids: string[]) => AsnConvert.serialize(new ExtendedKeyUsage(oids));

  test.each<[string, Partial<ParsedCsr>, Patch, [string, string][] | 'allowed']>([
    [
      'CA:TRUE in basicConstraints',
      { requestedCa: true, extensions: [extension('2.5.29.19', bc(true), true)] },
      {},
      [['policy.ca_requested', 'builtin.no_ca']],
    ],
    [
      'CA:TRUE reported without its extension',
      { requestedCa: true },
      {},
      [['policy.ca_requested', 'builtin.no_ca']],
    ],
    [
      'CA:TRUE in the extension even if not reported',
      { extensions: [extension('2.5.29.19', bc(true))] },
      {},
      [['policy.ca_requested', 'builtin.no_ca']],
    ],
    ['CA:FALSE', { requestedCa: false, extensions: [extension('2.5.29.19', bc(false))] }, {}, 'allowed'],
    [
      'a basicConstraints that does not parse',
      { extensions: [extension('2.5.29.19', new Uint8Array([1, 2, 3]))] },
      {},
      [['policy.ca_requested', 'builtin.no_ca']],
    ],
    [
      'keyCertSign',
      { extensions: [extension('2.5.29.15', ku(KeyUsageFlags.keyCertSign))] },
      {},
      [['policy.ca_requested', 'builtin.no_ca']],
    ],
    [
      'cRLSign',
      { extensions: [extension('2.5.29.15', ku(KeyUsageFlags.digitalSignature | KeyUsageFlags.cRLSign))] },
      {},
      [['policy.ca_requested', 'builtin.no_ca']],
    ],
    [
      'an ordinary key usage',
      { extensions: [extension('2.5.29.15', ku(KeyUsageFlags.digitalSignature))] },
      {},
      'allowed',
    ],
    [
      'anyExtendedKeyUsage',
      { requestedEku: ['2.5.29.37.0'], extensions: [extension('2.5.29.37', eku('2.5.29.37.0'))] },
      {},
      [['policy.eku_not_allowed', 'builtin.no_any_eku']],
    ],
    [
      'a key purpose outside the policy',
      { requestedEku: ['1.3.6.1.5.5.7.3.2'] },
      {},
      [['policy.eku_not_allowed', 'extended_key_usage']],
    ],
    ["the policy's key purpose", { requestedEku: ['1.3.6.1.5.5.7.3.1'] }, {}, 'allowed'],
    [
      'a subject key identifier',
      { extensions: [extension('2.5.29.14', new Uint8Array([4, 1, 0]))] },
      {},
      'allowed',
    ],
    [
      'must-staple',
      { extensions: [extension('1.3.6.1.5.5.7.1.24', new Uint8Array([0x30, 3, 2, 1, 5]))] },
      {},
      'allowed',
    ],
    [
      'an extension the policy does not pass through',
      { extensions: [extension('1.2.3.4', new Uint8Array([5, 0]))] },
      {},
      [['policy.extension_not_allowed', 'extensions.passthrough']],
    ],
    [
      'an extension the policy ignores',
      { extensions: [extension('1.2.3.4', new Uint8Array([5, 0]))] },
      { extensions: { others: 'ignore' } },
      'allowed',
    ],
    [
      'the same extension twice',
      {
        extensions: [
          extension('1.2.3.4', new Uint8Array([5, 0])),
          extension('1.2.3.4', new Uint8Array([5, 0])),
        ],
      },
      { extensions: { passthrough: ['1.2.3.4'] } },
      [['policy.extension_not_allowed', 'builtin.unique_extensions']],
    ],
  ])('answers a CSR asking for %s', (_name, csr, patch, expected) => {
    expect(outcome(aPolicy(patch), csr)).toEqual(expected);
  });

  test('copies a passed-through extension into the template unchanged', () => {
    const requested = extension('1.2.3.4', new Uint8Array([5, 0]), true);
    const result = run(aPolicy({ extensions: { passthrough: ['1.2.3.4'] } }), { extensions: [requested] });
    expect(result.allowed && result.template.passthroughExtensions).toEqual([requested]);
  });

  test('leaves out an ignored extension and says so', () => {
    const result = run(aPolicy({ extensions: { others: 'ignore' } }), {
      extensions: [extension('1.2.3.4', new Uint8Array([5, 0]))],
    });
    expect(result.allowed && result.template.passthroughExtensions).toEqual([]);
    expect(result.decisions).toContainEqual(
      expect.objectContaining({ field: 'extensions[1.2.3.4]', outcome: 'ignored' }),
    );
  });
});

describe('requesters', () => {
  test('refuses a credential not bound to the policy, and records who asked', () => {
    const result = run(
      aPolicy({}, 'web-server'),
      {},
      { requester: { id: 'key-7', policies: ['client-mtls'] } },
    );
    expect(result.allowed).toBe(false);
    expect(result.requester).toBe('key-7');
    if (!result.allowed) {
      expect(result.violations.map((v) => [v.code, v.rule])).toEqual([
        ['policy.requester_not_bound', 'requester.policies'],
      ]);
    }
  });

  test.each([
    ['bound by name', ['client-mtls', 'web-server']],
    ['bound to every policy', '*' as const],
  ])('allows a credential %s', (_name, policies) => {
    const result = run(aPolicy({}, 'web-server'), {}, { requester: { id: 'key-8', policies } });
    expect(result.allowed).toBe(true);
    expect(result.requester).toBe('key-8');
  });
});

describe('the whole answer', () => {
  test('an allowed request yields the complete template', () => {
    const policy = aPolicy(
      {
        certificate_policies: ['1.3.6.1.4.1.55555.1'],
        ocsp_must_staple: true,
        extended_key_usage: ['serverAuth', 'clientAuth'],
      },
      'web',
    );
    const csr = aCsr();
    const result = evaluate({ policy, csr, requester: anyone });
    expect(result).toMatchObject({ allowed: true, policy: 'web', requester: 'key-test' });
    if (result.allowed) {
      expect(result.template).toEqual({
        policy: 'web',
        issuer: 'dev-intermediate',
        subject: [cn('www.example.com')],
        sans: [dns('www.example.com')],
        publicKey: csr.publicKey,
        keyAlgorithm: 'ecdsa-p256',
        validitySeconds: 30 * 86_400,
        backdateSeconds: 60,
        keyUsage: ['digitalSignature'],
        extendedKeyUsage: ['serverAuth', 'clientAuth'],
        policyOids: ['1.3.6.1.4.1.55555.1'],
        ocspMustStaple: true,
        passthroughExtensions: [],
      });
    }
  });

  test('a refusal lists every violation, not just the first', () => {
    const result = run(
      aPolicy({}, 'web-server'),
      {
        keyAlgorithm: 'rsa-1024',
        subject: [cn('other.example.com'), { type: 'O', value: 'x' }],
        sans: [dns('*.example.com'), ip('192.0.2.1'), dns('evil.example.net')],
        requestedCa: true,
      },
      { requester: { id: 'k', policies: [] } },
    );
    expect(result.allowed).toBe(false);
    if (!result.allowed) {
      expect(result.violations.map((v) => v.code).sort()).toEqual(
        [
          'policy.requester_not_bound',
          'policy.key_algorithm_not_allowed',
          'policy.wildcard_not_allowed',
          'policy.san_not_allowed',
          'policy.dns_not_allowed',
          'policy.cn_not_in_sans',
          'policy.subject_attribute_not_allowed',
          'policy.ca_requested',
        ].sort(),
      );
      for (const violation of result.violations) {
        expect(violation.rule.length).toBeGreaterThan(0);
        expect(violation.message).toMatch(/^[A-Z'].*\.$/);
      }
    }
  });
});
