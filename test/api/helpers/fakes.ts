// Temporary scaffolding (brief: in-memory fakes only until the real pieces land).
import type {
  ApiKeyRecord,
  ApiKeyStore,
  AuditEventInput,
  AuditEventView,
  AuditLog,
  IdempotencyClaim,
  IdempotencyStore,
  StoredResponse,
} from '../../../src/api/deps.ts';

export function memoryApiKeys(): ApiKeyStore & { records: Map<string, ApiKeyRecord> } {
  const records = new Map<string, ApiKeyRecord>();
  return {
    records,
    async insert(record) {
      records.set(record.id, { ...record, revokedAt: null });
    },
    async findById(id) {
      return records.get(id);
    },
    async list() {
      return [...records.values()];
    },
    async revoke(id, at) {
      const record = records.get(id);
      if (!record || record.revokedAt) return false;
      record.revokedAt = at;
      return true;
    },
  };
}

export function memoryAudit(): AuditLog & { events: AuditEventView[] } {
  const events: AuditEventView[] = [];
  return {
    events,
    async record(event: AuditEventInput) {
      events.push({ ...event, id: String(events.length + 1) });
    },
    async list(query) {
      const items = events.filter(
        (e) => (!query.actor || e.actor === query.actor) && (!query.outcome || e.outcome === query.outcome),
      );
      return { items: items.slice(0, query.limit).reverse(), nextCursor: null };
    },
  };
}

export function memoryIdempotency(): IdempotencyStore {
  const rows = new Map<
    string,
    {
      fingerprint: string;
      state: 'in_flight' | 'done';
      response?: StoredResponse;
      createdAt: Date;
      expiresAt: Date;
    }
  >();
  return {
    async claim({ principal, key, fingerprint, now, expiresAt, staleBefore }): Promise<IdempotencyClaim> {
      const id = `${principal}\n${key}`;
      const row = rows.get(id);
      const live = row && row.expiresAt > now && !(row.state === 'in_flight' && row.createdAt < staleBefore);
      if (!live) {
        rows.set(id, { fingerprint, state: 'in_flight', createdAt: now, expiresAt });
        return { state: 'claimed' };
      }
      if (row.state === 'in_flight') return { state: 'in_flight', fingerprint: row.fingerprint };
      return { state: 'completed', fingerprint: row.fingerprint, response: row.response! };
    },
    async complete({ principal, key, response }) {
      const row = rows.get(`${principal}\n${key}`);
      if (row) Object.assign(row, { state: 'done', response });
    },
    async release({ principal, key }) {
      rows.delete(`${principal}\n${key}`);
    },
  };
}

import type {
  CertificateReader,
  IssuerReader,
  PolicyCatalog,
  ReadinessProbe,
} from '../../../src/api/deps.ts';
import type { CertificateAuthority, IssuedCertificate, IssueInput } from '../../../src/ca/types.ts';
import { AppError } from '../../../src/lib/errors.ts';

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
    async evaluate(input: IssueInput) {
      return { allowed: true, policy: input.policy, decisions: [], violations: [] };
    },
  };
  return ca;
}

export const noCertificates: CertificateReader = {
  async get() {
    return undefined;
  },
  async list() {
    return { items: [], nextCursor: null };
  },
};

export const noIssuers: IssuerReader = {
  async list() {
    return [];
  },
  async get() {
    return undefined;
  },
  async chain() {
    return undefined;
  },
};

export function staticPolicies(names: string[]): PolicyCatalog {
  const all = names.map((name) => ({
    name,
    description: `${name} policy`,
    issuer: 'dev-intermediate',
    document: { name },
  }));
  return {
    list: () => all,
    get: (name) => all.find((p) => p.name === name),
    reload: async () => ({ loaded: names }),
  };
}

export const readyProbe: ReadinessProbe = {
  async database() {},
  async partition() {
    return { state: 'unsealed' };
  },
};
