/**
 * Issuance policies (issue #7): load and validate policies/*.yaml, evaluate a CSR against one.
 * Pure: imports only src/x509 types and src/lib.
 */

export { POLICY_VIOLATION_CODES, POLICY_VIOLATIONS, type PolicyViolationCode } from './codes.ts';
export { type EvaluateInput, evaluate, evaluateNames } from './evaluate.ts';
export {
  formatKeyPath,
  formatPolicyError,
  loadPolicies,
  loadPolicyFile,
  PolicyLoadError,
  type PolicyResult,
  parsePolicy,
  parsePolicyValue,
  policyNameOf,
} from './load.ts';
export { createPolicyRegistry, type PolicyRegistry, type ReloadResult } from './registry.ts';
export type {
  Decision,
  Evaluation,
  Policy,
  PolicyError,
  Requester,
  RequestOverrides,
  Violation,
} from './types.ts';
