/**
 * The shapes of the policy engine: a validated policy, what may ask for it, and the answer.
 */

import type {
  CertificateTemplate,
  KeyUsageName,
  PublicKeyAlgorithmName,
  San,
  SanType,
  SubjectAttributeType,
} from '../x509/types.ts';
import type { PolicyViolationCode } from './codes.ts';
import type { Cidr } from './ip.ts';
import type { PathPattern } from './uri.ts';

export interface SubjectAttributeRule {
  required: boolean;
  /** The value the certificate carries; a request may omit it or repeat it exactly. */
  fixed?: string;
  /** A full-match regular expression (Unicode mode) the value must match. */
  pattern?: RegExp;
  /** Whether the attribute may appear more than once (e.g. several OUs). */
  multiple: boolean;
}

export interface UriRule {
  scheme: string;
  host: string;
  port?: number;
  path: PathPattern;
}

export interface NameList {
  exact: string[];
  /** Names strictly below each entry. */
  subdomainsOf: string[];
}

export interface Policy {
  /** From the file name: policies/web-server.yaml is `web-server`. */
  name: string;
  description: string;
  issuer: string;
  validity: { defaultSeconds: number; minSeconds: number; maxSeconds: number; backdateSeconds: number };
  keyAlgorithms: PublicKeyAlgorithmName[];
  subject: {
    attributes: Partial<Record<SubjectAttributeType, SubjectAttributeRule>>;
    cnNotInSans: 'refuse' | 'drop';
  };
  sans: {
    min: number;
    max: number;
    dns?: {
      allow: NameList;
      /** Each entry denies that name and every name below it. */
      deny: string[];
      wildcards: boolean;
      maxLabels: number;
      max?: number;
    };
    ip?: { allow: Cidr[]; deny: Cidr[]; max?: number };
    email?: {
      allow: { exact: string[]; domains: string[] };
      deny: { exact: string[]; domains: string[] };
      max?: number;
    };
    uri?: { allow: UriRule[]; deny: UriRule[]; max?: number };
  };
  extensions: { passthrough: string[]; others: 'refuse' | 'ignore' };
  keyUsage: KeyUsageName[];
  /** Names (serverAuth...) and dotted OIDs, as the template carries them. */
  extendedKeyUsage: string[];
  certificatePolicies: string[];
  ocspMustStaple: boolean;
  overrides: { sans: boolean; validity: boolean };
  /** Where the policy came from: the file and the line of each key path ('sans.dns.allow.exact[0]'). */
  source: { file: string; lines: Record<string, number> };
  /** The validated document with defaults filled in, as the API shows a policy. */
  document: unknown;
}

/** One problem in a policy file: `policies/web-server.yaml:12 sans.dns.allow.exact[2]: ...`. */
export interface PolicyError {
  file: string;
  /** 1-based; absent when the problem is with the file as a whole. */
  line?: number;
  column?: number;
  /** The key path, e.g. `sans.dns.allow.exact[2]`; '' for the whole document. */
  path: string;
  message: string;
}

/** Who asked: a credential and the policies it is bound to. */
export interface Requester {
  id: string;
  policies: readonly string[] | '*';
}

export interface RequestOverrides {
  /** SANs from the API body, replacing the CSR's. */
  sans?: San[];
  /** An ISO 8601 duration (PT1H, P30D) replacing the policy's default validity. */
  validity?: string;
}

export interface Violation {
  code: PolicyViolationCode;
  /** What in the request: `sans[2]`, `subject.CN`, `validity`, `keyAlgorithm`, `extensions[1.2.3]`. */
  field: string;
  /** The offending value as requested (control characters escaped). */
  value: string;
  /** The policy key path that refused it (`sans.dns.deny[0]`) or a built-in rule (`builtin.dns_syntax`). */
  rule: string;
  /** A sentence a person understands. */
  message: string;
}

/** One line of the explanation: how each requested name (and each other choice) was decided. */
export interface Decision {
  field: string;
  /** The SAN type, or 'subject' / 'extension' / 'validity' / 'key' / 'requester'. */
  kind: SanType | 'subject' | 'extension' | 'validity' | 'key' | 'requester';
  value: string;
  outcome: 'allowed' | 'refused' | 'dropped' | 'ignored';
  rule: string;
  reason: string;
}

export type Evaluation =
  | { allowed: true; policy: string; requester: string; template: CertificateTemplate; decisions: Decision[] }
  | { allowed: false; policy: string; requester: string; violations: Violation[]; decisions: Decision[] };
