/**
 * Scripted stand-ins for the HTTP edge's own tests (problem rendering, idempotency in flight,
 * limits, hostile input): a CA that refuses, crashes or hangs on cue, which the real core does
 * only under faults a test cannot cheaply arrange. The real pieces are tested on their own
 * (test/ca/issuing-core.test.ts) and together through HTTP (test/api/stack-*.test.ts).
 */
import type { ReadinessProbe, RevocationDeps } from '../../../src/api/deps.ts';
import type { CertificateAuthority, IssuedCertificate, IssueInput } from '../../../src/ca/types.ts';
import { AppError } from '../../../src/lib/errors.ts';
import { errorResponse } from '../../../src/revocation/ocsp-responder.ts';

const FAKE_PEM = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';

/** A CA stand-in: `gate` holds issuance open (for in-flight tests); 'refuse' refuses; 'boom' crashes. */
export function scriptedCa(): CertificateAuthority & { calls: IssueInput[]; gate?: Promise<void> } {
  let serial = 0x10;
  const ca = {
    calls: [] as IssueInput[],
    gate: undefined as Promise<void> | undefined,
    async issue(input: IssueInput): Promise<IssuedCertificate> {
      ca.calls.push(input);
      if (ca.gate) await ca.gate;
      if (input.policy === 'boom') throw new Error('database password is hunter2');
      if (input.policy === 'unknown')
        throw new AppError('policy.unknown', 'invalid', "No policy named 'unknown'.");
      if (input.policy === 'refuse') {
        throw new AppError('policy.refused', 'forbidden', 'The policy refuses this request.', {
          violations: [
            {
              code: 'policy.dns_not_allowed',
              field: 'sans[0]',
              value: 'evil.example.org',
              rule: 'sans.dns.allow',
              message: 'no allow rule covers evil.example.org',
            },
          ],
        });
      }
      serial += 1;
      return {
        serialNumber: serial.toString(16).padStart(2, '0'),
        certificateDer: new Uint8Array([0x30]),
        certificatePem: FAKE_PEM,
        chainPem: [FAKE_PEM],
        notBefore: new Date('2026-03-01T11:59:00Z'),
        notAfter: new Date('2026-03-31T12:00:00Z'),
        policy: input.policy,
        issuer: 'dev-intermediate',
      };
    },
    async stored(): Promise<IssuedCertificate | null> {
      return null;
    },
    async renew(): Promise<IssuedCertificate> {
      throw new Error('the scripted CA does not renew');
    },
    async evaluate(input: IssueInput) {
      return { allowed: true, policy: input.policy, decisions: [], violations: [] };
    },
  };
  return ca;
}

export const readyProbe: ReadinessProbe = {
  async database() {},
  async partition() {
    return { state: 'unsealed' };
  },
};

/** An OCSP responder that has nothing to sign with: every request is malformedRequest. */
export const malformedOcsp: RevocationDeps['ocsp'] = {
  async answer() {
    return { der: errorResponse('malformedRequest'), status: 'malformedRequest', nonce: false };
  },
  async answerGetPath() {
    return { der: errorResponse('malformedRequest'), status: 'malformedRequest', nonce: false };
  },
};
