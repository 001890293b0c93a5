import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { POLICY_VIOLATION_CODES } from '../../src/policy/codes.ts';
import { evaluate } from '../../src/policy/evaluate.ts';
import { loadPolicies } from '../../src/policy/load.ts';
import { KNOWN_KEYS } from '../../src/policy/schema.ts';
import type { Policy } from '../../src/policy/types.ts';
import { parseCsr } from '../../src/x509/csr.ts';
import { hasTool } from '../helpers/tools.ts';
import { anyone } from './builders.ts';
import { createCsrFactory, type KeyKind, toParsedCsr } from './openssl-csr.ts';

const { policies, errors } = await loadPolicies('policies');

describe('the shipped example policies', () => {
  test('all load without errors', () => {
    expect(errors).toEqual([]);
    expect([...policies.keys()].sort()).toEqual(['client-mtls', 'spiffe-workload', 'web-server']);
  });

  test('use only the documentation names and ranges', () => {
    for (const policy of policies.values()) {
      const text = readFileSync(policy.source.file, 'utf8');
      for (const host of text.match(/\b[a-z0-9-]+\.(?:com|org|net)\b/g) ?? []) {
        expect(host, `${policy.name} mentions ${host}`).toMatch(/(^|\.)example\.(com|org|net)$/);
      }
    }
  });

  const readme = readFileSync('policies/README.md', 'utf8');
  test.each(POLICY_VIOLATION_CODES)('README documents the violation code %s', (code) => {
    expect(readme).toContain(`\`${code}\``);
  });
  test.each([...KNOWN_KEYS])('README documents the key %s', (key) => {
    expect(readme).toMatch(new RegExp(`\`(?:[a-z_.]+\\.)?${key}\``));
  });
});

const get = (name: string): Policy => {
  const policy = policies.get(name);
  if (!policy) throw new Error(`no policy ${name}`);
  return policy;
};

describe.skipIf(!hasTool('openssl', ['version']))('real CSRs made by openssl against the examples', () => {
  let csrs: ReturnType<typeof createCsrFactory>;
  beforeAll(() => {
    csrs = createCsrFactory();
  });
  afterAll(() => csrs.cleanup());

  const check = (policy: string, request: { key?: KeyKind; subject?: string; addext?: string[] }) =>
    evaluate({ policy: get(policy), csr: toParsedCsr(csrs.make(request)), requester: anyone });
  const codes = (result: ReturnType<typeof check>) =>
    result.allowed ? 'allowed' : result.violations.map((v) => v.code).sort();

  test.each<[string, string, { key?: KeyKind; subject?: string; addext?: string[] }, string | string[]]>([
    [
      'web-server',
      'a server with names and addresses',
      {
        subject: '/CN=www.example.com',
        addext: ['subjectAltName=DNS:www.example.com,DNS:example.com,IP:192.0.2.10,IP:2001:db8::10'],
      },
      'allowed',
    ],
    [
      'web-server',
      'an RSA key with the usual extensions',
      {
        key: 'rsa-2048',
        subject: '/CN=api.example.com/O=Example Corp',
        addext: [
          'subjectAltName=DNS:api.example.com',
          'keyUsage=digitalSignature,keyEncipherment',
          'extendedKeyUsage=serverAuth',
          'basicConstraints=CA:FALSE',
        ],
      },
      'allowed',
    ],
    [
      'web-server',
      'a wildcard one level down',
      { addext: ['subjectAltName=DNS:*.app.example.com'] },
      'allowed',
    ],
    [
      'web-server',
      'a wildcard that would cover the denied internal.example.com',
      { addext: ['subjectAltName=DNS:*.example.com'] },
      ['policy.san_denied'],
    ],
    [
      'web-server',
      'a name under another domain',
      { addext: ['subjectAltName=DNS:example.com.evil.net'] },
      ['policy.dns_not_allowed'],
    ],
    [
      'web-server',
      'an address outside the range',
      { addext: ['subjectAltName=IP:198.51.100.7'] },
      ['policy.ip_not_allowed'],
    ],
    [
      'web-server',
      'a CN that is not a SAN',
      { subject: '/CN=other.example.com', addext: ['subjectAltName=DNS:www.example.com'] },
      ['policy.cn_not_in_sans'],
    ],
    [
      'web-server',
      'a CA certificate',
      { addext: ['subjectAltName=DNS:www.example.com', 'basicConstraints=critical,CA:TRUE'] },
      ['policy.ca_requested'],
    ],
    [
      'web-server',
      'anyExtendedKeyUsage',
      { addext: ['subjectAltName=DNS:www.example.com', 'extendedKeyUsage=anyExtendedKeyUsage'] },
      ['policy.eku_not_allowed'],
    ],
    [
      'web-server',
      'keyCertSign',
      { addext: ['subjectAltName=DNS:www.example.com', 'keyUsage=digitalSignature,keyCertSign'] },
      ['policy.ca_requested'],
    ],
    [
      'web-server',
      'an email address',
      { addext: ['subjectAltName=DNS:www.example.com,email:alice@example.com'] },
      ['policy.san_not_allowed'],
    ],
    [
      'web-server',
      'no SANs at all',
      { subject: '/CN=www.example.com' },
      ['policy.cn_not_in_sans', 'policy.no_sans'],
    ],
    [
      'client-mtls',
      'a person with an email address and a URI',
      {
        subject: '/CN=alice/O=Example Corp/OU=payments',
        addext: ['subjectAltName=email:alice@example.com,URI:https://example.com/users/alice'],
      },
      'allowed',
    ],
    [
      'client-mtls',
      'a service URI several segments deep',
      { addext: ['subjectAltName=URI:https://example.com/services/billing/eu'] },
      'allowed',
    ],
    [
      'client-mtls',
      'an address at a subdomain',
      { addext: ['subjectAltName=email:alice@mail.example.com'] },
      ['policy.email_not_allowed'],
    ],
    [
      'client-mtls',
      'a denied address',
      { addext: ['subjectAltName=email:root@example.com'] },
      ['policy.san_denied'],
    ],
    [
      'client-mtls',
      'another organisation',
      { subject: '/O=Evil Corp', addext: ['subjectAltName=email:alice@example.com'] },
      ['policy.subject_attribute_mismatch'],
    ],
    [
      'client-mtls',
      'an OU outside the pattern',
      { subject: '/OU=Payments Team', addext: ['subjectAltName=email:alice@example.com'] },
      ['policy.subject_attribute_mismatch'],
    ],
    [
      'client-mtls',
      'server authentication',
      { addext: ['subjectAltName=email:alice@example.com', 'extendedKeyUsage=serverAuth'] },
      ['policy.eku_not_allowed'],
    ],
    [
      'client-mtls',
      'a URI with userinfo',
      { addext: ['subjectAltName=URI:https://alice@example.com/users/alice'] },
      ['policy.uri_invalid'],
    ],
    [
      'spiffe-workload',
      'a workload SVID',
      { addext: ['subjectAltName=URI:spiffe://example.org/ns/default/sa/web'] },
      'allowed',
    ],
    [
      'spiffe-workload',
      'an Ed25519 SVID',
      { key: 'ed25519', addext: ['subjectAltName=URI:spiffe://example.org/ns/default/sa/web'] },
      'allowed',
    ],
    [
      'spiffe-workload',
      'a DNS name beside the SPIFFE ID',
      { addext: ['subjectAltName=URI:spiffe://example.org/ns/default/sa/web,DNS:web.example.org'] },
      ['policy.san_not_allowed', 'policy.too_many_sans'],
    ],
    [
      'spiffe-workload',
      'two SPIFFE IDs',
      { addext: ['subjectAltName=URI:spiffe://example.org/ns/a/sa/b,URI:spiffe://example.org/ns/c/sa/d'] },
      ['policy.too_many_sans', 'policy.too_many_sans'],
    ],
    [
      'spiffe-workload',
      'a system namespace',
      { addext: ['subjectAltName=URI:spiffe://example.org/ns/kube-system/sa/coredns'] },
      ['policy.san_denied'],
    ],
    [
      'spiffe-workload',
      'another trust domain',
      { addext: ['subjectAltName=URI:spiffe://example.net/ns/default/sa/web'] },
      ['policy.uri_not_allowed'],
    ],
    [
      'spiffe-workload',
      'a subject',
      { subject: '/CN=web', addext: ['subjectAltName=URI:spiffe://example.org/ns/default/sa/web'] },
      ['policy.subject_attribute_not_allowed'],
    ],
    [
      'spiffe-workload',
      'an RSA key',
      { key: 'rsa-2048', addext: ['subjectAltName=URI:spiffe://example.org/ns/default/sa/web'] },
      ['policy.key_algorithm_not_allowed'],
    ],
  ])('%s: %s', (policy, _name, request, expected) => {
    const der = csrs.make(request);
    const viaAdapter = evaluate({ policy: get(policy), csr: toParsedCsr(der), requester: anyone });
    expect(codes(viaAdapter)).toEqual(expected);
    // The CA's own CSR intake must lead to the same decision as this independent reading.
    const viaIntake = evaluate({ policy: get(policy), csr: parseCsr(der), requester: anyone });
    expect(codes(viaIntake)).toEqual(expected);
  });

  test('client-mtls drops a user-name CN and fixes the organisation', () => {
    const result = check('client-mtls', {
      subject: '/CN=alice/OU=payments',
      addext: ['subjectAltName=email:alice@example.com'],
    });
    expect(result.allowed && result.template.subject).toEqual([
      { type: 'O', value: 'Example Corp' },
      { type: 'OU', value: 'payments' },
    ]);
  });

  test('spiffe-workload yields an empty subject, one URI and a one-hour life', () => {
    const result = check('spiffe-workload', {
      addext: ['subjectAltName=URI:spiffe://example.org/ns/default/sa/web'],
    });
    expect(result.allowed).toBe(true);
    if (result.allowed) {
      expect(result.template).toMatchObject({
        subject: [],
        sans: [{ type: 'uri', value: 'spiffe://example.org/ns/default/sa/web' }],
        validitySeconds: 3_600,
        extendedKeyUsage: ['serverAuth', 'clientAuth'],
        keyUsage: ['digitalSignature', 'keyAgreement'],
      });
    }
  });
});
