import type { San } from '../x509/types.ts';

/**
 * The issuing core's contract with its callers (api, cli). Implemented in ca.ts by
 * `createCertificateAuthority`; every failure a caller handles is an AppError with a stable code:
 * csr.* (400), request.* (400), policy.unknown (400), policy.* refusals (403 with `violations`),
 * hsm/database unavailability (503), ca.misissuance (500, logged, nothing returned).
 */

/** Who asked: an API key, an mTLS client certificate, a local CLI operator or an ACME account. */
export interface Requester {
  /** Stable id recorded with every decision (api key id, certificate subject, `cli:<user>`, `acme:<directory>:<account>`). */
  id: string;
  kind: 'apikey' | 'mtls' | 'cli' | 'acme' | 'certificate';
  /** Policies this credential may use; '*' for all (admin, local CLI). */
  policies: string[] | '*';
}

export interface IssueInput {
  /** PKCS#10, PEM or DER. */
  csr: string | Uint8Array;
  policy: string;
  /** Fields the policy lets a request override (API body instead of the CSR). */
  overrides?: { sans?: San[]; validity?: string };
  requester: Requester;
  /**
   * The Idempotency-Key request this issuance answers: the certificate is linked to its record in
   * the transaction that stores it, so a retry after a crash finds it (issue #17).
   */
  idempotency?: { credentialId: string; key: string };
}

/**
 * A renewal (issue #32): a new certificate for the names of one the CA issued, under its policy
 * as the policy is now. The caller has checked that the requester holds the certificate's key.
 */
export interface RenewInput {
  /** The certificate renewed, DER, as stored. */
  certificate: Uint8Array;
  /** Its serial, recorded with the new certificate's audit event. */
  serial: string;
  /** A PKCS#10 CSR for a new key (re-key); absent, the new certificate certifies the same key. */
  csr?: string | Uint8Array;
  policy: string;
  requester: Requester;
}

export interface IssuedCertificate {
  /** Lowercase hex of the INTEGER content octets (DESIGN.md "Serials"). */
  serialNumber: string;
  certificateDer: Uint8Array;
  certificatePem: string;
  /** The intermediates from the issuer up to, not including, the root (DESIGN.md). */
  chainPem: string[];
  notBefore: Date;
  notAfter: Date;
  policy: string;
  issuer: string;
}

/** One requested name (or other requested field) and the rule that allowed or refused it. */
export interface EvaluationDecision {
  field: string;
  value: string;
  allowed: boolean;
  rule: string;
  code?: string;
  message: string;
}

export interface EvaluationResult {
  allowed: boolean;
  policy: string;
  decisions: EvaluationDecision[];
  violations: { code: string; field: string; value: string; rule: string; message: string }[];
}

export interface CertificateAuthority {
  issue(input: IssueInput): Promise<IssuedCertificate>;
  /**
   * A certificate already issued and stored, as issue() returned it: for the retry of an
   * idempotent request whose first attempt stored it. Null when none is stored under the serial.
   */
  stored(serial: string): Promise<IssuedCertificate | null>;
  /** A new certificate for the same names; refusals as for issue(). */
  renew(input: RenewInput): Promise<IssuedCertificate>;
  /** The dry run: evaluates the CSR against the policy, signs nothing. */
  evaluate(input: IssueInput): Promise<EvaluationResult>;
}
