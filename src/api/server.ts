import type { Server as HttpServer } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { serve } from '@hono/node-server';
import type { Hono } from 'hono';
import type { ApiEnv } from './env.ts';

export interface ServerOptions {
  host?: string;
  /** 0 picks a free port (tests). */
  port?: number;
  /** PEM material for HTTPS; with `clientCa`, client certificates are asked for (mutual TLS). */
  tls?: { cert: string | Buffer; key: string | Buffer; clientCa?: string | Buffer };
  /** Whole request, headers and body, from a client (node's requestTimeout). */
  requestTimeoutMs?: number;
  /** Headers from a client (node's headersTimeout): slowloris protection. */
  headersTimeoutMs?: number;
  /** Idle keep-alive connections are closed after this long. */
  keepAliveTimeoutMs?: number;
  /** Largest request head, bytes (node's maxHeaderSize; 431 beyond). */
  maxHeaderBytes?: number;
}

export interface RunningServer {
  server: HttpServer;
  /** `http://127.0.0.1:PORT` or `https://...`. */
  url: string;
  port: number;
  /** Stops accepting, lets requests in flight finish (up to `graceMs`), then closes every connection. */
  close(graceMs?: number): Promise<void>;
}

/**
 * Runs the app on a node HTTP(S) server with the timeouts and header limits a server facing a
 * network needs (issue #8 "server timeouts and header limits"). A client certificate is asked for
 * but not required when `clientCa` is set: API-key clients still connect, and the mTLS resolver
 * maps verified certificates to principals.
 */
export async function startServer(
  app: Hono<ApiEnv>,
  {
    host = '127.0.0.1',
    port = 8080,
    tls,
    requestTimeoutMs = 30_000,
    headersTimeoutMs = 10_000,
    keepAliveTimeoutMs = 5_000,
    maxHeaderBytes = 16 * 1024,
  }: ServerOptions = {},
): Promise<RunningServer> {
  if (headersTimeoutMs > requestTimeoutMs)
    throw new Error('startServer: headersTimeoutMs must not exceed requestTimeoutMs');
  const limits = {
    requestTimeout: requestTimeoutMs,
    headersTimeout: headersTimeoutMs,
    maxHeaderSize: maxHeaderBytes,
    keepAliveTimeout: keepAliveTimeoutMs,
  };
  const server = await new Promise<HttpServer>((resolve, reject) => {
    const options = tls
      ? {
          createServer: createHttpsServer,
          serverOptions: {
            ...limits,
            cert: tls.cert,
            key: tls.key,
            ...(tls.clientCa ? { ca: tls.clientCa, requestCert: true, rejectUnauthorized: false } : {}),
            minVersion: 'TLSv1.2' as const,
          },
        }
      : { serverOptions: limits };
    const created = serve({ fetch: app.fetch, hostname: host, port, ...options }, () =>
      resolve(created as HttpServer),
    ) as HttpServer;
    created.once('error', reject);
  });
  server.keepAliveTimeout = keepAliveTimeoutMs;
  const address = server.address() as AddressInfo;
  const shownHost = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return {
    server,
    port: address.port,
    url: `${tls ? 'https' : 'http'}://${shownHost}:${address.port}`,
    close: (graceMs = 5_000) =>
      new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => server.closeAllConnections(), graceMs);
        timer.unref();
        server.close((error) => {
          clearTimeout(timer);
          if (error) reject(error);
          else resolve();
        });
        server.closeIdleConnections();
      }),
  };
}
