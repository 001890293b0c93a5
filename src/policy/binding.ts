/**
 * The one policy-binding check: a credential may use a policy it is bound to (or every policy,
 * `'*'`: admin keys, the local CLI). The API asks it before any work and the evaluator records it
 * as a decision; both refuse with the one code `policy.requester_not_bound`.
 */
export const REQUESTER_NOT_BOUND = 'policy.requester_not_bound';

export function isBoundToPolicy(policies: readonly string[] | '*', policy: string): boolean {
  return policies === '*' || policies.includes(policy);
}
