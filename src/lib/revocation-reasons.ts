/**
 * RFC 5280 §5.3.1 CRLReason: the names Signet accepts (DESIGN.md "Revocation reasons") and their
 * ENUMERATED codes. certificateHold (6) and removeFromCRL (8) are not supported: Signet's
 * revocations are permanent. Code 7 is unassigned. The one list every layer uses.
 */
export const REVOCATION_REASONS = [
  'unspecified',
  'keyCompromise',
  'cACompromise',
  'affiliationChanged',
  'superseded',
  'cessationOfOperation',
  'privilegeWithdrawn',
  'aACompromise',
] as const;
export type RevocationReason = (typeof REVOCATION_REASONS)[number];

/** CRLReason ::= ENUMERATED (RFC 5280 §5.3.1). */
export const REASON_CODES: Readonly<Record<RevocationReason, number>> = {
  unspecified: 0,
  keyCompromise: 1,
  cACompromise: 2,
  affiliationChanged: 3,
  superseded: 4,
  cessationOfOperation: 5,
  privilegeWithdrawn: 9,
  aACompromise: 10,
};

export const isRevocationReason = (value: unknown): value is RevocationReason =>
  typeof value === 'string' && (REVOCATION_REASONS as readonly string[]).includes(value);
