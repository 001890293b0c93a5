import type { Context } from 'hono';
import type { AuditRepository } from '../db/audit.repository.ts';
import type { AuditDecision } from '../db/schema/index.ts';
import type { Clock } from '../lib/clock.ts';
import type { AppError } from '../lib/errors.ts';
import type { ApiEnv } from './env.ts';

export interface AuditEntry {
  action: string;
  decision: AuditDecision;
  /** What it was done to: `certificate:<serial>`, `apikey:<id>`, `policy:<name>`. */
  target?: string;
  /** Stable code of a refusal. */
  code?: string;
  details?: Record<string, unknown>;
}

/**
 * Appends one audit event for this request: the caller (or `anonymous`), the request id, and no
 * secrets (details hold codes, ids and names only).
 */
export async function recordAudit(
  c: Context<ApiEnv>,
  audit: Pick<AuditRepository, 'append'>,
  clock: Clock,
  { action, decision, target, code, details }: AuditEntry,
): Promise<void> {
  await audit.append({
    at: clock.now(),
    actor: c.get('principal')?.id ?? 'anonymous',
    action,
    target: target ?? null,
    decision,
    details: { requestId: c.get('requestId'), ...(code ? { code } : {}), ...details },
  });
}

/**
 * Records a refusal, then throws it: a refused request leaves that one record and nothing else
 * (issue #8). A failure to write the record is logged and the refusal still stands.
 */
export async function refuse(
  c: Context<ApiEnv>,
  audit: Pick<AuditRepository, 'append'>,
  clock: Clock,
  action: string,
  error: AppError,
  target?: string,
): Promise<never> {
  try {
    await recordAudit(c, audit, clock, {
      action,
      decision: 'denied',
      code: error.code,
      ...(target ? { target } : {}),
    });
  } catch (auditError) {
    c.get('logger')?.error({ err: auditError }, 'could not record a refusal in the audit log');
  }
  throw error;
}
