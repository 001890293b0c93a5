import type { Logger } from 'pino';
import {
  type AttemptLimiter,
  type CredentialLimiter,
  createMemoryAttemptLimiter,
  RateLimiter,
} from '../api/middleware/rate-limit.ts';
import {
  createSharedAttemptLimiter,
  createSharedCredentialLimiter,
} from '../api/middleware/rate-limit-shared.ts';
import { createRateLimitsRepository } from '../db/rate-limits.repository.ts';
import type { Runtime } from './runtime.ts';

/** How often idle buckets are deleted, and after how long idle (a full bucket is as good as none). */
const PURGE_EVERY_MS = 60_000;
const IDLE_SECONDS = 300;

export interface NodeRateLimits {
  /** Requests per credential (rateLimit.perMinute). */
  credential: CredentialLimiter;
  /** A per-key budget of events, e.g. failed authentication per address. */
  attempts(scope: string, perMinute: number): AttemptLimiter;
  close(): void;
}

/**
 * The node's rate limits (issue #29). On PostgreSQL they live in table rate_limit_buckets, so a
 * budget holds across the HTTP workers of a node and across nodes; on the embedded database
 * (one process) in memory. `background`: this process deletes idle buckets now and then (one
 * per node is enough; several are harmless).
 */
export function createNodeRateLimits(
  runtime: Runtime,
  logger: Logger,
  { background }: { background: boolean },
): NodeRateLimits {
  const { clock, config } = runtime;
  if (runtime.database.dialect !== 'postgres') {
    return {
      credential: new RateLimiter({ perMinute: config.rateLimit.perMinute, clock }),
      attempts: (_scope, perMinute) => createMemoryAttemptLimiter({ perMinute, clock }),
      close() {},
    };
  }
  const buckets = createRateLimitsRepository({ db: runtime.database.db });
  const timer = background
    ? setInterval(() => {
        buckets.purgeIdle(IDLE_SECONDS).catch((error: unknown) => {
          logger.warn({ err: error }, 'could not delete idle rate-limit buckets');
        });
      }, PURGE_EVERY_MS)
    : undefined;
  timer?.unref();
  return {
    credential: createSharedCredentialLimiter({ buckets, perMinute: config.rateLimit.perMinute, clock }),
    attempts: (scope, perMinute) => createSharedAttemptLimiter({ buckets, scope, perMinute, clock }),
    close() {
      if (timer) clearInterval(timer);
    },
  };
}
