/**
 * The audit log: who did what, to what, and the decision. Each writing node appends to its own
 * hash chain, so nodes never wait on one another:
 *
 *   hash(n) = SHA-256( canonical JSON of
 *     ["signet-audit-v1", nodeId, seq, at (ISO 8601, ms), actor, action, target, decision,
 *      details, hex(prevHash)] )
 *
 * where prevHash of seq 1 is 32 zero octets, and canonical JSON sorts object keys (numbers and
 * strings as JSON.stringify writes them). `audit_heads` holds each chain's last seq and hash;
 * appends lock that row, so even two processes configured with one node id cannot fork a chain.
 * verifyAuditChain finds an edited, removed, reordered or inserted event, and a truncated tail
 * (unless the head row was rewritten to match: anchoring heads outside the database is what
 * catches that).
 */
import { createHash } from 'node:crypto';
import { and, asc, desc, eq, gt, gte, lt, type SQL, sql } from 'drizzle-orm';
import { type Clock, systemClock } from '../lib/clock.ts';
import { decodeCursor, encodeCursor } from './cursor.ts';
import type { Db } from './database.ts';
import { AUDIT_DECISIONS, type AuditDecision, auditEvents, auditHeads } from './schema/index.ts';

export type AuditEventRecord = typeof auditEvents.$inferSelect;

export interface AuditEventInput {
  /** An API key id, `cli:<user>`, `system`... */
  actor: string;
  /** Dotted, e.g. `certificate.issue`, `certificate.revoke`, `apikey.create`. */
  action: string;
  /** What it was done to, e.g. `certificate:<serial>`, `issuer:<id>`. */
  target?: string | null;
  decision: AuditDecision;
  /** JSON object; no secrets. Stored as written after JSON normalisation (see normalizeDetails). */
  details?: Record<string, unknown>;
  /** Default: the repository's clock. */
  at?: Date;
}

export interface AuditListFilter {
  nodeId?: string;
  actor?: string;
  action?: string;
  target?: string;
  decision?: AuditDecision;
  since?: Date;
  until?: Date;
  cursor?: string;
  /** Default 50, at most 1000. */
  limit?: number;
}

export interface AuditRepository {
  /** Appends events to this node's chain, in order, in one transaction. */
  append(events: AuditEventInput | AuditEventInput[]): Promise<AuditEventRecord[]>;
  /**
   * append inside the caller's transaction `tx` (e.g. with the writes the events describe, so both
   * commit or neither does). Locks this node's head row until `tx` ends. Returns nothing, which
   * spares reading the rows back.
   */
  appendWithin(tx: Db, events: AuditEventInput[]): Promise<void>;
  /** Newest first. */
  list(filter?: AuditListFilter): Promise<{ items: AuditEventRecord[]; nextCursor: string | null }>;
}

export type AuditProblem =
  | 'hash_mismatch'
  | 'broken_link'
  | 'sequence_gap'
  | 'head_mismatch'
  | 'head_missing';

export interface AuditChainReport {
  ok: boolean;
  chains: { nodeId: string; events: number; lastSeq: number; lastHash: string | null }[];
  /** At most 100, in chain order. */
  problems: {
    nodeId: string;
    seq: number | null;
    id: number | null;
    problem: AuditProblem;
    message: string;
  }[];
}

const GENESIS = new Uint8Array(32);
const HASH_DOMAIN = 'signet-audit-v1';
const MAX_PROBLEMS = 100;
const DEFAULT_LIMIT = 50;
const MAX_LIMIT = 1000;

export function createAuditRepository({
  db,
  nodeId,
  clock = systemClock,
}: {
  db: Db;
  /** This writer's chain; one per node (e.g. the host name or a configured id). */
  nodeId: string;
  clock?: Clock;
}) {
  checkText('nodeId', nodeId);
  /** The chained insert on `tx`, which must be a transaction (the head row is locked FOR UPDATE). */
  async function appendOn(tx: Db, prepared: ReturnType<typeof prepareEvent>[], returning: boolean) {
    const lockHead = () => tx.select().from(auditHeads).where(eq(auditHeads.nodeId, nodeId)).for('update');
    let [head] = await lockHead();
    if (!head) {
      // The chain's first append (or two racing first appends: one inserts, both then lock).
      await tx.insert(auditHeads).values({ nodeId, seq: 0, hash: GENESIS }).onConflictDoNothing();
      [head] = await lockHead();
    }
    let seq = head!.seq;
    let prevHash = head!.hash;
    const rows = prepared.map((event) => {
      seq += 1;
      const row = { nodeId, seq, ...event, prevHash, hash: new Uint8Array() as Uint8Array };
      row.hash = hashEvent(row);
      prevHash = row.hash;
      return row;
    });
    let inserted: AuditEventRecord[] = [];
    if (returning) inserted = await tx.insert(auditEvents).values(rows).returning();
    else await insertUnnest(tx, rows);
    await tx.update(auditHeads).set({ seq, hash: prevHash }).where(eq(auditHeads.nodeId, nodeId));
    return inserted.sort((a, b) => a.seq - b.seq);
  }

  const repository: AuditRepository = {
    async append(input) {
      const inputs = Array.isArray(input) ? input : [input];
      if (inputs.length === 0) return [];
      const prepared = inputs.map((event) => prepareEvent(event, clock));
      return db.transaction((tx) => appendOn(tx, prepared, true));
    },

    async appendWithin(tx, events) {
      if (events.length === 0) return;
      await appendOn(
        tx,
        events.map((event) => prepareEvent(event, clock)),
        false,
      );
    },

    async list(filter = {}) {
      const limit = filter.limit === undefined ? DEFAULT_LIMIT : Math.min(positive(filter.limit), MAX_LIMIT);
      const conditions: (SQL | undefined)[] = [];
      if (filter.nodeId !== undefined) conditions.push(eq(auditEvents.nodeId, filter.nodeId));
      if (filter.actor !== undefined) conditions.push(eq(auditEvents.actor, filter.actor));
      if (filter.action !== undefined) conditions.push(eq(auditEvents.action, filter.action));
      if (filter.target !== undefined) conditions.push(eq(auditEvents.target, filter.target));
      if (filter.decision !== undefined) conditions.push(eq(auditEvents.decision, filter.decision));
      if (filter.since !== undefined) conditions.push(gte(auditEvents.at, filter.since));
      if (filter.until !== undefined) conditions.push(lt(auditEvents.at, filter.until));
      if (filter.cursor !== undefined) {
        const [id] = decodeCursor(filter.cursor, ['number'] as const);
        conditions.push(lt(auditEvents.id, id));
      }
      const rows = await db
        .select()
        .from(auditEvents)
        .where(and(...conditions))
        .orderBy(desc(auditEvents.id))
        .limit(limit + 1);
      const items = rows.slice(0, limit);
      const last = items.at(-1);
      return { items, nextCursor: rows.length > limit && last ? encodeCursor([last.id]) : null };
    },
  };
  return repository;
}

/**
 * Walks every chain (or one node's) from seq 1, page by page, recomputing each hash, and checks
 * each chain's end against its head row.
 */
export async function verifyAuditChain({
  db,
  nodeId,
  pageSize = 1000,
}: {
  db: Db;
  nodeId?: string;
  pageSize?: number;
}): Promise<AuditChainReport> {
  const heads = await db
    .select()
    .from(auditHeads)
    .where(nodeId === undefined ? undefined : eq(auditHeads.nodeId, nodeId));
  const nodesWithEvents = await db
    .selectDistinct({ nodeId: auditEvents.nodeId })
    .from(auditEvents)
    .where(nodeId === undefined ? undefined : eq(auditEvents.nodeId, nodeId));
  const nodeIds = [
    ...new Set([...heads.map((h) => h.nodeId), ...nodesWithEvents.map((n) => n.nodeId)]),
  ].sort();
  const report: AuditChainReport = { ok: true, chains: [], problems: [] };
  const problem = (entry: AuditChainReport['problems'][number]) => {
    report.ok = false;
    if (report.problems.length < MAX_PROBLEMS) report.problems.push(entry);
  };

  for (const node of nodeIds) {
    let expectedSeq = 1;
    let prevHash: Uint8Array = GENESIS;
    let events = 0;
    let afterSeq = 0;
    for (;;) {
      const page = await db
        .select()
        .from(auditEvents)
        .where(and(eq(auditEvents.nodeId, node), gt(auditEvents.seq, afterSeq)))
        .orderBy(asc(auditEvents.seq))
        .limit(pageSize);
      for (const event of page) {
        events += 1;
        const at = { nodeId: node, seq: event.seq, id: event.id };
        if (event.seq !== expectedSeq) {
          problem({
            ...at,
            problem: 'sequence_gap',
            message: `expected seq ${expectedSeq}, found ${event.seq}`,
          });
        }
        if (!equalBytes(event.prevHash, prevHash)) {
          problem({
            ...at,
            problem: 'broken_link',
            message: 'prev_hash is not the hash of the event before',
          });
        }
        if (!equalBytes(hashEvent(event), event.hash)) {
          problem({ ...at, problem: 'hash_mismatch', message: 'the event does not match its hash' });
        }
        expectedSeq = event.seq + 1;
        prevHash = event.hash;
      }
      if (page.length < pageSize) break;
      afterSeq = page.at(-1)!.seq;
    }
    const head = heads.find((h) => h.nodeId === node);
    const lastSeq = expectedSeq - 1;
    if (!head) {
      problem({
        nodeId: node,
        seq: null,
        id: null,
        problem: 'head_missing',
        message: 'the chain has no head row',
      });
    } else if (head.seq !== lastSeq || !equalBytes(head.hash, prevHash)) {
      problem({
        nodeId: node,
        seq: head.seq,
        id: null,
        problem: 'head_mismatch',
        message: `the head says seq ${head.seq} but the chain ends at seq ${lastSeq}`,
      });
    }
    report.chains.push({
      nodeId: node,
      events,
      lastSeq,
      lastHash: events === 0 ? null : Buffer.from(prevHash).toString('hex'),
    });
  }
  return report;
}

type HashedFields = Pick<
  AuditEventRecord,
  'nodeId' | 'seq' | 'at' | 'actor' | 'action' | 'target' | 'decision' | 'details' | 'prevHash'
>;

export function hashEvent(event: HashedFields): Uint8Array {
  const material = canonicalJson([
    HASH_DOMAIN,
    event.nodeId,
    event.seq,
    event.at.toISOString(),
    event.actor,
    event.action,
    event.target,
    event.decision,
    event.details,
    Buffer.from(event.prevHash).toString('hex'),
  ]);
  return Uint8Array.from(createHash('sha256').update(material, 'utf8').digest());
}

/** JSON with object keys sorted at every level (the rest as JSON.stringify writes it). */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value) ?? 'null';
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  const entries = Object.keys(value)
    .sort()
    .filter((k) => (value as Record<string, unknown>)[k] !== undefined)
    .map((k) => `${JSON.stringify(k)}:${canonicalJson((value as Record<string, unknown>)[k])}`);
  return `{${entries.join(',')}}`;
}

/**
 * What the database will store and give back for a details object: JSON round-tripped, with
 * characters PostgreSQL cannot hold (NUL, unpaired surrogates) replaced by U+FFFD. Hashing the
 * normalised value is what lets verification recompute the same hash from what was read back.
 */
export function normalizeDetails(details: Record<string, unknown> | undefined): Record<string, unknown> {
  if (details === undefined) return {};
  if (details === null || typeof details !== 'object' || Array.isArray(details)) {
    throw new TypeError('audit details must be a JSON object');
  }
  const text = JSON.stringify(details, (_key, value) =>
    typeof value === 'string' ? cleanText(value) : value,
  );
  return JSON.parse(text, (_key, value) => (typeof value === 'string' ? cleanText(value) : value)) as Record<
    string,
    unknown
  >;
}

const UNPAIRED_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

function cleanText(value: string): string {
  return value.replace(UNPAIRED_SURROGATE, '\uFFFD').replaceAll('\u0000', '\uFFFD');
}

function prepareEvent(event: AuditEventInput, clock: Clock) {
  if (!AUDIT_DECISIONS.includes(event.decision)) {
    throw new TypeError(`unknown audit decision ${JSON.stringify(event.decision)}`);
  }
  checkText('actor', event.actor);
  checkText('action', event.action);
  const at = event.at ?? clock.now();
  if (!(at instanceof Date) || Number.isNaN(at.getTime())) throw new TypeError('at must be a valid Date');
  return {
    // Stored as timestamptz(3): keep exactly the milliseconds that will be read back.
    at: new Date(at.getTime()),
    actor: cleanText(event.actor),
    action: cleanText(event.action),
    target: event.target == null ? null : cleanText(event.target),
    decision: event.decision,
    details: normalizeDetails(event.details),
  };
}

/**
 * One INSERT with one array parameter per column (unnest), as certificates.repository does for
 * reservations: the statement stays the same size whatever the batch, which PGlite parses and
 * plans much faster than a many-row VALUES list. Bytes travel as hex, times as ISO 8601 text.
 */
async function insertUnnest(tx: Db, rows: Omit<AuditEventRecord, 'id'>[]): Promise<void> {
  const column = <T>(pick: (r: Omit<AuditEventRecord, 'id'>) => T) => sql.param(rows.map(pick));
  const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString('hex');
  await tx.execute(sql`
    insert into ${auditEvents} (node_id, seq, at, actor, action, target, decision, details, prev_hash, hash)
    select u.node_id, u.seq, u.at::timestamptz, u.actor, u.action, u.target, u.decision, u.details::jsonb,
      decode(u.prev_hash, 'hex'), decode(u.hash, 'hex')
    from unnest(
      ${column((r) => r.nodeId)}::text[],
      ${column((r) => r.seq)}::bigint[],
      ${column((r) => r.at.toISOString())}::text[],
      ${column((r) => r.actor)}::text[],
      ${column((r) => r.action)}::text[],
      ${column((r) => r.target)}::text[],
      ${column((r) => r.decision)}::text[],
      ${column((r) => JSON.stringify(r.details))}::text[],
      ${column((r) => hex(r.prevHash))}::text[],
      ${column((r) => hex(r.hash))}::text[]
    ) as u(node_id, seq, at, actor, action, target, decision, details, prev_hash, hash)`);
}

function checkText(name: string, value: string): void {
  if (typeof value !== 'string' || value.length === 0)
    throw new TypeError(`${name} must be a non-empty string`);
}

function positive(limit: number): number {
  if (!Number.isInteger(limit) || limit < 1) throw new TypeError('limit must be a positive integer');
  return limit;
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.from(a).equals(Buffer.from(b));
}
