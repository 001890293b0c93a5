/**
 * Sends mutated requests to a running CA and holds every answer to the rules of issue #34: an
 * answer within the time limit (no hang), never a 5xx, the error shape the route promises, and
 * the server process alive. A failing input is kept as a regression fixture.
 */
import { bounded, keepFailure, Rng, regressionInputs, tally } from './mutator.ts';

export interface FuzzRequest {
  method: 'GET' | 'POST';
  path: string;
  contentType?: string;
  body?: Uint8Array;
  headers?: Record<string, string>;
  /** What to keep as the fixture when this input fails (default: the body). */
  kept?: Uint8Array;
}

export interface HttpTarget {
  /** The fixture folder and the name in the tally. */
  name: string;
  /** The i-th mutated request (may fetch a fresh nonce first). */
  make(rng: Rng, i: number): Promise<FuzzRequest> | FuzzRequest;
  /** A kept input replayed as this target's request. */
  replay(body: Uint8Array): FuzzRequest;
  /** The route's promise about its answers, beyond "not 5xx": a sentence if broken. */
  check?(status: number, contentType: string, body: Uint8Array): string | undefined;
}

/** Error answers of the REST API are RFC 9457 problem documents. */
export function problemCheck(status: number, contentType: string, body: Uint8Array): string | undefined {
  if (status < 400) return undefined;
  if (!contentType.startsWith('application/problem+json')) return `a ${status} answered as ${contentType}`;
  try {
    const problem = JSON.parse(Buffer.from(body).toString('utf8')) as { type?: unknown; status?: unknown };
    if (typeof problem.type !== 'string' || problem.status !== status)
      return `a ${status} problem without type/status`;
  } catch {
    return `a ${status} problem that is not JSON`;
  }
  return undefined;
}

const TIMEOUT_MS = 20_000;

async function send(
  base: string,
  request: FuzzRequest,
): Promise<{ status: number; contentType: string; body: Uint8Array }> {
  const response = await fetch(`${base}${request.path}`, {
    method: request.method,
    headers: {
      ...(request.contentType ? { 'content-type': request.contentType } : {}),
      ...(request.headers ?? {}),
    },
    ...(request.body ? { body: request.body } : {}),
    signal: AbortSignal.timeout(TIMEOUT_MS),
  });
  const body = new Uint8Array(await response.arrayBuffer());
  return { status: response.status, contentType: response.headers.get('content-type') ?? '', body };
}

/**
 * Runs the kept inputs of `target`, then `count` new ones from `seed`, `concurrency` at a time.
 * Returns the failures (at most 10 are collected; the run stops early after them).
 */
export async function fuzzHttp(
  base: string,
  target: HttpTarget,
  { count, seed, concurrency = 8 }: { count: number; seed: number; concurrency?: number },
): Promise<string[]> {
  const failures: string[] = [];
  const judge = async (request: FuzzRequest, label: string) => {
    try {
      const answer = await bounded(TIMEOUT_MS + 5000, `${target.name} ${label}`, () => send(base, request));
      const broken =
        answer.status >= 500
          ? `answered ${answer.status}: ${Buffer.from(answer.body).toString('utf8').slice(0, 300)}`
          : target.check?.(answer.status, answer.contentType, answer.body);
      if (broken) throw new Error(broken);
    } catch (error) {
      const input = request.kept ?? request.body;
      const kept = input ? keepFailure(target.name, input) : '(no body)';
      failures.push(
        `${target.name} ${label} ${request.method} ${request.path.slice(0, 120)}: ${(error as Error).message} (input kept in ${kept})`,
      );
    }
  };
  for (const fixture of regressionInputs(target.name))
    await judge(target.replay(fixture.bytes), `fixture ${fixture.name}`);
  let next = 0;
  const worker = async (lane: number) => {
    const rng = new Rng(seed * 31 + lane);
    while (next < count && failures.length < 10) {
      const i = next++;
      await judge(await target.make(rng, i), `input ${i} (seed ${seed}, lane ${lane})`);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, (_, lane) => worker(lane)));
  tally.set(target.name, (tally.get(target.name) ?? 0) + Math.min(next, count));
  return failures;
}
