import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { statSync, writeFileSync } from 'node:fs';
import { createConnection, type Socket } from 'node:net';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it, test } from 'vitest';
import { RemotePartition } from '../../src/hsm/client.ts';
import {
  callFrame,
  FrameReader,
  KIND,
  MAX_FRAME,
  PROTOCOL_NAME,
  STATUS,
  setFrameId,
  signFrame,
  updateFrame,
} from '../../src/hsm/protocol.ts';
import { startPartitionServer } from '../../src/hsm/server.ts';
import {
  CA_USER,
  OFFICER,
  openMemoryPartition,
  startTestPartition,
  type TestPartition,
  temporarySocketPath,
} from './helpers.ts';

interface Answer {
  status: number;
  id: number;
  body: Buffer;
  error?: { rv: string; code: string; message: string };
}

/** A client that speaks raw frames, to send what RemotePartition never would. */
class RawClient {
  private readonly reader = new FrameReader();
  private readonly answers: Answer[] = [];
  private waiting: (() => void) | undefined;
  readonly closed: Promise<void>;

  private constructor(readonly socket: Socket) {
    socket.on('data', (chunk: Buffer) =>
      this.reader.push(
        chunk,
        (payload) => {
          const status = payload[0]!;
          const body = Buffer.from(payload.subarray(5));
          this.answers.push({
            status,
            id: payload.readUInt32BE(1),
            body,
            ...(status === STATUS.ERROR ? { error: JSON.parse(body.toString()) } : {}),
          });
          this.waiting?.();
        },
        () => {},
      ),
    );
    socket.on('error', () => {});
    this.closed = new Promise((resolve) => socket.once('close', () => resolve()));
    this.closed.then(() => this.waiting?.());
  }

  static connect(socketPath: string): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const socket = createConnection(socketPath, () => resolve(new RawClient(socket)));
      socket.once('error', reject);
    });
  }

  send(bytes: Buffer): void {
    this.socket.write(bytes);
  }

  /** A frame around a payload. */
  frame(payload: Buffer): void {
    const length = Buffer.alloc(4);
    length.writeUInt32BE(payload.length);
    this.send(Buffer.concat([length, payload]));
  }

  call(id: number, op: string, args?: unknown): void {
    const frame = callFrame(op, args);
    setFrameId(frame, id);
    this.send(frame);
  }

  async hello(): Promise<void> {
    this.call(1, 'hello', { protocol: PROTOCOL_NAME, versions: [1] });
    expect((await this.next()).status).toBe(STATUS.OK);
  }

  async next(timeoutMs = 5000): Promise<Answer> {
    const deadline = Date.now() + timeoutMs;
    while (this.answers.length === 0) {
      if (this.socket.destroyed && this.answers.length === 0)
        throw new Error('connection closed without an answer');
      if (Date.now() > deadline) throw new Error('no answer in time');
      await new Promise<void>((resolve) => {
        this.waiting = resolve;
        setTimeout(resolve, 50);
      });
    }
    return this.answers.shift()!;
  }

  close(): void {
    this.socket.destroy();
  }
}

describe('the partition socket under bad input', () => {
  let partition: TestPartition;
  let user: RemotePartition;
  let keyId: string;

  beforeAll(async () => {
    partition = await startTestPartition();
    const officer = await partition.officer();
    keyId = (await officer.createKey({ label: 'protocol', algorithm: 'ecdsa-p256' })).id;
    user = await partition.user();
  });

  afterAll(async () => {
    await partition?.stop();
  });

  /** The partition still answers a well-behaved client. */
  async function stillServing(): Promise<void> {
    const signature = await user.sign({
      key: { id: keyId },
      mechanism: 'ecdsa-sha256',
      purpose: 'certificate',
      data: Buffer.from('still here'),
    });
    expect(signature).toHaveLength(64);
    const fresh = await RemotePartition.connect({ socketPath: partition.socketPath });
    expect((await fresh.status()).state).toBe('unsealed');
    await fresh.close();
  }

  it('creates its socket with mode 0600', () => {
    expect(statSync(partition.socketPath).mode & 0o777).toBe(0o600);
  });

  it('refuses requests before hello, then serves the same connection after it', async () => {
    const raw = await RawClient.connect(partition.socketPath);
    raw.call(7, 'status');
    expect(await raw.next()).toMatchObject({
      id: 7,
      status: STATUS.ERROR,
      error: { code: 'hsm.protocol_error' },
    });
    await raw.hello();
    raw.call(8, 'status');
    expect(await raw.next()).toMatchObject({ id: 8, status: STATUS.OK });
    raw.close();
  });

  test.each([
    ['an unknown protocol', { protocol: 'other', versions: [1] }],
    ['no common version', { protocol: PROTOCOL_NAME, versions: [2, 3] }],
    ['no versions', { protocol: PROTOCOL_NAME }],
  ])('refuses a hello with %s (CKR_PROTOCOL)', async (_name, args) => {
    const raw = await RawClient.connect(partition.socketPath);
    raw.call(3, 'hello', args);
    expect(await raw.next()).toMatchObject({ id: 3, status: STATUS.ERROR, error: { rv: 'CKR_PROTOCOL' } });
    raw.close();
  });

  it('answers a frame shorter than its header with an error under id 0, and keeps the connection', async () => {
    const raw = await RawClient.connect(partition.socketPath);
    await raw.hello();
    raw.frame(Buffer.from([1, 0]));
    expect(await raw.next()).toMatchObject({ id: 0, status: STATUS.ERROR, error: { rv: 'CKR_PROTOCOL' } });
    raw.call(2, 'status');
    expect(await raw.next()).toMatchObject({ id: 2, status: STATUS.OK });
    raw.close();
  });

  it('answers an oversized frame with an error, skips its payload and serves the next frame', async () => {
    const raw = await RawClient.connect(partition.socketPath);
    await raw.hello();
    const header = Buffer.alloc(4);
    header.writeUInt32BE(MAX_FRAME + 1);
    raw.send(header);
    // The payload arrives in pieces; none of it is taken for a frame.
    for (let sent = 0; sent < MAX_FRAME + 1; sent += 256 * 1024) {
      raw.send(Buffer.alloc(Math.min(256 * 1024, MAX_FRAME + 1 - sent), 0xff));
    }
    const refused = await raw.next();
    expect(refused).toMatchObject({ id: 0, status: STATUS.ERROR, error: { rv: 'CKR_PROTOCOL' } });
    expect(refused.error!.message).toMatch(/exceeds/);
    raw.call(9, 'status');
    expect(await raw.next()).toMatchObject({ id: 9, status: STATUS.OK });
    raw.close();
    await stillServing();
  });

  it('answers a frame cut short by the end of the connection, then closes', async () => {
    const raw = await RawClient.connect(partition.socketPath);
    await raw.hello();
    const frame = callFrame('status', undefined);
    setFrameId(frame, 5);
    raw.send(frame.subarray(0, frame.length - 3));
    raw.socket.end();
    const answer = await raw.next();
    expect(answer).toMatchObject({ id: 0, status: STATUS.ERROR, error: { rv: 'CKR_PROTOCOL' } });
    expect(answer.error!.message).toMatch(/ended inside a frame/);
    await raw.closed;
    await stillServing();
  });

  it('answers an unknown frame kind under the frame id', async () => {
    const raw = await RawClient.connect(partition.socketPath);
    await raw.hello();
    const payload = Buffer.alloc(9);
    payload[0] = 0x7f;
    payload.writeUInt32BE(44, 1);
    raw.frame(payload);
    expect(await raw.next()).toMatchObject({ id: 44, status: STATUS.ERROR, error: { rv: 'CKR_PROTOCOL' } });
    raw.close();
  });

  it('answers an unknown operation with CKR_FUNCTION_NOT_SUPPORTED', async () => {
    const raw = await RawClient.connect(partition.socketPath);
    await raw.hello();
    raw.call(11, 'formatDisk', {});
    expect(await raw.next()).toMatchObject({ id: 11, error: { rv: 'CKR_FUNCTION_NOT_SUPPORTED' } });
    raw.call(12, 'constructor', {});
    expect(await raw.next()).toMatchObject({ id: 12, error: { rv: 'CKR_FUNCTION_NOT_SUPPORTED' } });
    raw.close();
  });

  test.each([
    ['not JSON', Buffer.from('{"op": "status"')],
    ['a JSON array', Buffer.from('["status"]')],
    ['no op', Buffer.from('{"args": {}}')],
    ['an op that is not a string', Buffer.from('{"op": 5}')],
    ['fields besides op and args', Buffer.from('{"op": "status", "admin": true}')],
    ['invalid UTF-8', Buffer.from([0xff, 0xfe, 0x7b])],
  ])('answers a CALL body that is %s with CKR_PROTOCOL', async (_name, body) => {
    const raw = await RawClient.connect(partition.socketPath);
    await raw.hello();
    const header = Buffer.alloc(5);
    header[0] = KIND.CALL;
    header.writeUInt32BE(21, 1);
    raw.frame(Buffer.concat([header, body]));
    expect(await raw.next()).toMatchObject({ id: 21, status: STATUS.ERROR, error: { rv: 'CKR_PROTOCOL' } });
    raw.close();
  });

  test.each([
    ['login without a PIN', 'login', { user: 'ca' }, /pin/],
    ['login with a numeric PIN', 'login', { user: 'ca', pin: 1234 }, /pin/],
    ['createKey with a numeric label', 'createKey', { label: 5, algorithm: 'ed25519' }, /label/],
    [
      'createKey with an unknown field',
      'createKey',
      { label: 'x', algorithm: 'ed25519', exportable: true },
      /./,
    ],
    ['findKey with an unknown field', 'findKey', { label: 'x', slot: 1 }, /./],
    ['generateRandom with a string length', 'generateRandom', { length: '8' }, /length/],
    ['signFinal with a negative handle', 'signFinal', { handle: -1 }, /handle/],
    ['unseal with a secret that is not base64', 'unseal', { secret: '***' }, /./],
  ])('answers %s with CKR_ARGUMENTS_BAD naming the field', async (_name, op, args, field) => {
    const raw = await RawClient.connect(partition.socketPath);
    await raw.hello();
    raw.call(31, op, args);
    const answer = await raw.next();
    expect(answer).toMatchObject({ id: 31, status: STATUS.ERROR, error: { rv: 'CKR_ARGUMENTS_BAD' } });
    expect(answer.error!.message).toMatch(field);
    raw.close();
  });

  it('answers malformed SIGN and SIGN_UPDATE frames with a reason', async () => {
    const raw = await RawClient.connect(partition.socketPath);
    await raw.hello();
    raw.call(2, 'login', { user: CA_USER.name, pin: CA_USER.pin });
    expect((await raw.next()).status).toBe(STATUS.OK);
    const good = signFrame({
      mechanism: 'ecdsa-sha256',
      purpose: 'crl',
      refKind: 2,
      ref: keyId,
      data: Buffer.from('x'),
    });
    const cases: [string, (f: Buffer) => Buffer, string][] = [
      ['truncated header', (f) => f.subarray(4, 12), 'CKR_PROTOCOL'],
      [
        'unknown mechanism number',
        (f) => Object.assign(Buffer.from(f.subarray(4)), { 5: 200 }),
        'CKR_MECHANISM_INVALID',
      ],
      [
        'unknown purpose number',
        (f) => Object.assign(Buffer.from(f.subarray(4)), { 6: 9 }),
        'CKR_ARGUMENTS_BAD',
      ],
      ['unknown reference kind', (f) => Object.assign(Buffer.from(f.subarray(4)), { 9: 7 }), 'CKR_PROTOCOL'],
      [
        'reference longer than the frame',
        (f) => Object.assign(Buffer.from(f.subarray(4)), { 10: 250 }),
        'CKR_PROTOCOL',
      ],
    ];
    let id = 100;
    for (const [name, mangle, rv] of cases) {
      const payload = mangle(good);
      payload.writeUInt32BE(++id, 1);
      raw.frame(payload);
      const answer = await raw.next();
      expect({ name, id: answer.id, rv: answer.error?.rv }).toEqual({ name, id, rv });
    }
    const update = updateFrame(1, Buffer.alloc(0)).subarray(4, 11);
    update.writeUInt32BE(++id, 1);
    raw.frame(update);
    expect(await raw.next()).toMatchObject({ id, error: { rv: 'CKR_PROTOCOL' } });
    raw.close();
  });

  it('answers many pipelined signatures written at once, each under its own id', async () => {
    const raw = await RawClient.connect(partition.socketPath);
    await raw.hello();
    raw.call(2, 'login', { user: CA_USER.name, pin: CA_USER.pin });
    expect((await raw.next()).status).toBe(STATUS.OK);
    const frames = Array.from({ length: 300 }, (_, i) => {
      const frame = signFrame({
        mechanism: 'ecdsa-sha256',
        purpose: 'ocsp',
        refKind: 2,
        ref: keyId,
        data: Buffer.from(`${i}`),
      });
      setFrameId(frame, 1000 + i);
      return frame;
    });
    raw.send(Buffer.concat(frames));
    const ids = new Set<number>();
    for (let i = 0; i < 300; i++) {
      const answer = await raw.next();
      expect(answer.status).toBe(STATUS.OK);
      expect(answer.body).toHaveLength(64);
      ids.add(answer.id);
    }
    expect(ids.size).toBe(300);
    raw.close();
  });

  it('keeps serving when a client disconnects in the middle of a multi-part signature', async () => {
    const raw = await RawClient.connect(partition.socketPath);
    await raw.hello();
    raw.call(2, 'login', { user: CA_USER.name, pin: CA_USER.pin });
    await raw.next();
    raw.call(3, 'signInit', { key: { id: keyId }, mechanism: 'ecdsa-sha256', purpose: 'crl' });
    const { handle } = JSON.parse((await raw.next()).body.toString());
    const update = updateFrame(handle, randomBytes(100_000));
    setFrameId(update, 4);
    raw.send(update);
    raw.send(update.subarray(0, 5000));
    raw.close();
    await stillServing();
  });

  it('keeps serving other clients while one sends random bytes', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.uint8Array({ minLength: 1, maxLength: 4096 }),
        fc.boolean(),
        async (bytes, greet) => {
          const raw = await RawClient.connect(partition.socketPath);
          if (greet) await raw.hello();
          raw.send(Buffer.from(bytes));
          raw.socket.end();
          await Promise.race([raw.closed, new Promise((resolve) => setTimeout(resolve, 2000))]);
          raw.close();
        },
      ),
      { numRuns: 40 },
    );
    await stillServing();
  });

  it('keeps serving when well-framed payloads carry random bytes', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.uint8Array({ minLength: 0, maxLength: 600 }), { minLength: 1, maxLength: 20 }),
        async (payloads) => {
          const raw = await RawClient.connect(partition.socketPath);
          await raw.hello();
          for (const payload of payloads) raw.frame(Buffer.from(payload));
          // Every frame gets an answer: an error, or (rarely) a real answer.
          for (let i = 0; i < payloads.length; i++) await raw.next();
          raw.close();
        },
      ),
      { numRuns: 30 },
    );
    await stillServing();
  });
});

describe('the partition server in-process', () => {
  it('cuts off a client that leaves a frame unfinished past the frame timeout', async () => {
    const { partition } = await openMemoryPartition();
    const { socketPath, cleanup } = await temporarySocketPath();
    const server = await startPartitionServer({ partition, socketPath, frameTimeoutMs: 200 });
    try {
      const raw = await RawClient.connect(socketPath);
      await raw.hello();
      raw.send(Buffer.from([0, 0, 0, 50, 1, 0]));
      const answer = await raw.next();
      expect(answer).toMatchObject({ id: 0, error: { rv: 'CKR_PROTOCOL' } });
      expect(answer.error!.message).toMatch(/in time/);
      await raw.closed;
    } finally {
      await server.close();
      await partition.close();
      await cleanup();
    }
  });

  it('replaces a stale socket file but refuses a socket another partition serves, or a plain file', async () => {
    const { partition } = await openMemoryPartition();
    const { socketPath, cleanup } = await temporarySocketPath();
    try {
      // A partition killed with SIGKILL leaves its socket file behind.
      const listener = spawn(process.execPath, [
        '-e',
        `require('node:net').createServer().listen(${JSON.stringify(socketPath)}, () => console.log('up'))`,
      ]);
      await new Promise((resolve) => listener.stdout.once('data', resolve));
      await expect(startPartitionServer({ partition, socketPath })).rejects.toThrow(/already serves/);
      listener.kill('SIGKILL');
      await new Promise((resolve) => listener.once('exit', resolve));
      expect(statSync(socketPath).isSocket()).toBe(true);
      const server = await startPartitionServer({ partition, socketPath });
      const client = await RemotePartition.connect({ socketPath });
      expect((await client.status()).state).toBe('unsealed');
      await client.close();
      await server.close();
      writeFileSync(socketPath, 'not a socket');
      await expect(startPartitionServer({ partition, socketPath })).rejects.toThrow(/not a socket/);
    } finally {
      await partition.close();
      await cleanup();
    }
  });

  it('lets an extension operation through with its access checked and audited', async () => {
    const { partition, audit } = await openMemoryPartition();
    const { socketPath, cleanup } = await temporarySocketPath();
    const { z } = await import('zod');
    const { definePartitionOp } = await import('../../src/hsm/server.ts');
    const server = await startPartitionServer({
      partition,
      socketPath,
      extensions: {
        'backup.export': definePartitionOp({
          access: 'officer',
          args: z.strictObject({ note: z.string() }),
          run: async (_session, args) => ({ echoed: args.note }),
        }),
      },
    });
    try {
      const client = await RemotePartition.connect({ socketPath });
      await expect(client.call('backup.export', { note: 'x' })).rejects.toMatchObject({
        rv: 'CKR_USER_NOT_LOGGED_IN',
      });
      await client.login({ user: OFFICER.name, pin: OFFICER.pin });
      expect(await client.call('backup.export', { note: 'x' })).toEqual({ echoed: 'x' });
      await expect(client.call('backup.export', { note: 1 })).rejects.toMatchObject({
        rv: 'CKR_ARGUMENTS_BAD',
      });
      expect(audit.events.filter((e) => e.op === 'backup.export').map((e) => e.result)).toEqual([
        'hsm.not_logged_in',
        'ok',
        'hsm.arguments_bad',
      ]);
      await client.close();
    } finally {
      await server.close();
      await partition.close();
      await cleanup();
    }
  });
});
