/**
 * The load generator of bench/http-issue, run in a process of its own (`http-issue.ts --load`):
 * N workers over keep-alive `node:http` connections, a warm-up, then timed requests.
 */
import { readFileSync } from 'node:fs';
import { Agent, request } from 'node:http';

export interface LoadSpec {
  url: string;
  headers: Record<string, string>;
  bodyFile: string;
  expectStatus: number;
  concurrency: number;
  seconds: number;
  warmupSeconds: number;
}

export interface LoadResult {
  done: number;
  /** Requests answered during the warm-up, not timed. */
  warmedUp: number;
  /** The load generator's own CPU per timed request: near 1 ms means the client is the limit. */
  clientCpuMs: number;
  errors: number;
  firstError?: string;
  elapsedMs: number;
  latenciesMs: { p50: number; p99: number; max: number };
}

export async function runLoad(spec: LoadSpec): Promise<LoadResult> {
  const body = readFileSync(spec.bodyFile);
  const agent = new Agent({ keepAlive: true, maxSockets: spec.concurrency });
  const url = new URL(spec.url);
  const once = () =>
    new Promise<{ status: number; text: string }>((resolve, reject) => {
      const req = request(
        {
          agent,
          host: url.hostname,
          port: url.port,
          path: url.pathname + url.search,
          method: 'POST',
          headers: { ...spec.headers, 'content-length': String(body.length) },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (chunk: Buffer) => chunks.push(chunk));
          res.on('end', () =>
            resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }),
          );
          res.on('error', reject);
        },
      );
      req.on('error', reject);
      req.end(body);
    });
  let errors = 0;
  let firstError: string | undefined;
  const latencies: number[] = [];
  let warmedUp = 0;
  const loop = async (until: number, record: boolean) => {
    while (performance.now() < until) {
      const started = performance.now();
      try {
        const { status, text } = await once();
        if (status !== spec.expectStatus) throw new Error(`HTTP ${status}: ${text.slice(0, 200)}`);
        if (record) latencies.push(performance.now() - started);
        else warmedUp += 1;
      } catch (error) {
        errors += 1;
        firstError ??= String(error);
        if (errors > 100) throw new Error(`too many errors, first: ${firstError}`);
      }
    }
  };
  const workers = (until: number, record: boolean) =>
    Promise.all(Array.from({ length: spec.concurrency }, () => loop(until, record)));
  await workers(performance.now() + spec.warmupSeconds * 1000, false);
  errors = 0;
  const started = performance.now();
  const cpuBefore = process.cpuUsage();
  await workers(started + spec.seconds * 1000, true);
  const cpu = process.cpuUsage(cpuBefore);
  const elapsedMs = performance.now() - started;
  agent.destroy();
  latencies.sort((a, b) => a - b);
  const at = (q: number) =>
    latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? NaN;
  return {
    done: latencies.length,
    warmedUp,
    clientCpuMs: (cpu.user + cpu.system) / 1000 / Math.max(1, latencies.length),
    errors,
    ...(firstError ? { firstError } : {}),
    elapsedMs,
    latenciesMs: { p50: at(0.5), p99: at(0.99), max: latencies.at(-1) ?? NaN },
  };
}
