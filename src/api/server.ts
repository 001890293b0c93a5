import { randomUUID } from 'node:crypto';
import { type Server as HttpServer, type ServerResponse, STATUS_CODES } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { serve } from '@hono/node-server';
import type { Hono } from 'hono';
import type { Logger } from 'pino';
import type { ApiEnv } from './env.ts';
import { PROBLEM_CONTENT_TYPE, problemDocument } from './problem.ts';

export interface ServerOptions {
  host?: string;
  /** 0 picks a free port (tests). */
  port?: number;
  /** PEM material for HTTPS; client certificates are asked for, `clientCa` verifies mTLS principals. */
  tls?: { cert: string | Buffer; key: string | Buffer; clientCa?: string | Buffer };
  /** Whole request, headers and body, from a client (node's requestTimeout). */
  requestTimeoutMs?: number;
  /** Headers from a client (node's headersTimeout): slowloris protection. */
  headersTimeoutMs?: number;
  /** Idle keep-alive connections are closed after this long. */
  keepAliveTimeoutMs?: number;
  /** Largest request head, bytes (node's maxHeaderSize; 431 beyond). */
  maxHeaderBytes?: number;
  /** How often node looks for requests past headersTimeout or requestTimeout (its default is 30 s). */
  connectionsCheckingIntervalMs?: number;
  /** Where requests that never reach the app (unreadable, too large a head, too slow) are told. */
  logger?: Logger;
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
    connectionsCheckingIntervalMs = 1_000,
    logger,
  }: ServerOptions = {},
): Promise<RunningServer> {
  if (headersTimeoutMs > requestTimeoutMs)
    throw new Error('startServer: headersTimeoutMs must not exceed requestTimeoutMs');
  const limits = {
    requestTimeout: requestTimeoutMs,
    headersTimeout: headersTimeoutMs,
    maxHeaderSize: maxHeaderBytes,
    keepAliveTimeout: keepAliveTimeoutMs,
    connectionsCheckingInterval: connectionsCheckingIntervalMs,
  };
  const server = await new Promise<HttpServer>((resolve, reject) => {
    const options = tls
      ? {
          createServer: createHttpsServer,
          serverOptions: {
            ...limits,
            cert: tls.cert,
            key: tls.key,
            // A client certificate is always asked for, never required: renewal authenticates by
            // the certificate renewed (issue #32), whatever CA the mTLS principals come from.
            requestCert: true,
            rejectUnauthorized: false,
            ...(tls.clientCa ? { ca: tls.clientCa } : {}),
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
  server.on('clientError', (error: NodeJS.ErrnoException, socket: Duplex) =>
    answerClientError(error, socket, { maxHeaderBytes, logger }),
  );
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

/** Sockets already answered: a parser in error may report the same socket again. */
const answered = new WeakSet<Duplex>();

/**
 * Answers a request Node's HTTP parser refused before the app saw it (the `clientError` event)
 * with a problem document instead of Node's bare status line, where the connection still allows
 * an answer: nothing of another response written yet (Node's own rule). Then closes the
 * connection, since the rest of what the client sends cannot be read as HTTP.
 */
function answerClientError(
  error: NodeJS.ErrnoException,
  socket: Duplex,
  { maxHeaderBytes, logger }: { maxHeaderBytes: number; logger: Logger | undefined },
): void {
  const inFlight = (socket as { _httpMessage?: ServerResponse | null })._httpMessage;
  if (error.code === 'ECONNRESET' || !socket.writable || answered.has(socket) || inFlight?.headersSent) {
    socket.destroy();
    return;
  }
  answered.add(socket);
  const problem = clientErrorProblem(error.code, inFlight != null, maxHeaderBytes);
  const requestId = randomUUID();
  const body = JSON.stringify(problemDocument(problem, requestId));
  logger?.info(
    { reqId: requestId, status: problem.status, code: problem.code, reason: error.code },
    'request refused',
  );
  socket.end(
    [
      `HTTP/1.1 ${problem.status} ${STATUS_CODES[problem.status]}`,
      `content-type: ${PROBLEM_CONTENT_TYPE}`,
      `content-length: ${Buffer.byteLength(body)}`,
      `x-request-id: ${requestId}`,
      'cache-control: no-store',
      'x-content-type-options: nosniff',
      'connection: close',
      '',
      body,
    ].join('\r\n'),
  );
  // A client that neither reads nor closes does not keep the socket.
  setTimeout(() => socket.destroy(), 5_000).unref();
}

/** Node's choice of status (lib/_http_server.js socketOnError), as a problem with a stable code. */
function clientErrorProblem(reason: string | undefined, requestStarted: boolean, maxHeaderBytes: number) {
  switch (reason) {
    case 'HPE_HEADER_OVERFLOW':
      // RFC 6585 §5; Node counts the request line with the headers.
      return {
        status: 431 as const,
        code: 'request.headers_too_large',
        title: 'Request header fields too large',
        detail: `The request line and headers are larger than ${maxHeaderBytes} bytes.`,
      };
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      // RFC 9110 §15.5.9. Node has dispatched a request once its headers were complete.
      return requestStarted
        ? {
            status: 408 as const,
            code: 'request.body_timeout',
            title: 'Request timeout',
            detail: 'The request body did not arrive within the time allowed; send it again.',
          }
        : {
            status: 408 as const,
            code: 'request.headers_timeout',
            title: 'Request timeout',
            detail: 'The request headers did not arrive within the time allowed; send them again.',
          };
    case 'HPE_CHUNK_EXTENSIONS_OVERFLOW':
      return {
        status: 413 as const,
        code: 'request.body_too_large',
        title: 'Request body too large',
        detail: 'The chunk extensions of the request body are too large.',
      };
    default:
      return {
        status: 400 as const,
        code: 'request.invalid',
        title: 'The request is invalid',
        detail: 'The request could not be read as HTTP/1.1.',
      };
  }
}
