/** The key usages a certificate may carry, by its key algorithm and the policy. */

import type { KeyUsageName } from '../../x509/types.ts';
import type { Policy } from '../types.ts';
import type { Decide } from './shared.ts';

/** Key usage bits each key type can honour. */
export const KEY_USAGE_FOR_KEY: { pattern: RegExp; allowed: KeyUsageName[]; cite: string }[] = [
  {
    pattern: /^ecdsa-/,
    allowed: ['digitalSignature', 'nonRepudiation', 'keyAgreement', 'keyCertSign', 'cRLSign'],
    cite: 'RFC 5480 §3',
  },
  {
    pattern: /^ed25519$/,
    allowed: ['digitalSignature', 'nonRepudiation', 'keyCertSign', 'cRLSign'],
    cite: 'RFC 8410 §5',
  },
  {
    pattern: /^rsa-/,
    allowed: [
      'digitalSignature',
      'nonRepudiation',
      'keyEncipherment',
      'dataEncipherment',
      'keyCertSign',
      'cRLSign',
    ],
    cite: 'RFC 3279 §2.3.1',
  },
];
export function keyUsageFor(policy: Policy, keyAlgorithm: string, decide: Decide): KeyUsageName[] {
  const family = KEY_USAGE_FOR_KEY.find(({ pattern }) => pattern.test(keyAlgorithm));
  if (!family) return [...policy.keyUsage];
  const kept: KeyUsageName[] = [];
  for (const usage of policy.keyUsage) {
    if (family.allowed.includes(usage)) {
      kept.push(usage);
      continue;
    }
    decide({
      field: 'keyUsage',
      kind: 'key',
      value: usage,
      outcome: 'dropped',
      rule: 'key_usage',
      reason: `${usage} is left out: ${keyAlgorithm} keys cannot be used for it (${family.cite})`,
    });
  }
  return kept;
}
