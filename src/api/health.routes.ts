import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Hono } from 'hono';
import type { ApiEnv } from './env.ts';
import { problemResponse } from './problem.ts';
import type { RouteContext } from './routes.ts';

/** openapi.yaml at the repository root: the contract a test holds every response to. */
export const OPENAPI_PATH = fileURLToPath(new URL('../../openapi.yaml', import.meta.url));

type CheckResult = 'ok' | string;

const DAY_MS = 86_400_000;

/** A condition an operator should act on that does not stop this node from serving. */
export interface ReadinessWarning {
  code: 'crl.imported_expiring' | 'crl.imported_expired';
  detail: string;
  issuer: string;
  nextUpdate: string;
}

/**
 * Issue #18: an imported CRL (a root's, signed offline) is replaced only by the next crl ceremony;
 * warn from `marginMs` before its nextUpdate so that ceremony happens in time.
 */
export function importedCrlWarnings(
  crls: { issuerId: string; nextUpdate: Date; imported: boolean }[],
  now: Date,
  marginMs: number,
): ReadinessWarning[] {
  return crls
    .filter((crl) => crl.imported && crl.nextUpdate.getTime() - now.getTime() <= marginMs)
    .map((crl) => {
      const expired = crl.nextUpdate.getTime() <= now.getTime();
      const days = Math.floor((crl.nextUpdate.getTime() - now.getTime()) / DAY_MS);
      return {
        code: expired ? 'crl.imported_expired' : 'crl.imported_expiring',
        detail: expired
          ? `The imported CRL of ${crl.issuerId} expired at ${crl.nextUpdate.toISOString()}: relying parties that check it refuse the chain. Run the crl ceremony and import its CRL.`
          : `The imported CRL of ${crl.issuerId} expires at ${crl.nextUpdate.toISOString()} (in ${days} days): run the crl ceremony and import its CRL before then.`,
        issuer: crl.issuerId,
        nextUpdate: crl.nextUpdate.toISOString(),
      };
    });
}

/** Runs one readiness check with a time budget, so a hung dependency answers 503, not a hang. */
async function check(run: () => Promise<CheckResult>, timeoutMs: number): Promise<CheckResult> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<CheckResult>((resolve) => {
    timer = setTimeout(() => resolve('timed out'), timeoutMs);
  });
  try {
    return await Promise.race([run().catch(() => 'unreachable'), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Partition members as /readyz reports them: those neither usable nor lacking keys
 * (`members`: down, sealed) and those lacking the issuers' keys (`keys`), each `partition member
 * state`; `ok` when there are none. Absent without members to report (no partition client).
 */
export function memberChecks(members: { partition: string; member: string; state: string }[]): {
  members?: string;
  keys?: string;
} {
  if (members.length === 0) return {};
  const list = (wanted: (state: string) => boolean) =>
    members
      .filter((m) => wanted(m.state))
      .map((m) => `${m.partition} ${m.member} ${m.state}`)
      .join('; ') || 'ok';
  return {
    members: list((state) => state !== 'up' && state !== 'missing-keys'),
    keys: list((state) => state === 'missing-keys'),
  };
}

export function healthRoutes(
  { deps, metrics }: RouteContext,
  { checkTimeoutMs = 2000 }: { checkTimeoutMs?: number } = {},
): Hono<ApiEnv> {
  const app = new Hono<ApiEnv>();
  const openapi = readFileSync(OPENAPI_PATH, 'utf8');
  const warningMarginMs = deps.options?.importedCrlExpiryWarningMs ?? 30 * DAY_MS;
  if (!Number.isFinite(warningMarginMs) || warningMarginMs < 0) {
    throw new RangeError('importedCrlExpiryWarningMs must be a non-negative number');
  }

  /** Warnings never make a node unready: a database trouble here is reported by its own check. */
  async function warnings(): Promise<ReadinessWarning[]> {
    const crls = deps.revocation?.crls;
    if (!crls) return [];
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<[]>((resolve) => {
      timer = setTimeout(() => resolve([]), checkTimeoutMs);
    });
    try {
      const list = await Promise.race([crls.listLatestInfo().catch(() => []), timeout]);
      return importedCrlWarnings(list, deps.clock.now(), warningMarginMs);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Liveness: the process answers. */
  app.get('/healthz', (c) => {
    c.header('cache-control', 'no-store');
    return c.json({ status: 'ok' });
  });

  /**
   * Readiness: the database answers and the issuing partition is reachable and unsealed. The body
   * says what is missing besides (issue #29): partition members that are not usable
   * (`checks.members`) and members that lack the issuers' keys (`checks.keys`); with another
   * member usable the node stays ready. Ready answers also list `warnings` (an imported CRL near
   * its nextUpdate).
   */
  app.get('/readyz', async (c) => {
    const [database, partition] = await Promise.all([
      check(async () => {
        await deps.readiness.database();
        return 'ok';
      }, checkTimeoutMs),
      check(async () => {
        const { state } = await deps.readiness.partition();
        return state === 'unsealed' ? 'ok' : state;
      }, checkTimeoutMs),
    ]);
    const checks = { database, partition, ...memberChecks(deps.readiness.members?.() ?? []) };
    c.header('cache-control', 'no-store');
    if (database === 'ok' && partition === 'ok')
      return c.json({ status: 'ready', checks, warnings: await warnings() });
    for (const [name, value] of [
      ['database', database],
      ['partition', partition],
    ] as const) {
      if (value !== 'ok') metrics.readinessFailures.inc({ check: name });
    }
    return problemResponse(c, {
      code: 'service.not_ready',
      status: 503,
      title: 'Service unavailable',
      detail: `Not ready: ${Object.entries(checks)
        .filter(([, value]) => value !== 'ok')
        .map(([name, value]) => `${name} ${value}`)
        .join(', ')}.`,
      extra: { checks },
      headers: { 'retry-after': '5', 'cache-control': 'no-store' },
    });
  });

  app.get('/openapi.yaml', (c) => {
    c.header('content-type', 'application/yaml; charset=utf-8');
    return c.body(openapi);
  });

  return app;
}
