/**
 * Builders with sane defaults for policy tests: each test changes one field.
 */

import { stringify } from 'yaml';
import { formatPolicyError, parsePolicy, parsePolicyValue } from '../../src/policy/load.ts';
import type { Policy, PolicyError, Requester } from '../../src/policy/types.ts';
import type { ParsedCsr } from '../../src/x509/types.ts';

export function aCsr(overrides: Partial<ParsedCsr> = {}): ParsedCsr {
  return {
    der: new Uint8Array([0x30, 0x00]),
    sha256: '00'.repeat(32),
    subject: [{ type: 'CN', value: 'www.example.com' }],
    sans: [{ type: 'dns', value: 'www.example.com' }],
    publicKey: new Uint8Array([0x30, 0x59]),
    keyAlgorithm: 'ecdsa-p256',
    extensions: [],
    ...overrides,
  };
}

export const anyone: Requester = { id: 'key-test', policies: '*' };

/** A small web-server-like policy; `aPolicy(patch)` merges the patch into it. */
export const BASE_POLICY = {
  issuer: 'dev-intermediate',
  validity: { default: 'P30D', max: 'P90D', min: 'PT1H', backdate: 'PT1M' },
  key_algorithms: ['ecdsa-p256', 'ecdsa-p384', 'rsa-2048', 'ed25519'],
  subject: { attributes: { CN: {} } },
  sans: {
    dns: { allow: { exact: ['example.com'], subdomains_of: ['example.com'] } },
  },
  extended_key_usage: ['serverAuth'],
};

export type Patch = { [key: string]: unknown };

/** Objects merge key by key; anything else (lists included) replaces; undefined removes the key. */
export function merge(base: unknown, patch: unknown): unknown {
  if (!isObject(base) || !isObject(patch)) return patch;
  const out: Record<string, unknown> = { ...base };
  for (const [key, value] of Object.entries(patch)) {
    if (value === undefined) delete out[key];
    else out[key] = merge(out[key], value);
  }
  return out;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

export function policyYaml(patch: Patch = {}): string {
  return stringify(merge(BASE_POLICY, patch), { aliasDuplicateObjects: false });
}

export function aPolicy(patch: Patch = {}, name = 'test'): Policy {
  const result = parsePolicy({ text: policyYaml(patch), file: `policies/${name}.yaml`, name });
  if (!result.ok)
    throw new Error(`test policy is invalid:\n${result.errors.map(formatPolicyError).join('\n')}`);
  return result.policy;
}

/** As aPolicy, without the YAML round trip (several times faster, for property tests). */
export function aPolicyValue(patch: Patch = {}, name = 'test'): Policy {
  const result = parsePolicyValue({ value: merge(BASE_POLICY, patch), file: `policies/${name}.yaml`, name });
  if (!result.ok)
    throw new Error(`test policy is invalid:\n${result.errors.map(formatPolicyError).join('\n')}`);
  return result.policy;
}

/** The errors for a policy text; fails the test if the policy loads. */
export function errorsOf(text: string, name = 'test'): PolicyError[] {
  const result = parsePolicy({ text, file: `policies/${name}.yaml`, name });
  if (result.ok) throw new Error('expected the policy to be refused, but it loaded');
  return result.errors;
}
