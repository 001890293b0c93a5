/**
 * Evaluating a request against a policy: a pure function of the policy, the parsed CSR, the
 * request's overrides and who asked. Nothing is allowed unless a rule allows it; a deny rule
 * wins over an allow rule; every problem is reported (not just the first), each with a stable
 * code, the field, the value, the rule that refused it and a sentence. Alongside, `decisions`
 * explains how each requested name and each other choice was decided, for the dry run.
 */

import { formatDuration, parseDuration } from '../lib/duration.ts';
import type { CertificateTemplate, ParsedCsr, San } from '../x509/types.ts';
import { isBoundToPolicy, REQUESTER_NOT_BOUND } from './binding.ts';
import { checkExtensions } from './checks/extensions.ts';
import { keyUsageFor } from './checks/key-usage.ts';
import { checkSans } from './checks/sans.ts';
import { shorten } from './checks/shared.ts';
import { checkSubject } from './checks/subject.ts';
import type { PolicyViolationCode } from './codes.ts';
import { printable } from './text.ts';
import type { Decision, Evaluation, Policy, Requester, RequestOverrides, Violation } from './types.ts';

export interface EvaluateInput {
  policy: Policy;
  csr: ParsedCsr;
  overrides?: RequestOverrides;
  requester: Requester;
}
// biome-ignore lint/complexity/noExcessiveLinesPerFunction: the evaluation in its documented order (requester, key, names, subject, extensions, validity); each step is a call
export function evaluate({ policy, csr, overrides, requester }: EvaluateInput): Evaluation {
  const violations: Violation[] = [];
  const decisions: Decision[] = [];
  const refuse = (code: PolicyViolationCode, field: string, value: string, rule: string, message: string) =>
    violations.push({ code, field, value: shorten(value), rule, message });
  const decide = (decision: Decision) => decisions.push({ ...decision, value: shorten(decision.value) });

  // Who asked.
  const bound = isBoundToPolicy(requester.policies, policy.name);
  decide({
    field: 'requester',
    kind: 'requester',
    value: requester.id,
    outcome: bound ? 'allowed' : 'refused',
    rule: 'requester.policies',
    reason: bound
      ? `the credential '${printable(requester.id)}' is bound to the policy '${policy.name}'`
      : `the credential '${printable(requester.id)}' is not bound to the policy '${policy.name}'`,
  });
  if (!bound) {
    refuse(
      REQUESTER_NOT_BOUND,
      'requester',
      requester.id,
      'requester.policies',
      `The credential '${printable(requester.id)}' may not use the policy '${policy.name}'.`,
    );
  }

  // The key.
  if (!policy.keyAlgorithms.includes(csr.keyAlgorithm)) {
    refuse(
      'policy.key_algorithm_not_allowed',
      'keyAlgorithm',
      csr.keyAlgorithm,
      'key_algorithms',
      `The key is ${printable(csr.keyAlgorithm)}; this policy accepts ${policy.keyAlgorithms.join(', ')}.`,
    );
  }
  const keyUsage = keyUsageFor(policy, csr.keyAlgorithm, decide);
  if (keyUsage.length === 0) {
    refuse(
      'policy.key_usage_incompatible',
      'keyAlgorithm',
      csr.keyAlgorithm,
      'key_usage',
      `None of the policy's key usages (${policy.keyUsage.join(', ')}) is valid for a ${printable(csr.keyAlgorithm)} key.`,
    );
  }

  // Validity.
  let validitySeconds = policy.validity.defaultSeconds;
  if (overrides?.validity !== undefined) {
    const requested = String(overrides.validity);
    const parsed = parseDuration(requested);
    if (!policy.overrides.validity) {
      refuse(
        'policy.override_not_allowed',
        'overrides.validity',
        requested,
        'overrides.validity',
        `This policy does not let a request choose its validity; it issues for ${formatDuration(validitySeconds)}.`,
      );
    } else if (!parsed.ok) {
      refuse(
        'policy.validity_invalid',
        'overrides.validity',
        requested,
        'builtin.duration_syntax',
        `${parsed.reason}.`,
      );
    } else if (parsed.seconds > policy.validity.maxSeconds) {
      refuse(
        'policy.validity_too_long',
        'overrides.validity',
        requested,
        'validity.max',
        `The requested validity ${requested} is longer than this policy's maximum, ${formatDuration(policy.validity.maxSeconds)}.`,
      );
    } else if (parsed.seconds < policy.validity.minSeconds) {
      refuse(
        'policy.validity_too_short',
        'overrides.validity',
        requested,
        'validity.min',
        `The requested validity ${requested} is shorter than this policy's minimum, ${formatDuration(policy.validity.minSeconds)}.`,
      );
    } else {
      validitySeconds = parsed.seconds;
    }
  }
  decide({
    field: 'validity',
    kind: 'validity',
    value: formatDuration(validitySeconds),
    outcome: 'allowed',
    rule:
      overrides?.validity !== undefined && validitySeconds !== policy.validity.defaultSeconds
        ? 'overrides.validity'
        : 'validity.default',
    reason: `the certificate is valid for ${formatDuration(validitySeconds)}, backdated by ${formatDuration(policy.validity.backdateSeconds)}`,
  });

  // SANs: from the CSR, or from the request body where the policy lets it override them.
  let requested: readonly San[] = Array.isArray(csr.sans) ? csr.sans : [];
  let sansField = 'sans';
  if (overrides?.sans !== undefined) {
    if (!policy.overrides.sans) {
      refuse(
        'policy.override_not_allowed',
        'overrides.sans',
        `${Array.isArray(overrides.sans) ? overrides.sans.length : 0} SANs`,
        'overrides.sans',
        'This policy does not let a request replace the SANs of its CSR.',
      );
    } else {
      requested = Array.isArray(overrides.sans) ? overrides.sans : [];
      sansField = 'overrides.sans';
    }
  }
  const checked = checkSans(policy, requested, sansField, refuse, decide);

  // Subject, once the SANs are known (the CN must be one of them).
  const subject = checkSubject(policy, csr.subject ?? [], checked, refuse, decide);

  // Requested extensions.
  const passthroughExtensions = checkExtensions(policy, csr, refuse, decide);

  if (violations.length > 0) {
    return { allowed: false, policy: policy.name, requester: requester.id, violations, decisions };
  }
  const template: CertificateTemplate = {
    policy: policy.name,
    issuer: policy.issuer,
    subject,
    sans: checked.map(({ san }) => san),
    publicKey: csr.publicKey,
    keyAlgorithm: csr.keyAlgorithm,
    validitySeconds,
    backdateSeconds: policy.validity.backdateSeconds,
    keyUsage,
    extendedKeyUsage: [...policy.extendedKeyUsage],
    policyOids: [...policy.certificatePolicies],
    ocspMustStaple: policy.ocspMustStaple,
    passthroughExtensions,
  };
  return { allowed: true, policy: policy.name, requester: requester.id, template, decisions };
}
/**
 * The names alone against the policy's SAN rules, as `evaluate` judges them: for an ACME newOrder
 * (RFC 8555 §7.4), which names identifiers before there is a CSR. `field` is `sans[i]`, the
 * index of the name in `sans`.
 */
export function evaluateNames(
  policy: Policy,
  sans: readonly San[],
): { violations: Violation[]; decisions: Decision[] } {
  const violations: Violation[] = [];
  const decisions: Decision[] = [];
  checkSans(
    policy,
    sans,
    'sans',
    (code, field, value, rule, message) =>
      violations.push({ code, field, value: shorten(value), rule, message }),
    (decision) => decisions.push({ ...decision, value: shorten(decision.value) }),
  );
  return { violations, decisions };
}
