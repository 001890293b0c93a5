import { createHash } from 'node:crypto';
import type { AuditEventInput, AuditRepository } from '../db/audit.repository.ts';
import type {
  CertificateIssuanceRepository,
  CertificateListingRepository,
  CertificateReservation,
} from '../db/certificates.repository.ts';
import type { IssuanceUnitOfWork, IssuedCertificateToStore } from '../db/issuance.unit-of-work.ts';
import { HsmError } from '../hsm/types.ts';
import { partitionUnavailable } from '../hsm/unavailable.ts';
import { lintCertificate, MisissuanceError, signCertificate } from '../issuance/token.ts';
import { createBatcher } from '../lib/batcher.ts';
import type { Clock } from '../lib/clock.ts';
import { AppError } from '../lib/errors.ts';
import { REQUESTER_NOT_BOUND } from '../policy/binding.ts';
import { evaluate } from '../policy/evaluate.ts';
import type { PolicyRegistry } from '../policy/registry.ts';
import type { Evaluation } from '../policy/types.ts';
import type { KeyBlocklist } from '../x509/blocklist.ts';
import { buildTbsCertificate, generateSerial } from '../x509/certificate.ts';
import { parseCsr, requestFromCertificate } from '../x509/csr.ts';
import { certificateToPem } from '../x509/pem.ts';
import type { CertificateTemplate, ParsedCsr } from '../x509/types.ts';
import type { IssuerSet, LoadedIssuer } from './issuers.ts';
import type {
  CertificateAuthority,
  EvaluationResult,
  IssuedCertificate,
  IssueInput,
  RenewInput,
} from './types.ts';

/**
 * The issuing core (DESIGN.md "ca/"): CSR intake -> policy -> prepare (TBS, lint, token) ->
 * reserve the serial as pending with the TBS hash -> issue(token): sign in the partition through
 * src/issuance, re-check, store with its audit event in one unit of work -> return. Nothing signs
 * without a passing lint (the token), and nothing is returned that is not stored and audited.
 * Database writes of concurrent issuances share transactions (group commit).
 */
export interface CertificateAuthorityOptions {
  clock: Clock;
  policies: PolicyRegistry;
  issuers: IssuerSet;
  certificates: Pick<CertificateIssuanceRepository, 'reservePendingMany' | 'markFailed'> &
    Pick<CertificateListingRepository, 'findBySerial'>;
  /** Stores a batch of signed certificates with their audit events and idempotency links. */
  store: IssuanceUnitOfWork;
  audit: Pick<AuditRepository, 'append'>;
  blocklist?: KeyBlocklist;
  maxCsrBytes?: number;
  /** Where misissuance and internal failures are reported (never to the client). */
  onInternalError?: (message: string, error: unknown) => void;
}

/** How many fresh serials an issuance tries before giving up on collisions (2^-136 each: never). */
const SERIAL_ATTEMPTS = 3;

// biome-ignore lint/complexity/noExcessiveLinesPerFunction: a factory: prepare, issue and their batchers share the core's repositories; each closure is short
export function createCertificateAuthority(options: CertificateAuthorityOptions): CertificateAuthority {
  const { clock, policies, issuers, certificates, audit } = options;

  const reservations = createBatcher<CertificateReservation, boolean>({
    flush: async (items) => {
      const { collided } = await certificates.reservePendingMany(items);
      const taken = new Set(collided);
      return items.map((item) => !taken.has(item.serial));
    },
  });
  // Storing a certificate, appending its audit event and linking it to its idempotent request
  // share one transaction per batch: all commit or none does, and a batch costs one commit.
  const stores = createBatcher<IssuedCertificateToStore, boolean>({
    flush: async (items) => {
      const { notStored } = await options.store.storeIssued(items);
      const failed = new Set(notStored);
      return items.map((item) => !failed.has(item.serial));
    },
  });
  const auditLog = createBatcher<AuditEventInput, void>({
    flush: async (events) => {
      await audit.append(events);
      return events.map(() => undefined);
    },
  });

  const csrOptions = {
    ...(options.maxCsrBytes ? { maxBytes: options.maxCsrBytes } : {}),
    ...(options.blocklist ? { blocklist: options.blocklist } : {}),
  };

  function intake(input: IssueInput): { csr: ParsedCsr; evaluation: Evaluation } {
    const csr = parseCsr(input.csr, csrOptions);
    return { csr, evaluation: evaluateRequest(input, csr) };
  }

  function evaluateRequest(input: Pick<IssueInput, 'policy' | 'overrides' | 'requester'>, csr: ParsedCsr) {
    const policy = policies.get(input.policy);
    if (!policy) {
      throw new AppError(
        'policy.unknown',
        'invalid',
        `there is no policy named ${JSON.stringify(input.policy)}`,
      );
    }
    return evaluate({
      policy,
      csr,
      ...(input.overrides ? { overrides: input.overrides } : {}),
      requester: { id: input.requester.id, policies: input.requester.policies },
    });
  }

  async function refuse(
    input: Pick<IssueInput, 'policy' | 'requester'>,
    evaluation: Extract<Evaluation, { allowed: false }>,
    action = 'certificate.issue',
  ): Promise<never> {
    const unbound = evaluation.violations.some((v) => v.code === REQUESTER_NOT_BOUND);
    await auditLog.submit({
      actor: input.requester.id,
      action,
      target: `policy:${input.policy}`,
      decision: 'denied',
      details: { policy: input.policy, violations: evaluation.violations.map((v) => v.code) },
    });
    if (unbound) {
      throw new AppError(
        REQUESTER_NOT_BOUND,
        'forbidden',
        `this credential may not use policy ${input.policy}`,
        { violations: evaluation.violations },
      );
    }
    throw new AppError(
      'policy.refused',
      'forbidden',
      `policy ${input.policy} refused the request: ${evaluation.violations.map((v) => v.message).join(' ')}`,
      { violations: evaluation.violations },
    );
  }

  function issuerFor(template: CertificateTemplate): LoadedIssuer {
    const issuer = issuers.get(template.issuer);
    if (!issuer) {
      throw new AppError(
        'ca.issuer_unavailable',
        'unavailable',
        `issuer ${template.issuer} named by policy ${template.policy} is not available on this server`,
      );
    }
    return issuer;
  }

  /** Builds the TBS for a fresh serial and lints it: only a pass yields the token that signs. */
  async function prepare(
    input: Pick<IssueInput, 'policy' | 'requester'>,
    template: CertificateTemplate,
    issuer: LoadedIssuer,
    action: string,
  ) {
    const built = buildTbsCertificate(template, issuer.context, { serial: generateSerial(), clock });
    const lint = lintCertificate(built.der, { issuer: issuer.context, profile: 'leaf' });
    if (lint.ok) return { built, token: lint.token, findings: lint.findings };
    const errors = lint.findings.filter((f) => f.severity === 'error');
    await auditLog.submit({
      actor: input.requester.id,
      action,
      target: `policy:${input.policy}`,
      decision: 'denied',
      details: { policy: input.policy, lint: errors.map((f) => f.rule) },
    });
    throw new AppError(
      'ca.lint_failed',
      'forbidden',
      `the certificate would break issuance rules: ${errors.map((f) => `${f.rule}: ${f.message}`).join('; ')}`,
      { findings: errors },
    );
  }

  /** Signs a prepared token through src/issuance (which re-checks the result), then stores it. */
  async function issueToken(
    input: Pick<IssueInput, 'policy' | 'requester' | 'idempotency'>,
    issuer: LoadedIssuer,
    prepared: Awaited<ReturnType<typeof prepare>>,
    renewed?: string,
  ): Promise<Uint8Array> {
    const serial = prepared.built.serialNumber;
    let der: Uint8Array;
    try {
      der = await signCertificate(prepared.token, { crypto: issuer.crypto, key: issuer.keys.certificate });
    } catch (error) {
      await settleFailedSignature(serial, error);
      throw translateSigningError(error, issuer.id);
    }
    const stored = await stores.submit({
      serial,
      der,
      ...(input.idempotency ? { link: { ...input.idempotency, serial } } : {}),
      event: {
        actor: input.requester.id,
        action: renewed === undefined ? 'certificate.issue' : 'certificate.renew',
        target: `certificate:${serial}`,
        decision: 'allowed',
        details: { policy: input.policy, issuer: issuer.id, ...(renewed ? { renewed } : {}) },
      },
    });
    if (!stored) throw new Error(`certificate ${serial} was signed but could not be stored`);
    return der;
  }

  async function signAndStore(
    input: Pick<IssueInput, 'policy' | 'requester' | 'idempotency'>,
    csr: ParsedCsr,
    template: CertificateTemplate,
    renewed?: string,
  ) {
    const action = renewed === undefined ? 'certificate.issue' : 'certificate.renew';
    const issuer = issuerFor(template);
    for (let attempt = 0; attempt < SERIAL_ATTEMPTS; attempt++) {
      // A new serial is a new TBS: a collision goes back through building and linting.
      const prepared = await prepare(input, template, issuer, action);
      const { built } = prepared;
      const reserved = await reservations.submit({
        serial: built.serialNumber,
        issuerId: issuer.id,
        policy: template.policy,
        requester: input.requester.id,
        subject: subjectText(template),
        sans: template.sans,
        notBefore: built.notBefore,
        notAfter: built.notAfter,
        crlShard: built.crlShard,
        tbsSha256: sha256(built.der),
        csrSha256: Buffer.from(csr.sha256, 'hex'),
        spkiSha256: sha256(template.publicKey),
      });
      if (!reserved) continue;
      const der = await issueToken(input, issuer, prepared, renewed);
      return { issuer, der, built };
    }
    throw new Error(`no free serial after ${SERIAL_ATTEMPTS} attempts`);
  }

  /**
   * A refusal from the partition means nothing was signed: the reservation is marked failed.
   * A lost connection or timeout may or may not have produced a signature: the row stays pending
   * for `signet audit reconcile`, which compares it with the partition's audit log.
   */
  async function settleFailedSignature(serial: string, error: unknown): Promise<void> {
    const definite =
      (error instanceof HsmError && error.rv !== 'CKR_DEVICE_REMOVED') ||
      (error instanceof Error && error.cause instanceof HsmError && error.cause.rv !== 'CKR_DEVICE_REMOVED');
    if (!definite || error instanceof MisissuanceError) return;
    try {
      await certificates.markFailed(
        serial,
        error instanceof Error ? error.message.slice(0, 200) : 'signing failed',
      );
    } catch (markError) {
      options.onInternalError?.(`could not mark ${serial} failed`, markError);
    }
  }

  return {
    async issue(input) {
      const { csr, evaluation } = intake(input);
      if (!evaluation.allowed) return refuse(input, evaluation);
      const { issuer, der, built } = await signAndStore(input, csr, evaluation.template);
      return issuedOf(issuer, der, built, input.policy);
    },

    async renew(input: RenewInput) {
      // The names come from the certificate renewed, never from a CSR: a re-key changes the key only.
      const current = requestFromCertificate(input.certificate, csrOptions);
      let request = current;
      if (input.csr !== undefined) {
        const fresh = parseCsr(input.csr, csrOptions);
        request = {
          ...current,
          der: fresh.der,
          sha256: fresh.sha256,
          publicKey: fresh.publicKey,
          keyAlgorithm: fresh.keyAlgorithm,
        };
      }
      const evaluation = evaluateRequest(input, request);
      if (!evaluation.allowed) return refuse(input, evaluation, 'certificate.renew');
      const { issuer, der, built } = await signAndStore(input, request, evaluation.template, input.serial);
      return issuedOf(issuer, der, built, input.policy);
    },

    async stored(serial) {
      const record = await certificates.findBySerial(serial);
      if (!record?.der || (record.status !== 'good' && record.status !== 'revoked')) return null;
      const issuer = issuers.get(record.issuerId);
      if (!issuer) {
        // Answering "not stored" would issue a second certificate: refuse until the issuer is back.
        throw new AppError(
          'ca.issuer_unavailable',
          'unavailable',
          `issuer ${record.issuerId} of certificate ${serial} is not available on this server`,
        );
      }
      return {
        serialNumber: record.serial,
        certificateDer: record.der,
        certificatePem: certificateToPem(record.der),
        chainPem: issuer.chainPem,
        notBefore: record.notBefore,
        notAfter: record.notAfter,
        policy: record.policy,
        issuer: issuer.id,
      };
    },

    async evaluate(input): Promise<EvaluationResult> {
      const { evaluation } = intake(input);
      return {
        allowed: evaluation.allowed,
        policy: input.policy,
        decisions: evaluation.decisions.map((d) => ({
          field: d.field,
          value: d.value,
          allowed: d.outcome === 'allowed' || d.outcome === 'ignored',
          rule: d.rule,
          message: d.reason,
        })),
        violations: evaluation.allowed ? [] : evaluation.violations,
      };
    },
  };
}

function issuedOf(
  issuer: LoadedIssuer,
  der: Uint8Array,
  built: { serialNumber: string; notBefore: Date; notAfter: Date },
  policy: string,
): IssuedCertificate {
  return {
    serialNumber: built.serialNumber,
    certificateDer: der,
    certificatePem: certificateToPem(der),
    chainPem: issuer.chainPem,
    notBefore: built.notBefore,
    notAfter: built.notAfter,
    policy,
    issuer: issuer.id,
  };
}

function translateSigningError(error: unknown, issuerId: string): Error {
  if (error instanceof MisissuanceError) return error;
  if (partitionUnavailable(error)) {
    return new AppError(
      'hsm.unavailable',
      'unavailable',
      'the key partition is unavailable; try again later',
      undefined,
      {
        cause: error,
      },
    );
  }
  return new Error(`signing for issuer ${issuerId} failed`, { cause: error });
}

const sha256 = (bytes: Uint8Array): Uint8Array => new Uint8Array(createHash('sha256').update(bytes).digest());

/** RFC 4514-ish text of the template's subject, for display and search. */
function subjectText(template: CertificateTemplate): string {
  return template.subject
    .map((a) => `${a.type}=${a.value.replace(/([,+"\\<>;=])/g, '\\$1')}`)
    .reverse()
    .join(',');
}
