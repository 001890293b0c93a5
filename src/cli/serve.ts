import { readFileSync } from 'node:fs';
import type { Registry } from 'prom-client';
import type { AcmeServer } from '../acme/server.ts';
import { createApp } from '../api/app.ts';
import { createFailedAuthAudit } from '../api/failed-auth.ts';
import { createLogger } from '../api/logger.ts';
import { createMetricsApp } from '../api/metrics.routes.ts';
import { createMetrics } from '../api/metrics.ts';
import { type RunningServer, startServer } from '../api/server.ts';
import { loadConfig, resolveIn } from '../config/config.ts';
import type { Clock } from '../lib/clock.ts';
import { parseDuration } from '../lib/duration.ts';
import { createAcmeFromConfig } from './acme.ts';
import { createNodeRateLimits } from './rate-limits.ts';
import { openRuntime, type Runtime } from './runtime.ts';

export interface ServeOptions {
  dataDir: string;
  port?: number;
  host?: string;
  tls?: { cert: string; key: string; clientCa?: string };
  /** The service's clock (tests move it; the system clock otherwise). */
  clock?: Clock;
  /** PostgreSQL instead of the data folder's database; DATABASE_URL otherwise. */
  databaseUrl?: string;
  /**
   * This process is HTTP worker `index` of `serve --workers N` (cli/workers.ts): the primary
   * spawned the partition members; worker 0 alone runs the background work.
   */
  worker?: {
    index: number;
    announceApiKeyRevocation(id: string): Promise<void>;
    /**
     * The node's counters: `share` offers this worker's registry to the primary, `gather` asks
     * the primary for every worker's, summed (cli/workers.ts).
     */
    metrics: { share(registry: Registry): void; gather(): Promise<string> };
  };
}

export interface Serving {
  runtime: Runtime;
  server: RunningServer;
  /** The ACME server, when signet.yaml configures directories. */
  acme?: AcmeServer;
  stop(): Promise<void>;
}

/** Opens the runtime and serves the API on it; `stop()` closes the listener, then the runtime. */
// biome-ignore lint/complexity/noExcessiveLinesPerFunction: a straight line of start-up steps in the order they must happen
export async function serveDataDir(options: ServeOptions): Promise<Serving> {
  const level = (process.env.SIGNET_LOG_LEVEL ?? loadConfig(options.dataDir).log.level) as 'info';
  const logger = createLogger({ level });
  const metrics = createMetrics(options.worker ? { gather: options.worker.metrics.gather } : {});
  options.worker?.metrics.share(metrics.registry);
  const runtime = await openRuntime({
    dataDir: options.dataDir,
    logger,
    ...(options.clock ? { clock: options.clock } : {}),
    revocation: true,
    waitForCustodians: true,
    ...(options.worker
      ? {
          spawnPartitions: false,
          background: options.worker.index === 0,
          announceApiKeyRevocation: options.worker.announceApiKeyRevocation,
        }
      : {}),
    observe: {
      partitionSign: (purpose, seconds) => metrics.partitionSignSeconds.observe({ purpose }, seconds),
      database: (operation, seconds) => metrics.databaseSeconds.observe({ operation }, seconds),
      memberState: ({ partition, member, state, previous }) => {
        if (previous === 'up') metrics.partitionMemberFailures.inc({ partition, member, state });
      },
    },
    ...(options.databaseUrl
      ? { databaseUrl: options.databaseUrl }
      : process.env.DATABASE_URL
        ? { databaseUrl: process.env.DATABASE_URL }
        : {}),
  });
  let acme: ReturnType<typeof createAcmeFromConfig>;
  let limits: ReturnType<typeof createNodeRateLimits> | undefined;
  try {
    const { config } = runtime;
    const clusters = [...runtime.partitions.values()];
    const readiness = {
      database: () => runtime.database.ping(),
      // Ready while every partition has a member that is up (issue #22); else why not, by partition.
      partition: async () => {
        if (clusters.length === 0) return { state: 'uninitialized' };
        const states = await Promise.all(
          clusters.map(async (c) => ({ name: c.name, ...(await c.readiness()) })),
        );
        const waiting = states.filter((s) => s.state !== 'unsealed');
        if (waiting.length === 0) return { state: 'unsealed' };
        return {
          state: waiting.map((s) => (clusters.length > 1 ? `${s.name} ${s.state}` : s.state)).join('; '),
        };
      },
      members: () => clusters.flatMap((c) => c.snapshot()),
    };
    const requestTimeoutMs = durationMs(config.server.requestTimeout);
    const failedAuth = createFailedAuthAudit({
      audit: runtime.repositories.audit,
      clock: runtime.clock,
      logger,
      intervalMs: durationMs(config.audit.failedAuthInterval),
    });
    limits = createNodeRateLimits(runtime, logger, { background: (options.worker?.index ?? 0) === 0 });
    // One budget of failed authentication per address, for the REST API and ACME alike.
    const attempts = limits.attempts('failed-auth', config.rateLimit.failedAuthPerMinute);
    acme = createAcmeFromConfig({ runtime, logger, failedAuth: attempts, limits });
    const app = createApp({
      metrics,
      limiter: limits.credential,
      failedAuth,
      attempts,
      ...(acme ? { acme } : {}),
      clock: runtime.clock,
      logger,
      ca: runtime.ca,
      renewal: runtime.renewal,
      apiKeys: runtime.repositories.apiKeys,
      idempotency: runtime.repositories.idempotency,
      certificates: runtime.repositories.certificates,
      issuers: runtime.repositories.issuers,
      policies: runtime.policies,
      audit: runtime.repositories.audit,
      ...(runtime.revocation ? { revocation: runtime.revocation } : {}),
      readiness,
      options: {
        ...(config.server.tls?.clients ? { tlsClients: config.server.tls.clients } : {}),
        bodyLimit: config.server.bodyLimit,
        rateLimitPerMinute: config.rateLimit.perMinute,
        failedAuthPerMinute: config.rateLimit.failedAuthPerMinute,
        requestTimeoutMs,
        importedCrlExpiryWarningMs: durationMs(config.crl.importedExpiryWarning),
        publicUrl: config.server.publicUrl,
      },
    });
    const tls = options.tls ?? config.server.tls;
    const server = await startServer(app, {
      host: options.host ?? config.server.host,
      port: options.port ?? config.server.port,
      logger,
      // The whole request must arrive within the same budget the app gives a handler.
      requestTimeoutMs,
      headersTimeoutMs: Math.min(10_000, requestTimeoutMs),
      ...(tls
        ? {
            tls: {
              cert: readFileSync(resolveIn(options.dataDir, tls.cert)),
              key: readFileSync(resolveIn(options.dataDir, tls.key)),
              ...(tls.clientCa ? { clientCa: readFileSync(resolveIn(options.dataDir, tls.clientCa)) } : {}),
            },
          }
        : {}),
    });
    // Prometheus may scrape a separate, unauthenticated listener (server.metricsPort).
    const metricsServer =
      config.server.metricsPort === undefined
        ? undefined
        : await startServer(
            // The metrics app sets no per-request variables; startServer only calls its fetch.
            createMetricsApp(metrics, readiness, runtime.revocation?.crls) as unknown as Parameters<
              typeof startServer
            >[0],
            {
              host: options.host ?? config.server.host,
              port: config.server.metricsPort,
            },
          );
    const onHangup = () => {
      runtime.policies.reload().then(
        (result) =>
          result.ok
            ? logger.info({ policies: result.policies }, 'policies reloaded (SIGHUP)')
            : logger.error(
                { errors: result.errors },
                'policy reload refused; the previous set stays in force',
              ),
        (error) => logger.error({ err: error }, 'policy reload failed'),
      );
    };
    process.on('SIGHUP', onHangup);
    if (!options.worker || options.worker.index === 0) acme?.start();
    return {
      runtime,
      server,
      ...(acme ? { acme } : {}),
      async stop() {
        process.off('SIGHUP', onHangup);
        await server.close(5000);
        await metricsServer?.close(1000);
        await acme?.close();
        await failedAuth.flush();
        limits?.close();
        await runtime.close();
      },
    };
  } catch (error) {
    await acme?.close();
    limits?.close();
    await runtime.close();
    throw error;
  }
}

function durationMs(text: string): number {
  const result = parseDuration(text);
  if (!result.ok) throw new Error(`invalid duration ${text}: ${result.reason}`);
  return result.seconds * 1000;
}
