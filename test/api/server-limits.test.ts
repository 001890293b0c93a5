import { connect } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { AppOptions } from '../../src/api/deps.ts';
import { type RunningServer, type ServerOptions, startServer } from '../../src/api/server.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { scriptedCa } from './helpers/fakes.ts';
import { buildHarness, contract, type Harness } from './helpers/harness.ts';

// Issue #19 on a real listening server: what Node's HTTP parser refuses before the app sees a
// request (431, 408, 400) is answered as a problem document, a body that stalls gets 408 and a
// slow handler 503, and failed authentication is counted per real peer address.

let database: TestDatabase;
let h: Harness;
let server: RunningServer | undefined;

beforeAll(async () => {
  database = await createTestDatabase('pglite');
});
afterEach(async () => {
  await server?.close(100);
  server = undefined;
});
afterAll(async () => {
  await database?.destroy();
});

async function serve(options: AppOptions = {}, serverOptions: ServerOptions = {}): Promise<RunningServer> {
  await database.reset();
  h = await buildHarness({ database, ca: scriptedCa(), options });
  server = await startServer(h.app, { port: 0, logger: h.logs.logger, ...serverOptions });
  return server;
}

interface RawAnswer {
  status: number;
  headers: Record<string, string>;
  body: string;
  /** Whether the server closed the connection after answering. */
  closed: boolean;
}

/**
 * Writes `parts` on a fresh connection (with `pauseMs` between them), never ends its side, and
 * reads until the server closes or `waitMs` passes.
 */
function exchange(port: number, parts: string[], { pauseMs = 0, waitMs = 5_000 } = {}): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    const received: Buffer[] = [];
    let closed = false;
    const finish = () => {
      clearTimeout(timer);
      const text = Buffer.concat(received).toString('utf8');
      const split = text.indexOf('\r\n\r\n');
      if (split < 0) {
        reject(new Error(`no HTTP answer, got ${JSON.stringify(text.slice(0, 200))}`));
        return;
      }
      const [statusLine = '', ...lines] = text.slice(0, split).split('\r\n');
      const headers = Object.fromEntries(
        lines.map((line) => {
          const at = line.indexOf(':');
          return [line.slice(0, at).trim().toLowerCase(), line.slice(at + 1).trim()];
        }),
      );
      resolve({ status: Number(statusLine.split(' ')[1]), headers, body: text.slice(split + 4), closed });
      socket.destroy();
    };
    const timer = setTimeout(finish, waitMs);
    socket.on('data', (chunk) => received.push(chunk));
    socket.on('error', () => {});
    socket.on('close', () => {
      closed = true;
      finish();
    });
    socket.on('connect', async () => {
      for (const [index, part] of parts.entries()) {
        if (index > 0 && pauseMs > 0) await new Promise((r) => setTimeout(r, pauseMs));
        if (!socket.destroyed) socket.write(part);
      }
    });
  });
}

/** The raw answer held to openapi.yaml as the answer to `method path`. */
async function checkProblem(method: string, path: string, answer: RawAnswer) {
  const response = new Response(answer.body, { status: answer.status, headers: answer.headers });
  return (await contract.check(method, path, response)) as Record<string, unknown>;
}

describe('requests node refuses before the app', () => {
  it('answers a header block over the limit with 431 request.headers_too_large as problem+json, then closes', async () => {
    const { port } = await serve({}, { maxHeaderBytes: 8 * 1024 });
    const answer = await exchange(port, [
      `GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Filler: ${'a'.repeat(16 * 1024)}\r\n\r\n`,
    ]);
    expect(answer.status).toBe(431);
    expect(answer.headers['content-type']).toBe('application/problem+json');
    expect(answer.closed).toBe(true);
    const problem = await checkProblem('GET', '/healthz', answer);
    expect(problem).toMatchObject({ code: 'request.headers_too_large', status: 431 });
    expect(problem.requestId).toBe(answer.headers['x-request-id']);
    expect(h.logs.lines).toContainEqual(
      expect.objectContaining({ reqId: problem.requestId, status: 431, reason: 'HPE_HEADER_OVERFLOW' }),
    );
  });

  it('answers a request line over the limit the same way', async () => {
    const { port } = await serve({}, { maxHeaderBytes: 8 * 1024 });
    const answer = await exchange(port, [
      `GET /healthz?${'q'.repeat(16 * 1024)} HTTP/1.1\r\nHost: x\r\n\r\n`,
    ]);
    expect(answer.status).toBe(431);
    expect(JSON.parse(answer.body)).toMatchObject({ code: 'request.headers_too_large' });
  });

  it('answers bytes that are not HTTP/1.1 with 400 request.invalid', async () => {
    const { port } = await serve();
    const answer = await exchange(port, ['HELLO THERE\r\n\r\n']);
    expect(answer.status).toBe(400);
    expect(answer.headers['content-type']).toBe('application/problem+json');
    expect(JSON.parse(answer.body)).toMatchObject({ code: 'request.invalid', status: 400 });
    expect(answer.closed).toBe(true);
  });

  it('answers headers that never finish with 408 request.headers_timeout', async () => {
    const { port } = await serve(
      {},
      { headersTimeoutMs: 300, requestTimeoutMs: 2_000, connectionsCheckingIntervalMs: 50 },
    );
    const answer = await exchange(port, ['GET /healthz HTTP/1.1\r\nHost: x\r\n'], { waitMs: 3_000 });
    expect(answer.status).toBe(408);
    expect(JSON.parse(answer.body)).toMatchObject({ code: 'request.headers_timeout', status: 408 });
    expect(answer.closed).toBe(true);
  });
});

describe('a body still arriving when the time runs out', () => {
  const partialPost = (key: string) => [
    [
      'POST /v1/apikeys HTTP/1.1',
      'Host: 127.0.0.1',
      `Authorization: Bearer ${key}`,
      'Content-Type: application/json',
      'Content-Length: 100',
      '',
      '{"roles": ["audi',
    ].join('\r\n'),
  ];

  it('gets 408 request.body_timeout from the app (server.requestTimeout), and the connection closes', async () => {
    const { port } = await serve({ requestTimeoutMs: 300 });
    const started = Date.now();
    const answer = await exchange(port, partialPost(h.keys.admin));
    expect(answer.status).toBe(408);
    expect(Date.now() - started).toBeLessThan(3_000);
    const problem = await checkProblem('POST', '/v1/apikeys', answer);
    expect(problem).toMatchObject({ code: 'request.body_timeout', status: 408 });
    expect(answer.headers.connection).toBe('close');
    expect(answer.closed).toBe(true);
  });

  it("gets the same 408 when node's own request timeout runs out first", async () => {
    const { port } = await serve(
      { requestTimeoutMs: 30_000 },
      { requestTimeoutMs: 400, headersTimeoutMs: 300, connectionsCheckingIntervalMs: 50 },
    );
    const answer = await exchange(port, partialPost(h.keys.admin));
    expect(answer.status).toBe(408);
    expect(JSON.parse(answer.body)).toMatchObject({ code: 'request.body_timeout', status: 408 });
    expect(answer.closed).toBe(true);
  });

  it('leaves a slow handler with 503 request.timeout', async () => {
    const { url } = await serve({ requestTimeoutMs: 300 });
    (h.deps.ca as ReturnType<typeof scriptedCa>).gate = new Promise(() => {});
    const response = await fetch(`${url}/v1/certificates`, {
      method: 'POST',
      headers: { authorization: `Bearer ${h.keys.issuer}`, 'content-type': 'application/json' },
      body: JSON.stringify({
        csr: '-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n',
        policy: 'web-server',
      }),
    });
    expect(response.status).toBe(503);
    expect(await response.json()).toMatchObject({ code: 'request.timeout' });
  });
});

describe('failed authentication on the listening server', () => {
  it('is counted per peer address and audited with it', async () => {
    const { url } = await serve({ failedAuthPerMinute: 2 });
    const statuses: number[] = [];
    for (let i = 0; i < 3; i++) {
      const response = await fetch(`${url}/v1/policies`, {
        headers: { authorization: `Bearer sgk_0123456789abcdef_${'A'.repeat(43)}` },
      });
      statuses.push(response.status);
      await response.arrayBuffer();
    }
    expect(statuses).toEqual([401, 401, 429]);
    const rows = (await h.deps.audit.list({})).items;
    expect(rows).toEqual([
      expect.objectContaining({ details: expect.objectContaining({ client: '127.0.0.1', count: 1 }) }),
    ]);
  });
});
