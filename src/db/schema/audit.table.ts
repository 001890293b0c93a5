import { sql } from 'drizzle-orm';
import { bigint, check, index, jsonb, pgTable, text, uniqueIndex } from 'drizzle-orm/pg-core';
import { bytea, timestamptz } from './columns.ts';

export const AUDIT_DECISIONS = ['allowed', 'denied', 'failed'] as const;
/** allowed: done; denied: refused by authentication, authorisation or policy; failed: an error stopped it. */
export type AuditDecision = (typeof AUDIT_DECISIONS)[number];

/**
 * The audit log. Each writing node keeps its own hash chain (seq 1, 2, ...; prev_hash of seq 1 is
 * 32 zero octets) so nodes never contend for one chain head; src/db/audit.repository.ts says what
 * the hash covers.
 */
export const auditEvents = pgTable(
  'audit_events',
  {
    id: bigint('id', { mode: 'number' }).primaryKey().generatedAlwaysAsIdentity(),
    nodeId: text('node_id').notNull(),
    seq: bigint('seq', { mode: 'number' }).notNull(),
    at: timestamptz('at').notNull(),
    actor: text('actor').notNull(),
    action: text('action').notNull(),
    target: text('target'),
    decision: text('decision').$type<AuditDecision>().notNull(),
    details: jsonb('details').$type<Record<string, unknown>>().notNull().default(sql`'{}'::jsonb`),
    prevHash: bytea('prev_hash').notNull(),
    hash: bytea('hash').notNull(),
  },
  (t) => [
    uniqueIndex('audit_events_node_seq_key').on(t.nodeId, t.seq),
    index('audit_events_at_idx').on(t.at),
    index('audit_events_actor_idx').on(t.actor, t.id),
    index('audit_events_target_idx').on(t.target, t.id),
    check('audit_events_decision_known', sql`${t.decision} in ('allowed', 'denied', 'failed')`),
    check('audit_events_seq_positive', sql`${t.seq} > 0`),
    check(
      'audit_events_hash_lengths',
      sql`octet_length(${t.hash}) = 32 and octet_length(${t.prevHash}) = 32`,
    ),
  ],
);

/** The head of each node's chain: appends lock this row, and truncating the log shows against it. */
export const auditHeads = pgTable(
  'audit_heads',
  {
    nodeId: text('node_id').primaryKey(),
    seq: bigint('seq', { mode: 'number' }).notNull(),
    hash: bytea('hash').notNull(),
  },
  (t) => [check('audit_heads_hash_length', sql`octet_length(${t.hash}) = 32`)],
);
