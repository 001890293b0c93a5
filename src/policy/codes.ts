/**
 * Every code a policy refusal can carry. Stable: clients match on them and openapi.yaml lists
 * them, so a code is added, never renamed or reused. Each entry says when it is given.
 */
export const POLICY_VIOLATIONS = {
  'policy.requester_not_bound': 'the credential that asked is not bound to this policy',
  'policy.key_algorithm_not_allowed': "the CSR's key algorithm is not in key_algorithms",
  'policy.key_usage_incompatible': "none of the policy's key_usage bits is valid for the CSR's key type",
  'policy.validity_invalid': 'the requested validity is not an ISO 8601 duration Signet accepts',
  'policy.validity_too_long': 'the requested validity is longer than validity.max',
  'policy.validity_too_short': 'the requested validity is shorter than validity.min',
  'policy.override_not_allowed': 'the request overrides a field the policy does not let it override',
  'policy.no_sans': 'the request has fewer SANs than sans.min',
  'policy.too_many_sans': 'the request has more SANs than sans.max or sans.<type>.max',
  'policy.san_duplicate': 'the same SAN is requested twice',
  'policy.san_not_allowed': 'the policy allows no SAN of this type',
  'policy.san_denied': 'a deny rule matches the SAN (deny wins over allow)',
  'policy.dns_name_invalid': 'the DNS name is not a valid hostname in A-label form',
  'policy.dns_not_allowed': 'no allow rule covers the DNS name',
  'policy.dns_too_many_labels': 'the DNS name has more labels than sans.dns.max_labels',
  'policy.wildcard_not_allowed': 'the DNS name is a wildcard the policy does not allow',
  'policy.ip_invalid': 'the IP address is not a valid IPv4 or IPv6 address',
  'policy.ip_not_allowed': 'no allowed CIDR block holds the IP address',
  'policy.email_invalid': 'the email address is not a valid mailbox',
  'policy.email_not_allowed': 'no allow rule covers the email address',
  'policy.uri_invalid':
    'the URI is not one Signet accepts (absolute, with a host, no userinfo, query or fragment)',
  'policy.uri_not_allowed': 'no allow rule matches the URI',
  'policy.subject_attribute_not_allowed': 'the subject has an attribute the policy does not list',
  'policy.subject_attribute_required': 'the subject lacks an attribute the policy requires',
  'policy.subject_attribute_mismatch': "a subject attribute differs from the policy's fixed value or pattern",
  'policy.subject_attribute_repeated':
    'a subject attribute appears more than once where the policy allows one',
  'policy.subject_attribute_invalid':
    'a subject attribute value is empty, too long or has control characters',
  'policy.cn_not_in_sans': 'the common name is not one of the SANs',
  'policy.extension_not_allowed': 'the CSR requests an extension the policy does not pass through',
  'policy.ca_requested': 'the CSR asks to be a CA (basicConstraints CA:TRUE or keyCertSign/cRLSign)',
  'policy.eku_not_allowed':
    "the CSR requests an extended key usage outside the policy's (or anyExtendedKeyUsage)",
} as const;

export type PolicyViolationCode = keyof typeof POLICY_VIOLATIONS;

/** The codes alone, in a stable order, for openapi.yaml and clients. */
export const POLICY_VIOLATION_CODES = Object.keys(POLICY_VIOLATIONS) as PolicyViolationCode[];
