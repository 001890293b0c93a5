/**
 * The rule engine: parses a TBSCertificate once and runs every rule that applies to the profile.
 * It yields findings only; an issuance token comes from lintCertificate in src/issuance/token.ts.
 */

import type { IssuerContext } from '../x509/issuer.ts';
import { LintParseError, parseTbsForLint } from './certificate.ts';
import { RULES } from './rules/index.ts';
import type { LintContext, LintFinding, LintProfile, LintRule } from './types.ts';

export interface LintOptions {
  /** The CA that will sign (for a root: createSelfIssuerContext of the root itself). */
  issuer: IssuerContext;
  profile: LintProfile;
  /** Set by private policies that issue for internal names (BR §4.2.2 otherwise forbids them). */
  allowInternalNames?: boolean;
}

const RULE_BY_ID = new Map(RULES.map((rule) => [rule.id, rule]));

function finding(rule: LintRule, message: string): LintFinding {
  return { rule: rule.id, severity: rule.severity, message, citation: rule.citation };
}

/** Runs the rules; every finding, errors first in rule order. Never throws for a bad certificate. */
export function runLint(tbsDer: Uint8Array, options: LintOptions): LintFinding[] {
  let certificate: ReturnType<typeof parseTbsForLint>;
  try {
    certificate = parseTbsForLint(tbsDer);
  } catch (error) {
    if (error instanceof LintParseError) return [finding(RULE_BY_ID.get(error.rule)!, error.message)];
    throw error;
  }
  const context: LintContext = {
    issuer: options.issuer,
    profile: options.profile,
    allowInternalNames: options.allowInternalNames ?? false,
  };
  const findings: LintFinding[] = [];
  for (const rule of RULES) {
    if (!rule.profiles.includes(options.profile)) continue;
    let result: string[] | string | undefined;
    try {
      result = rule.check(certificate, context);
    } catch (error) {
      // A value a rule cannot even decode breaks that rule.
      result = `could not be checked: ${(error as Error).message}`;
    }
    const messages = result === undefined ? [] : typeof result === 'string' ? [result] : result;
    for (const message of messages) findings.push(finding(rule, message));
  }
  return findings;
}

export { RULES };
