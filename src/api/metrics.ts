import type { MiddlewareHandler } from 'hono';
import { routePath } from 'hono/route';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { ApiEnv } from './env.ts';

/**
 * Prometheus metrics (issue #10), in a registry of their own so several apps (tests) never
 * collide. `partitionSignSeconds` and `databaseSeconds` are for the service wiring to observe
 * around partition signatures and database calls; the edge records requests and issuances, and
 * probes readiness (with its latencies) on every scrape.
 */
export interface Metrics {
  registry: Registry;
  httpRequestSeconds: Histogram<'method' | 'route' | 'status'>;
  issuances: Counter<'policy' | 'outcome'>;
  partitionSignSeconds: Histogram<'purpose'>;
  databaseSeconds: Histogram<'operation'>;
  ready: Gauge<'check'>;
  /** nextUpdate of each served CRL, Unix seconds (issue #18: alert before an imported one expires). */
  crlNextUpdate: Gauge<'issuer' | 'shard' | 'kind' | 'source'>;
  /** Issue #22: 1 for each member's current state (up, down, sealed, missing-keys), 0 for the others. */
  partitionMemberState: Gauge<'partition' | 'member' | 'state'>;
  partitionMemberInFlight: Gauge<'partition' | 'member'>;
  partitionMemberFailovers: Gauge<'partition' | 'member'>;
}

const MEMBER_STATES = ['up', 'down', 'sealed', 'missing-keys'];

export function createMetrics({ prefix = 'signet_' }: { prefix?: string } = {}): Metrics {
  const registry = new Registry();
  return {
    registry,
    httpRequestSeconds: new Histogram({
      name: `${prefix}http_request_duration_seconds`,
      help: 'HTTP request latency by matched route, method and status',
      labelNames: ['method', 'route', 'status'],
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
    }),
    issuances: new Counter({
      name: `${prefix}issuances_total`,
      help: 'Issuance requests by policy and outcome (issued, or the refusal code)',
      labelNames: ['policy', 'outcome'],
      registers: [registry],
    }),
    partitionSignSeconds: new Histogram({
      name: `${prefix}partition_sign_duration_seconds`,
      help: 'Latency of signatures made by the HSM partition, by purpose',
      labelNames: ['purpose'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
      registers: [registry],
    }),
    databaseSeconds: new Histogram({
      name: `${prefix}database_duration_seconds`,
      help: 'Database latency by operation (ping is measured on every scrape)',
      labelNames: ['operation'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
      registers: [registry],
    }),
    ready: new Gauge({
      name: `${prefix}ready`,
      help: '1 when the dependency answers (database) or is unsealed (partition), else 0',
      labelNames: ['check'],
      registers: [registry],
    }),
    crlNextUpdate: new Gauge({
      name: `${prefix}crl_next_update_timestamp_seconds`,
      help: 'nextUpdate of each served CRL (Unix time); source is online (signed here) or imported (signed offline)',
      labelNames: ['issuer', 'shard', 'kind', 'source'],
      registers: [registry],
    }),
    partitionMemberState: new Gauge({
      name: `${prefix}partition_member_state`,
      help: 'Each partition member: 1 for its current state (up, down, sealed, missing-keys)',
      labelNames: ['partition', 'member', 'state'],
      registers: [registry],
    }),
    partitionMemberInFlight: new Gauge({
      name: `${prefix}partition_member_in_flight`,
      help: 'Requests sent to each partition member and not yet answered',
      labelNames: ['partition', 'member'],
      registers: [registry],
    }),
    // A gauge read from the client's own count at each scrape (monotonic while the node runs).
    partitionMemberFailovers: new Gauge({
      name: `${prefix}partition_member_failovers`,
      help: 'Requests a partition member failed that were retried on another member, since the node started',
      labelNames: ['partition', 'member'],
      registers: [registry],
    }),
  };
}

/** Records every request's latency by its matched route (never the raw path: bounded labels). */
export function requestMetrics(metrics: Metrics): MiddlewareHandler<ApiEnv> {
  if (!metrics?.httpRequestSeconds)
    throw new Error('requestMetrics: metrics from createMetrics() are required');
  return async function requestMetricsMiddleware(c, next) {
    const end = metrics.httpRequestSeconds.startTimer();
    await next();
    const route = routePath(c, -1);
    end({
      method: c.req.method,
      route: route === '/*' || route === '*' ? 'unmatched' : route,
      status: String(c.res.status),
    });
  };
}

/** Probes readiness for a scrape, recording the database ping latency. */
export async function probeReadiness(
  metrics: Metrics,
  readiness: {
    database(): Promise<void>;
    partition(): Promise<{ state: string }>;
    members?(): { partition: string; member: string; state: string; inFlight: number; failovers: number }[];
  },
  timeoutMs = 2000,
): Promise<void> {
  for (const m of readiness.members?.() ?? []) {
    const labels = { partition: m.partition, member: m.member };
    for (const state of MEMBER_STATES)
      metrics.partitionMemberState.set({ ...labels, state }, m.state === state ? 1 : 0);
    metrics.partitionMemberInFlight.set(labels, m.inFlight);
    metrics.partitionMemberFailovers.set(labels, m.failovers);
  }
  const within = <T>(promise: Promise<T>) =>
    Promise.race([
      promise,
      new Promise<never>((_, reject) => setTimeout(() => reject(new Error('timed out')), timeoutMs).unref()),
    ]);
  const endPing = metrics.databaseSeconds.startTimer({ operation: 'ping' });
  const [database, partition] = await Promise.allSettled([
    within(readiness.database()).finally(() => endPing()),
    within(readiness.partition()),
  ]);
  metrics.ready.set({ check: 'database' }, database.status === 'fulfilled' ? 1 : 0);
  metrics.ready.set(
    { check: 'partition' },
    partition.status === 'fulfilled' && partition.value.state === 'unsealed' ? 1 : 0,
  );
}

/** Sets the CRL gauge to the CRLs served now (read on every scrape: an import or a new CRL shows at once). */
export async function probeCrls(
  metrics: Metrics,
  crls: { listLatestInfo(): Promise<CrlSummary[]> } | undefined,
): Promise<void> {
  if (!crls) return;
  let list: CrlSummary[];
  try {
    list = await crls.listLatestInfo();
  } catch {
    // The database is down: signet_ready{check="database"} says so; keep the last values.
    return;
  }
  metrics.crlNextUpdate.reset();
  for (const crl of list) {
    metrics.crlNextUpdate.set(
      {
        issuer: crl.issuerId,
        shard: String(crl.shard),
        kind: crl.kind,
        source: crl.imported ? 'imported' : 'online',
      },
      Math.floor(crl.nextUpdate.getTime() / 1000),
    );
  }
}

interface CrlSummary {
  issuerId: string;
  shard: number;
  kind: string;
  nextUpdate: Date;
  imported: boolean;
}
