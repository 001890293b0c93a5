import type { MiddlewareHandler } from 'hono';
import { routePath } from 'hono/route';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { ApiEnv } from './env.ts';

/**
 * Prometheus metrics (issue #10), in registries of their own so several apps (tests) never
 * collide. `partitionSignSeconds` and `databaseSeconds` are for the service wiring to observe
 * around partition signatures and database calls; the edge records requests and issuances, and
 * probes readiness (with its latencies) on every scrape.
 *
 * Two registries (issue #29): `registry` holds what every process of a node counts (counters and
 * histograms), which a scrape gathers from all the node's HTTP workers and sums (`gather`);
 * `probes` holds the gauges the process answering the scrape sets from what it sees then
 * (readiness, CRLs, partition members), which summing would falsify.
 */
export interface Metrics {
  registry: Registry;
  probes: Registry;
  /** The node's counters and histograms as exposition text (`registry` alone, or summed over the workers). */
  gather(): Promise<string>;
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
  /** Answers of status 500 and above, by status and problem code (db.unavailable, hsm.unavailable, internal, ...). */
  errorResponses: Counter<'status' | 'code'>;
  /** A partition member that was up and became down, sealed or missing-keys, as this process's client saw it. */
  partitionMemberFailures: Counter<'partition' | 'member' | 'state'>;
  /** /readyz answers that were not ready, by the check that failed. */
  readinessFailures: Counter<'check'>;
}

const MEMBER_STATES = ['up', 'down', 'sealed', 'missing-keys'];

export function createMetrics({
  prefix = 'signet_',
  gather,
}: {
  prefix?: string;
  /** Gathers `registry` from every HTTP worker of the node (cli/workers.ts); this process's alone otherwise. */
  gather?: () => Promise<string>;
} = {}): Metrics {
  const registry = new Registry();
  const probes = new Registry();
  return {
    registry,
    probes,
    gather: gather ?? (() => registry.metrics()),
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
      registers: [probes],
    }),
    crlNextUpdate: new Gauge({
      name: `${prefix}crl_next_update_timestamp_seconds`,
      help: 'nextUpdate of each served CRL (Unix time); source is online (signed here) or imported (signed offline)',
      labelNames: ['issuer', 'shard', 'kind', 'source'],
      registers: [probes],
    }),
    partitionMemberState: new Gauge({
      name: `${prefix}partition_member_state`,
      help: 'Each partition member: 1 for its current state (up, down, sealed, missing-keys)',
      labelNames: ['partition', 'member', 'state'],
      registers: [probes],
    }),
    partitionMemberInFlight: new Gauge({
      name: `${prefix}partition_member_in_flight`,
      help: 'Requests sent to each partition member and not yet answered',
      labelNames: ['partition', 'member'],
      registers: [probes],
    }),
    // A gauge read from the client's own count at each scrape (monotonic while the node runs).
    partitionMemberFailovers: new Gauge({
      name: `${prefix}partition_member_failovers`,
      help: 'Requests a partition member failed that were retried on another member, since the node started',
      labelNames: ['partition', 'member'],
      registers: [probes],
    }),
    errorResponses: new Counter({
      name: `${prefix}error_responses_total`,
      help: 'Answers with status 500 or above, by status and problem code (db.unavailable, hsm.unavailable, service.not_ready, internal)',
      labelNames: ['status', 'code'],
      registers: [registry],
    }),
    partitionMemberFailures: new Counter({
      name: `${prefix}partition_member_failures_total`,
      help: 'A partition member that was up became down, sealed or missing-keys (counted by each HTTP worker that saw it)',
      labelNames: ['partition', 'member', 'state'],
      registers: [registry],
    }),
    readinessFailures: new Counter({
      name: `${prefix}readiness_failures_total`,
      help: 'Not-ready answers of /readyz, by failed check (database, partition)',
      labelNames: ['check'],
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
    const status = c.res.status;
    end({
      method: c.req.method,
      route: route === '/*' || route === '*' ? 'unmatched' : route,
      status: String(status),
    });
    if (status >= 500) metrics.errorResponses.inc({ status: String(status), code: await problemCode(c.res) });
  };
}

/** The `code` of a problem document (RFC 9457, src/api/problem.ts), read from a copy of the answer. */
async function problemCode(response: Response): Promise<string> {
  if (!response.headers.get('content-type')?.startsWith('application/problem+json')) return 'none';
  try {
    const body = (await response.clone().json()) as { code?: unknown };
    return typeof body.code === 'string' && /^[a-z0-9_.]{1,64}$/.test(body.code) ? body.code : 'none';
  } catch {
    return 'none';
  }
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
