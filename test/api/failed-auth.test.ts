import { describe, expect, it } from 'vitest';
import { createFailedAuthAudit } from '../../src/api/failed-auth.ts';
import type { AuditEventInput } from '../../src/db/audit.repository.ts';
import { fixedClock, systemClock } from '../../src/lib/clock.ts';

/** The rows an aggregator appends, in order (the repository itself is tested in test/db). */
function sink() {
  const rows: AuditEventInput[] = [];
  return {
    rows,
    audit: {
      async append(events: AuditEventInput | AuditEventInput[]) {
        rows.push(...(Array.isArray(events) ? events : [events]));
        return [];
      },
    },
  };
}

const failure = (client: string) => ({
  client,
  action: 'policy.list',
  code: 'auth.credential_invalid',
  requestId: 'req-1',
});

describe('the failed-authentication audit', () => {
  it('writes what it counted from a timer once the interval has passed, with no further failure', async () => {
    const { rows, audit } = sink();
    const failedAuth = createFailedAuthAudit({ audit, clock: systemClock, intervalMs: 50 });
    for (let i = 0; i < 4; i++) await failedAuth.record(failure('192.0.2.1'));
    expect(rows.map((row) => row.details?.count)).toEqual([1]);
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(rows.map((row) => row.details?.count)).toEqual([1, 3]);
  });

  it('writes out the least recently seen client when it tracks too many', async () => {
    const { rows, audit } = sink();
    const failedAuth = createFailedAuthAudit({
      audit,
      clock: fixedClock('2026-03-01T12:00:00Z'),
      maxTracked: 2,
    });
    for (const client of ['192.0.2.1', '192.0.2.1', '192.0.2.2', '192.0.2.3']) {
      await failedAuth.record(failure(client));
    }
    expect(rows.map((row) => [row.details?.client, row.details?.count])).toEqual([
      ['192.0.2.1', 1],
      ['192.0.2.2', 1],
      ['192.0.2.3', 1],
      ['192.0.2.1', 1],
    ]);
  });

  it('tells the logger, and keeps refusing, when a row cannot be written', async () => {
    const errors: unknown[] = [];
    const failedAuth = createFailedAuthAudit({
      audit: {
        async append() {
          throw new Error('database down');
        },
      },
      clock: systemClock,
      logger: { error: (...args: unknown[]) => errors.push(args) } as never,
    });
    await expect(failedAuth.record(failure('192.0.2.9'))).resolves.toBeUndefined();
    expect(errors).toHaveLength(1);
  });

  it.each([
    { name: 'no audit', options: { audit: undefined, clock: systemClock } },
    { name: 'a zero interval', options: { audit: sink().audit, clock: systemClock, intervalMs: 0 } },
    {
      name: 'a fractional maxTracked',
      options: { audit: sink().audit, clock: systemClock, maxTracked: 1.5 },
    },
  ])('refuses $name when it is made', ({ options }) => {
    expect(() => createFailedAuthAudit(options as never)).toThrow(/createFailedAuthAudit/);
  });
});
