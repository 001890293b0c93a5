import { Writable } from 'node:stream';
import type { Hono } from 'hono';
import { createApp } from '../../../src/api/app.ts';
import { createApiKey } from '../../../src/api/auth/api-keys.ts';
import type { AppDeps } from '../../../src/api/deps.ts';
import type { ApiEnv, Role } from '../../../src/api/env.ts';
import { createLogger } from '../../../src/api/logger.ts';
import { type Clock, fixedClock } from '../../../src/lib/clock.ts';
import { Contract } from './contract.ts';

/** Captures the JSON log lines an app writes, to check request ids and the absence of secrets. */
export function logSink() {
  const lines: Record<string, unknown>[] = [];
  const raw: string[] = [];
  const stream = new Writable({
    write(chunk, _encoding, callback) {
      for (const line of String(chunk).split('\n').filter(Boolean)) {
        raw.push(line);
        lines.push(JSON.parse(line));
      }
      callback();
    },
  });
  return { lines, raw, logger: createLogger({ level: 'debug', destination: stream }) };
}

export const contract = new Contract();

export interface CallOptions {
  key?: string;
  body?: unknown;
  raw?: string | Uint8Array;
  headers?: Record<string, string>;
}

export interface Harness {
  app: Hono<ApiEnv>;
  deps: AppDeps;
  clock: Clock & { advance(ms: number): void };
  keys: Record<Role, string>;
  logs: ReturnType<typeof logSink>;
  /** app.request, then the contract check; answers the response and its parsed body. */
  call(method: string, path: string, options?: CallOptions): Promise<{ response: Response; body: any }>;
  makeKey(roles: Role[], policies?: string[], expiresAt?: Date | null): Promise<string>;
}

export async function buildHarness(
  makeDeps: (shared: { clock: Clock; logger: AppDeps['logger'] }) => Promise<AppDeps> | AppDeps,
  policiesForIssuer: string[] = ['*'],
): Promise<Harness> {
  const clock = fixedClock('2026-03-01T12:00:00Z');
  const logs = logSink();
  const deps = await makeDeps({ clock, logger: logs.logger });
  const app = createApp(deps);
  const makeKey = async (roles: Role[], policies: string[] = [], expiresAt: Date | null = null) =>
    (await createApiKey(deps.apiKeys, { roles, policies, expiresAt }, clock)).key;
  const keys = {
    issuer: await makeKey(['issuer'], policiesForIssuer),
    revoker: await makeKey(['revoker']),
    auditor: await makeKey(['auditor']),
    admin: await makeKey(['admin']),
  };
  async function call(method: string, path: string, options: CallOptions = {}) {
    const headers: Record<string, string> = { ...options.headers };
    if (options.key) headers.authorization = `Bearer ${options.key}`;
    let body: string | Uint8Array | undefined = options.raw;
    if (options.body !== undefined) {
      body = JSON.stringify(options.body);
      headers['content-type'] ??= 'application/json';
    }
    const response = await app.request(path, { method, headers, ...(body !== undefined ? { body } : {}) });
    const parsed = await contract.check(method, path, response);
    return { response, body: parsed };
  }
  return { app, deps, clock, keys, logs, call, makeKey };
}
