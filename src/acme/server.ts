import type { AuditEventInput } from '../db/audit.repository.ts';
import { createBatcher } from '../lib/batcher.ts';
import { AppError } from '../lib/errors.ts';
import { keyChange, listOrders, newAccount, updateAccount } from './accounts.ts';
import { MAX_QUEUED, postChallenge, runValidation } from './challenges.ts';
import type { AcmeCall, AcmeContext } from './context.ts';
import { type CreatedEabKey, createEabKey, offeredPolicies } from './eab.ts';
import { AcmeError, acmeError } from './errors.ts';
import { createNonceService } from './nonces.ts';
import { acmeUrls, directoryDocument } from './objects.ts';
import { finalize, getAuthorization, getCertificate, getOrder, newOrder } from './orders.ts';
import { getRenewalInfo } from './renewal-info.ts';
import { revokeCert } from './revoke.ts';
import type { AcmeRequest, AcmeResponse, AcmeServerOptions } from './types.ts';
import { createValidationQueue } from './validation/queue.ts';

/**
 * The ACME server (RFC 8555): one per Signet node, serving every configured directory. The HTTP
 * edge hands it requests without knowing ACME; it answers each with a fresh Replay-Nonce and
 * the directory's index link, errors included (RFC 8555 §6.5, §7.1), and runs validations and
 * expiry in the background.
 */
export interface AcmeServer {
  readonly directoryNames: readonly string[];
  handle(request: AcmeRequest): Promise<AcmeResponse>;
  /**
   * An error raised on the way to `handle` (a body over the limit, a timeout) as an ACME problem,
   * with a nonce like every other answer.
   */
  errorResponse(error: unknown, directory: string | undefined, client: string): Promise<AcmeResponse>;
  /** A new single-use EAB key (RFC 8555 §7.3.4) for `POST /v1/acme/eab-keys`. */
  createEabKey(input: {
    directory: string;
    policies: string[];
    expiresAt: Date | null;
    createdBy: string;
  }): Promise<CreatedEabKey>;
  /** Starts the periodic sweep (expiry, abandoned validations). */
  start(): void;
  /** Expires what time has decided and takes up validations another node abandoned. */
  sweep(): Promise<void>;
  /** Resolves when no validation is waiting or running (tests). */
  idle(): Promise<void>;
  close(): Promise<void>;
}

type Handler = (ctx: AcmeContext, call: AcmeCall, ...ids: string[]) => Promise<AcmeResponse>;

interface Route {
  pattern: string[];
  methods: Partial<Record<'GET' | 'POST', Handler>>;
}

/** `:id` matches one path segment of base64url or hex; `:certid` an RFC 9773 certificate identifier. */
const ROUTES: Route[] = [
  { pattern: ['directory'], methods: { GET: directory } },
  { pattern: ['new-nonce'], methods: { GET: newNonce } },
  { pattern: ['new-account'], methods: { POST: newAccount } },
  { pattern: ['account', ':id'], methods: { POST: updateAccount } },
  { pattern: ['new-order'], methods: { POST: newOrder } },
  { pattern: ['order', ':id'], methods: { POST: getOrder } },
  { pattern: ['order', ':id', 'finalize'], methods: { POST: finalize } },
  { pattern: ['authz', ':id'], methods: { POST: getAuthorization } },
  { pattern: ['chall', ':id'], methods: { POST: postChallenge } },
  { pattern: ['cert', ':id'], methods: { POST: getCertificate } },
  { pattern: ['cert', ':id', ':id'], methods: { POST: getCertificate } },
  { pattern: ['revoke-cert'], methods: { POST: revokeCert } },
  { pattern: ['key-change'], methods: { POST: keyChange } },
  { pattern: ['account', ':id', 'orders'], methods: { POST: listOrders } },
  { pattern: ['account', ':id', 'orders', ':id'], methods: { POST: listOrders } },
  { pattern: ['renewal-info', ':certid'], methods: { GET: getRenewalInfo } },
];

async function directory(ctx: AcmeContext, call: AcmeCall): Promise<AcmeResponse> {
  const profiles: Record<string, string> = {};
  for (const name of offeredPolicies(call.directory)) {
    profiles[name] = ctx.options.policies.get(name)?.description ?? name;
  }
  return {
    status: 200,
    headers: { 'content-type': 'application/json' },
    links: [],
    body: directoryDocument(call.urls, {
      externalAccountRequired: call.directory.eab === 'required',
      profiles,
    }),
  };
}

/** RFC 8555 §7.2: HEAD answers 200, GET 204, both with a nonce and never cached. */
async function newNonce(_ctx: AcmeContext, call: AcmeCall): Promise<AcmeResponse> {
  return {
    status: call.request.method === 'HEAD' ? 200 : 204,
    headers: { 'cache-control': 'no-store' },
    links: [],
  };
}

function match(resource: string[]): { route: Route; ids: string[] } | undefined {
  for (const route of ROUTES) {
    if (route.pattern.length !== resource.length) continue;
    const ids: string[] = [];
    const matched = route.pattern.every((part, i) => {
      const segment = resource[i]!;
      if (part === ':certid') {
        if (!/^[A-Za-z0-9_-]{1,128}\.[A-Za-z0-9_-]{1,64}$/.test(segment)) return false;
        ids.push(segment);
        return true;
      }
      if (part !== ':id') return part === segment;
      if (!/^[A-Za-z0-9_-]{1,64}$/.test(segment)) return false;
      ids.push(segment);
      return true;
    });
    if (matched) return { route, ids };
  }
  return undefined;
}

// Longer than 80 lines: one closure over the shared state (nonces, queue, audit batcher, sweep
// timer) whose inner functions are each short; the handlers themselves live in their own files.
// biome-ignore lint/complexity/noExcessiveLinesPerFunction: a factory: its closures share the server state; each is short
export function createAcmeServer(options: AcmeServerOptions): AcmeServer {
  const { clock, logger, repository } = options;
  const directories = new Map(options.directories.map((d) => [d.name, d]));
  for (const d of options.directories) {
    for (const policy of offeredPolicies(d)) {
      if (!options.policies.get(policy)) {
        throw new Error(`acme.directories: directory ${d.name} names policy ${policy}, which is not loaded`);
      }
    }
  }
  const auditLog = createBatcher<AuditEventInput, void>({
    flush: async (events) => {
      await options.audit.append(events);
      return events.map(() => undefined);
    },
  });
  const nonces = createNonceService({
    repository,
    clock,
    lifetimeMs: options.nonceLifetimeMs,
    maxPerClient: options.maxNoncesPerClient ?? 1000,
  });
  const ctx: AcmeContext = {
    options,
    now: () => clock.now(),
    nonces,
    audit: (event) => auditLog.submit(event),
    queue: undefined as never,
  };
  ctx.queue = createValidationQueue({
    concurrency: options.validationConcurrency,
    maxQueued: MAX_QUEUED,
    run: (id) => runValidation(ctx, id),
    onError: (error, id) =>
      logger?.error({ err: error, challenge: id }, 'ACME validation could not be recorded'),
  });
  let timer: NodeJS.Timeout | undefined;

  /** Every answer carries a new nonce and the index link (RFC 8555 §6.5, §7.1). */
  async function finish(
    response: AcmeResponse,
    directoryName: string | undefined,
    client: string,
  ): Promise<AcmeResponse> {
    const headers = { ...response.headers };
    try {
      headers['replay-nonce'] = await nonces.issue(client);
    } catch (error) {
      logger?.error({ err: error }, 'could not store an ACME nonce');
    }
    const links = [...response.links];
    if (directoryName && directories.has(directoryName)) {
      links.push(`<${acmeUrls(options.publicUrl, directoryName).directory}>;rel="index"`);
    }
    return { ...response, headers, links };
  }

  function problemOf(error: unknown): AcmeError {
    if (error instanceof AcmeError) return error;
    if (error instanceof AppError) {
      if (error.code === 'request.body_too_large')
        return acmeError('malformed', error.message, { status: 413, cause: error });
      if (error.code === 'request.body_timeout')
        return acmeError('malformed', error.message, { status: 408, cause: error });
      if (error.category === 'unavailable') {
        return acmeError('serverInternal', 'the server is unavailable; retry later', {
          status: 503,
          retryAfter: 5,
          cause: error,
        });
      }
    }
    logger?.error({ err: error }, 'ACME request failed');
    return acmeError('serverInternal', 'the server could not answer this request', { cause: error });
  }

  function problemResponse(problem: AcmeError): AcmeResponse {
    return {
      status: problem.status,
      headers: {
        'content-type': 'application/problem+json',
        ...(problem.retryAfter !== undefined ? { 'retry-after': String(problem.retryAfter) } : {}),
        ...problem.headers,
      },
      links: [],
      body: problem.toProblem(),
    };
  }

  async function dispatch(request: AcmeRequest): Promise<AcmeResponse> {
    const dir = directories.get(request.directory);
    if (!dir)
      throw acmeError('malformed', `there is no ACME directory named ${request.directory.slice(0, 64)}`, {
        status: 404,
      });
    const found = match(request.resource);
    if (!found) throw acmeError('malformed', 'there is no such ACME resource', { status: 404 });
    const method = request.method === 'HEAD' ? 'GET' : request.method;
    const handler = found.route.methods[method as 'GET' | 'POST'];
    if (!handler) {
      const allowed = Object.keys(found.route.methods).flatMap((m) => (m === 'GET' ? ['GET', 'HEAD'] : [m]));
      // RFC 8555 §6.3: resources other than the directory and newNonce are fetched with POST-as-GET.
      throw acmeError('malformed', `use ${allowed.join(' or ')} here (RFC 8555 §6.3)`, {
        status: 405,
        headers: { allow: allowed.join(', ') },
      });
    }
    const urls = acmeUrls(options.publicUrl, dir.name);
    const url = `${urls.directory.slice(0, -'directory'.length)}${request.resource.join('/')}`;
    const call: AcmeCall = { directory: dir, urls, request, url };
    return handler(ctx, call, ...found.ids);
  }

  const server: AcmeServer = {
    directoryNames: [...directories.keys()],

    async handle(request) {
      let response: AcmeResponse;
      try {
        response = await dispatch(request);
      } catch (error) {
        response = problemResponse(problemOf(error));
      }
      return finish(response, request.directory, request.client);
    },

    async errorResponse(error, directoryName, client) {
      return finish(problemResponse(problemOf(error)), directoryName, client);
    },

    createEabKey: (input) => createEabKey(ctx, input),

    start() {
      if (timer) return;
      const interval = options.sweepIntervalMs ?? 60_000;
      const tick = () => {
        server.sweep().catch((error) => logger?.error({ err: error }, 'ACME sweep failed'));
      };
      timer = setInterval(tick, interval);
      timer.unref();
      tick();
    },

    async sweep() {
      const expired = await repository.expire();
      if (expired.orders > 0 || expired.authorizations > 0) {
        await ctx.audit({
          actor: 'system',
          action: 'acme.expire',
          decision: 'allowed',
          details: { orders: expired.orders, authorizations: expired.authorizations },
        });
      }
      const lease = new Date(clock.now().getTime() + options.validationTimeoutMs + 60_000);
      const room = Math.max(0, MAX_QUEUED - ctx.queue.size);
      if (room === 0) return;
      for (const id of await repository.claimStaleChallenges(lease, Math.min(room, 1000))) {
        logger?.info({ challenge: id }, 'taking up an ACME validation another node left');
        ctx.queue.enqueue(id);
      }
    },

    idle: () => ctx.queue.idle().then(() => auditLog.drain()),

    async close() {
      if (timer) clearInterval(timer);
      timer = undefined;
      await ctx.queue.close();
      await auditLog.drain();
    },
  };
  return server;
}
