import { and, eq, sql } from 'drizzle-orm';
import { beforeEach, describe, expect, test } from 'vitest';
import {
  canonicalJson,
  createAuditRepository,
  hashEvent,
  normalizeDetails,
  verifyAuditChain,
} from '../../src/db/audit.repository.ts';
import { auditEvents, auditHeads } from '../../src/db/schema/index.ts';
import { describeEachDatabase } from '../helpers/database.ts';
import { manualClock } from './builders.ts';

describe('audit hashing', () => {
  test('canonicalJson sorts keys at every level and drops undefined members', () => {
    expect(canonicalJson({ b: 1, a: { d: [3, { f: 1, e: 2 }], c: 'x' }, u: undefined })).toBe(
      '{"a":{"c":"x","d":[3,{"e":2,"f":1}]},"b":1}',
    );
  });

  test('normalizeDetails replaces what PostgreSQL cannot store and JSON-normalises the rest', () => {
    expect(
      normalizeDetails({ s: 'a\u0000b', lone: '\uD800x', pair: '😀', n: Number.NaN, d: new Date(0) }),
    ).toEqual({
      s: 'a\uFFFDb',
      lone: '\uFFFDx',
      pair: '😀',
      n: null,
      d: '1970-01-01T00:00:00.000Z',
    });
    expect(() => normalizeDetails([] as unknown as Record<string, unknown>)).toThrow(TypeError);
  });

  test('the hash covers every field', () => {
    const event = {
      nodeId: 'node-a',
      seq: 1,
      at: new Date('2026-03-01T00:00:00Z'),
      actor: 'k_1',
      action: 'certificate.issue',
      target: 'certificate:01a2',
      decision: 'allowed' as const,
      details: { policy: 'web-server' },
      prevHash: new Uint8Array(32),
    };
    const base = Buffer.from(hashEvent(event)).toString('hex');
    const variants = [
      { nodeId: 'node-b' },
      { seq: 2 },
      { at: new Date('2026-03-01T00:00:00.001Z') },
      { actor: 'k_2' },
      { action: 'certificate.revoke' },
      { target: null },
      { decision: 'denied' as const },
      { details: { policy: 'spiffe' } },
      { prevHash: new Uint8Array(32).fill(1) },
    ];
    for (const change of variants) {
      expect(Buffer.from(hashEvent({ ...event, ...change })).toString('hex')).not.toBe(base);
    }
  });
});

describeEachDatabase('the audit log', (getDatabase) => {
  let clock: ReturnType<typeof manualClock>;
  let audit: ReturnType<typeof createAuditRepository>;
  beforeEach(() => {
    clock = manualClock();
    audit = createAuditRepository({ db: getDatabase().db, nodeId: 'node-a', clock });
  });

  const event = (i: number) => ({
    actor: 'k_1',
    action: 'certificate.issue',
    target: `certificate:${i.toString(16).padStart(4, '0')}`,
    decision: 'allowed' as const,
    details: { policy: 'web-server', n: i, nested: { z: 1, a: [1.5, 'two', null] }, text: 'ünïcødé \u0000' },
  });

  async function appendMany(count: number, repository = audit) {
    for (let i = 0; i < count; i++) {
      clock.advance(1);
      await repository.append(event(i));
    }
  }

  test('appends chain each event to the one before and a fresh log verifies', async () => {
    const [first] = await audit.append(event(1));
    const [second, third] = await audit.append([event(2), event(3)]);
    expect(first).toMatchObject({ nodeId: 'node-a', seq: 1, actor: 'k_1', at: clock.now() });
    expect(first!.prevHash).toEqual(new Uint8Array(32));
    expect(second!.prevHash).toEqual(first!.hash);
    expect(third!.prevHash).toEqual(second!.hash);
    expect(third!.seq).toBe(3);
    expect(first!.details).toEqual({ ...event(1).details, text: 'ünïcødé \uFFFD' });
    const report = await verifyAuditChain({ db: getDatabase().db });
    expect(report).toEqual({
      ok: true,
      chains: [
        { nodeId: 'node-a', events: 3, lastSeq: 3, lastHash: Buffer.from(third!.hash).toString('hex') },
      ],
      problems: [],
    });
  });

  test("appendWithin chains into the caller's transaction and commits or rolls back with it", async () => {
    const { db } = getDatabase();
    await audit.append(event(1));
    await db.transaction((tx) => audit.appendWithin(tx, [event(2), { ...event(3), target: null }]));
    await expect(
      db.transaction(async (tx) => {
        await audit.appendWithin(tx, [event(4)]);
        throw new Error('the surrounding work failed');
      }),
    ).rejects.toThrow('the surrounding work failed');
    await db.transaction((tx) => audit.appendWithin(tx, []));
    const { items } = await audit.list();
    expect(items.map((e) => [e.seq, e.target])).toEqual([
      [3, null],
      [2, event(2).target],
      [1, event(1).target],
    ]);
    // Verification recomputes each hash from what was read back: the details, times and bytes
    // written by appendWithin are exactly what was hashed.
    expect(items[1]!.details).toEqual({ ...event(2).details, text: 'ünïcødé \uFFFD' });
    expect(await verifyAuditChain({ db })).toMatchObject({ ok: true, problems: [] });
  });

  test('each node keeps its own chain and concurrent appends keep every chain whole', async () => {
    const nodeB = createAuditRepository({ db: getDatabase().db, nodeId: 'node-b', clock });
    await Promise.all([
      ...Array.from({ length: 15 }, (_, i) => audit.append(event(i))),
      ...Array.from({ length: 15 }, (_, i) => nodeB.append(event(100 + i))),
    ]);
    const report = await verifyAuditChain({ db: getDatabase().db, pageSize: 4 });
    expect(report.ok).toBe(true);
    expect(report.chains.map((c) => [c.nodeId, c.events, c.lastSeq])).toEqual([
      ['node-a', 15, 15],
      ['node-b', 15, 15],
    ]);
    expect((await verifyAuditChain({ db: getDatabase().db, nodeId: 'node-b' })).chains).toHaveLength(1);
  });

  const tamperings: {
    name: string;
    problem: string;
    tamper: (db: ReturnType<typeof getDatabase>['db']) => Promise<unknown>;
  }[] = [
    {
      name: 'an edited detail',
      problem: 'hash_mismatch',
      tamper: (db) =>
        db
          .update(auditEvents)
          .set({ details: sql`jsonb_set(${auditEvents.details}, '{policy}', '"spiffe"')` })
          .where(eq(auditEvents.seq, 3)),
    },
    {
      name: 'an edited decision',
      problem: 'hash_mismatch',
      tamper: (db) => db.update(auditEvents).set({ decision: 'denied' }).where(eq(auditEvents.seq, 2)),
    },
    {
      name: 'a removed event',
      problem: 'sequence_gap',
      tamper: (db) => db.delete(auditEvents).where(eq(auditEvents.seq, 3)),
    },
    {
      name: 'a truncated tail',
      problem: 'head_mismatch',
      tamper: (db) => db.delete(auditEvents).where(eq(auditEvents.seq, 5)),
    },
    {
      name: 'two events swapped',
      problem: 'broken_link',
      tamper: async (db) => {
        await db.update(auditEvents).set({ seq: 100 }).where(eq(auditEvents.seq, 2));
        await db.update(auditEvents).set({ seq: 2 }).where(eq(auditEvents.seq, 3));
        await db.update(auditEvents).set({ seq: 3 }).where(eq(auditEvents.seq, 100));
      },
    },
    {
      name: 'a removed head row',
      problem: 'head_missing',
      tamper: (db) => db.delete(auditHeads).where(eq(auditHeads.nodeId, 'node-a')),
    },
    {
      name: 'an event rewritten with a recomputed hash but the old successor',
      problem: 'broken_link',
      tamper: async (db) => {
        const [row] = await db
          .select()
          .from(auditEvents)
          .where(and(eq(auditEvents.nodeId, 'node-a'), eq(auditEvents.seq, 2)));
        const forged = { ...row!, actor: 'k_forger' };
        await db
          .update(auditEvents)
          .set({ actor: 'k_forger', hash: hashEvent(forged) })
          .where(eq(auditEvents.id, row!.id));
      },
    },
  ];

  test.each(tamperings)('verifyAuditChain finds $name ($problem)', async ({ tamper, problem }) => {
    await appendMany(5);
    expect((await verifyAuditChain({ db: getDatabase().db })).ok).toBe(true);
    await tamper(getDatabase().db);
    const report = await verifyAuditChain({ db: getDatabase().db });
    expect(report.ok).toBe(false);
    expect(report.problems.map((p) => p.problem)).toContain(problem);
  });

  test('list pages newest first and filters by actor, action, target, decision and time', async () => {
    await appendMany(5);
    clock.advance(1000);
    await audit.append({
      actor: 'k_2',
      action: 'certificate.revoke',
      target: 'certificate:00ff',
      decision: 'denied',
    });
    const page1 = await audit.list({ limit: 4 });
    const page2 = await audit.list({ limit: 4, cursor: page1.nextCursor! });
    expect(page1.items.map((e) => e.seq)).toEqual([6, 5, 4, 3]);
    expect(page2.items.map((e) => e.seq)).toEqual([2, 1]);
    expect(page2.nextCursor).toBeNull();
    expect((await audit.list({ actor: 'k_2' })).items.map((e) => e.seq)).toEqual([6]);
    expect((await audit.list({ action: 'certificate.issue' })).items).toHaveLength(5);
    expect((await audit.list({ target: 'certificate:0001' })).items.map((e) => e.seq)).toEqual([2]);
    expect((await audit.list({ decision: 'denied' })).items.map((e) => e.seq)).toEqual([6]);
    expect(
      (await audit.list({ since: new Date(clock.now().getTime() - 500) })).items.map((e) => e.seq),
    ).toEqual([6]);
  });

  test.each([
    { name: 'an unknown decision', change: { decision: 'maybe' } },
    { name: 'an empty actor', change: { actor: '' } },
    { name: 'details that are not an object', change: { details: [1, 2] } },
  ])('append refuses $name', async ({ change }) => {
    await expect(audit.append({ ...event(1), ...(change as object) })).rejects.toBeInstanceOf(TypeError);
  });
});
