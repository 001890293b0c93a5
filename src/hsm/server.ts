import { lstat, unlink } from 'node:fs/promises';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { z } from 'zod';
import type { EmulatedPartition, PartitionSession } from './partition.ts';
import {
  answerFrame,
  errorBody,
  FrameReader,
  HEADER_LENGTH,
  KEY_REF_KIND,
  KIND,
  MAX_FRAME,
  PROTOCOL_NAME,
  readSignFrame,
  readUpdateFrame,
  STATUS,
  SUPPORTED_VERSIONS,
} from './protocol.ts';
import type { AuditEvent } from './store.ts';
import {
  HsmError,
  isHsmError,
  KEY_ALGORITHMS,
  KEY_USAGES,
  type KeyInfo,
  type KeyRef,
  ROLES,
  type Role,
  SIGN_MECHANISMS,
  SIGN_PURPOSES,
  type SignRequest,
} from './types.ts';
import { listenPrivately } from './unix-socket.ts';

/**
 * The partition's socket server: one PartitionSession per connection, requests answered as they
 * complete (pipelining), answers of one event-loop turn written together. Hostile input gets an
 * error answer and never takes the process down or stalls other clients (issue #2 item 5).
 */

/** An operation reachable through a CALL frame. Custody adds its own (backup, ...) through `extensions`. */
export interface PartitionOp<A = unknown> {
  /** Who may call it; checked, with the outcome audited, by PartitionSession.perform. */
  access: 'public' | 'any' | Role;
  /** Answered while sealed (only status and unseal are, among the built-in ones). */
  whenSealed?: boolean;
  /** Strict schema of `args`; a mismatch is answered CKR_ARGUMENTS_BAD naming the field. */
  args: z.ZodType<A>;
  /**
   * Returns a JSON-serialisable answer (octets as base64). An extension gets the audit record the
   * server writes for the call, to name the key it acted on (built-in operations get none).
   */
  run(session: PartitionSession, args: A, event?: AuditEvent): Promise<unknown>;
}

export interface PartitionServerOptions {
  partition: EmulatedPartition;
  socketPath: string;
  /** More CALL operations, e.g. custody's backup; names must not clash with built-in ones. */
  extensions?: Record<string, PartitionOp<never>>;
  /** A frame must be complete this long after its first octet arrives. Default 30 s. */
  frameTimeoutMs?: number;
  /** Default 256. */
  maxConnections?: number;
  /** Requests one connection may have in flight before the server stops reading from it. Default 4096. */
  maxInFlight?: number;
  log?: (line: string) => void;
}

export interface PartitionServer {
  readonly socketPath: string;
  connectionCount(): number;
  /**
   * Serves one more connection that arrived another way (a mutual-TLS link, tls-listener.ts):
   * the same framed protocol and limits as the Unix socket's connections. `peer` is the SHA-256 of
   * the certificate the link's client presented (PartitionSession.linkPeer).
   */
  attach(socket: Socket, peer?: string): void;
  /** Stops accepting, ends every connection (open multi-part operations are abandoned), removes the socket. */
  close(): Promise<void>;
}

const base64 = z.base64().transform((s) => Buffer.from(s, 'base64'));
/** A key as a request names it (URI, label or id); also the argument of extension operations. */
export const keyRef = z
  .strictObject({
    uri: z.string().max(256).optional(),
    label: z.string().max(64).optional(),
    id: z.string().max(64).optional(),
  })
  .transform((r) => r as KeyRef);
const signInit = z.strictObject({
  key: keyRef,
  mechanism: z.enum(SIGN_MECHANISMS),
  purpose: z.enum(SIGN_PURPOSES),
  saltLength: z.number().int().min(0).max(0xfffe).optional(),
});
const handle = z.strictObject({ handle: z.number().int().min(1).max(0xffff_ffff) });
const userName = z.strictObject({ name: z.string().max(64) });
const pin = z.string().max(1024);
const none = z.strictObject({}).optional();

const wireKey = (info: KeyInfo) => ({ ...info, publicKey: Buffer.from(info.publicKey).toString('base64') });
/** Types an operation's `run` by its schema, for BUILT_IN_OPS and for extensions. */
export const definePartitionOp = <A>(definition: PartitionOp<A>) =>
  definition as unknown as PartitionOp<never>;
const op = definePartitionOp;

/** The built-in operations; the wire name of each is its key. */
export const BUILT_IN_OPS: Record<string, PartitionOp<never>> = {
  status: op({ access: 'public', whenSealed: true, args: none, run: (s) => s.status() }),
  unseal: op({
    access: 'public',
    whenSealed: true,
    args: z.union([
      z.strictObject({ secret: base64 }),
      z.strictObject({ shares: z.array(base64).min(1).max(255) }),
    ]),
    run: (s, a) => s.unseal(a),
  }),
  login: op({
    access: 'public',
    args: z.strictObject({ user: z.string().max(64), pin }),
    run: (s, a) => s.login(a),
  }),
  logout: op({ access: 'any', args: none, run: (s) => s.logout() }),
  createKey: op({
    access: 'officer',
    args: z.strictObject({
      label: z.string().max(64),
      algorithm: z.enum(KEY_ALGORITHMS),
      extractable: z.boolean().optional(),
      usages: z.array(z.enum(KEY_USAGES)).max(8).optional(),
      purposes: z.array(z.enum(SIGN_PURPOSES)).max(8).optional(),
    }),
    run: async (s, a) => wireKey(await s.createKey(a)),
  }),
  findKey: op({
    access: 'any',
    args: keyRef,
    run: async (s, a) => {
      const info = await s.findKey(a);
      return info ? wireKey(info) : null;
    },
  }),
  listKeys: op({ access: 'any', args: none, run: async (s) => (await s.listKeys()).map(wireKey) }),
  getPublicKey: op({
    access: 'any',
    args: keyRef,
    run: async (s, a) => ({ publicKey: Buffer.from(await s.getPublicKey(a)).toString('base64') }),
  }),
  destroyKey: op({ access: 'officer', args: keyRef, run: async (s, a) => (await s.destroyKey(a)) ?? null }),
  exportKey: op({
    access: 'any',
    args: keyRef,
    run: async (s, a) => Buffer.from(await s.exportKey(a)).toString('base64'),
  }),
  generateRandom: op({
    access: 'any',
    args: z.strictObject({ length: z.number().int() }),
    run: async (s, a) => ({ bytes: Buffer.from(await s.generateRandom(a)).toString('base64') }),
  }),
  signInit: op({ access: 'user', args: signInit, run: async (s, a) => ({ handle: await s.signInit(a) }) }),
  signFinal: op({
    access: 'user',
    args: handle,
    run: async (s, a) => ({ signature: Buffer.from(await s.signFinal(a.handle)).toString('base64') }),
  }),
  signCancel: op({
    access: 'user',
    args: handle,
    run: async (s, a) => (await s.signCancel(a.handle)) ?? null,
  }),
  createUser: op({
    access: 'officer',
    args: z.strictObject({ name: z.string().max(64), role: z.enum(ROLES), pin }),
    run: (s, a) => s.createUser(a),
  }),
  listUsers: op({ access: 'officer', args: none, run: (s) => s.listUsers() }),
  unlockUser: op({ access: 'officer', args: userName, run: (s, a) => s.unlockUser(a) }),
  setUserPin: op({
    access: 'officer',
    args: z.strictObject({ name: z.string().max(64), pin }),
    run: async (s, a) => (await s.setUserPin(a)) ?? null,
  }),
  deleteUser: op({ access: 'officer', args: userName, run: async (s, a) => (await s.deleteUser(a)) ?? null }),
};

const OP_NAME = /^[A-Za-z][A-Za-z0-9.]{0,47}$/;

export async function startPartitionServer(options: PartitionServerOptions): Promise<PartitionServer> {
  const { partition, socketPath } = options;
  const ops: Record<string, PartitionOp<never>> = { ...BUILT_IN_OPS };
  for (const [name, definition] of Object.entries(options.extensions ?? {})) {
    if (!OP_NAME.test(name) || Object.hasOwn(BUILT_IN_OPS, name) || name === 'hello') {
      throw new Error(`extension operation '${name}' is not a free operation name`);
    }
    ops[name] = definition;
  }
  await clearStaleSocket(socketPath);
  const connections = new Set<Connection>();
  const maxConnections = options.maxConnections ?? 256;
  const attach = (socket: Socket, peer?: string) => {
    const connection = new Connection(socket, partition, ops, options, peer);
    connections.add(connection);
    socket.once('close', () => connections.delete(connection));
  };
  const server: Server = createServer({ allowHalfOpen: true }, attach);
  server.maxConnections = maxConnections;
  server.on('error', (error) => options.log?.(`server error: ${error.message}`));
  const listening = await listenPrivately(server, socketPath, connections);
  let closing = false;
  return {
    ...listening,
    // Connections accepted elsewhere (a member's mutual-TLS listener) are served here too.
    attach(socket, peer) {
      if (closing || connections.size >= maxConnections) socket.destroy();
      else attach(socket, peer);
    },
    close() {
      closing = true;
      return listening.close();
    },
  };
}

/** Removes a socket file left by a partition that died; refuses to touch a live socket or any other file. */
export async function clearStaleSocket(socketPath: string): Promise<void> {
  const stat = await lstat(socketPath).catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return undefined;
    throw error;
  });
  if (!stat) return;
  if (!stat.isSocket()) throw new Error(`${socketPath} exists and is not a socket`);
  const alive = await new Promise<boolean>((resolve) => {
    const probe = createConnection(socketPath);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
  if (alive) throw new Error(`another partition already serves ${socketPath}`);
  await unlink(socketPath);
}

const HIGH_WATER = 8 * 1024 * 1024;
/**
 * Frames are handled in slices of about this many milliseconds, with the answers so far written
 * between slices. Handling a whole read (a hundred signatures) before answering any would leave
 * client and partition waiting on each other in turn; slices keep both busy (issue #2 benchmark).
 */
const SLICE_MS = 1;

class Connection {
  private readonly session: PartitionSession;
  private readonly reader = new FrameReader();
  private hello = false;
  private out: Buffer[] = [];
  /** Frames read but not yet handled, oldest first from `queueHead`. */
  private queue: Buffer[] = [];
  private queueHead = 0;
  private pumpScheduled = false;
  private inFlight = 0;
  private readPaused = false;
  private ended = false;
  private frameTimer: NodeJS.Timeout | undefined;
  private frameMark = -1;
  private readonly maxInFlight: number;

  constructor(
    private readonly socket: Socket,
    partition: EmulatedPartition,
    private readonly ops: Record<string, PartitionOp<never>>,
    private readonly options: PartitionServerOptions,
    peer: string | undefined,
  ) {
    this.session = partition.openSession();
    this.session.linkPeer = peer;
    this.maxInFlight = options.maxInFlight ?? 4096;
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('end', () => this.onEnd());
    socket.on('drain', () => this.maybeResume());
    socket.on('error', () => socket.destroy());
    socket.on('close', () => {
      clearTimeout(this.frameTimer);
      this.out = [];
      void this.session.close();
    });
  }

  destroy(): void {
    this.socket.destroy();
  }

  private onData(chunk: Buffer): void {
    try {
      this.reader.push(
        chunk,
        (payload) => {
          this.queue.push(payload);
        },
        (declared) =>
          this.refuse(
            0,
            new HsmError('CKR_PROTOCOL', `frame of ${declared} octets exceeds the ${MAX_FRAME}-octet limit`),
          ),
      );
    } catch (error) {
      // Not expected: the handlers answer their own errors. Never let one take the process down.
      this.options.log?.(`connection error: ${(error as Error).message}`);
      this.socket.destroy();
      return;
    }
    if (this.queue.length - this.queueHead >= this.maxInFlight) this.pauseReading();
    this.schedule();
    this.watchFrame();
  }

  private schedule(): void {
    if (!this.pumpScheduled) {
      this.pumpScheduled = true;
      setImmediate(this.pump);
    }
  }

  /** Writes the answers gathered so far, then handles the next slice of frames. */
  private readonly pump = (): void => {
    this.pumpScheduled = false;
    this.flush();
    if (this.queueHead < this.queue.length) {
      const deadline = performance.now() + SLICE_MS;
      do {
        const payload = this.queue[this.queueHead++]!;
        this.onFrame(payload);
      } while (this.queueHead < this.queue.length && performance.now() < deadline);
      if (this.queueHead === this.queue.length) {
        this.queue = [];
        this.queueHead = 0;
      }
      // Answers of this slice are pushed by its microtasks; the next pump writes them.
      this.schedule();
    }
    this.maybeResume();
    this.maybeFinish();
  };

  /** A frame must finish within frameTimeoutMs of its first octet; a client that stalls mid-frame is cut off. */
  private watchFrame(): void {
    if (!this.reader.partial) {
      clearTimeout(this.frameTimer);
      this.frameTimer = undefined;
      return;
    }
    if (this.frameTimer && this.frameMark === this.reader.completed) return;
    clearTimeout(this.frameTimer);
    this.frameMark = this.reader.completed;
    this.frameTimer = setTimeout(() => {
      this.refuse(0, new HsmError('CKR_PROTOCOL', 'frame not completed in time'));
      this.flush();
      this.queue = [];
      this.queueHead = 0;
      this.socket.end();
      setTimeout(() => this.socket.destroy(), 1000).unref();
    }, this.options.frameTimeoutMs ?? 30_000);
    this.frameTimer.unref();
  }

  private onEnd(): void {
    this.ended = true;
    if (this.reader.partial) this.refuse(0, new HsmError('CKR_PROTOCOL', 'connection ended inside a frame'));
    this.maybeFinish();
  }

  private onFrame(payload: Buffer): void {
    if (payload.length < HEADER_LENGTH) {
      this.refuse(0, new HsmError('CKR_PROTOCOL', 'frame is shorter than its header'));
      return;
    }
    const kind = payload[0];
    const id = payload.readUInt32BE(1);
    try {
      if (kind === KIND.SIGN && this.hello) {
        const frame = readSignFrame(payload);
        const ref: KeyRef =
          frame.refKind === KEY_REF_KIND.label
            ? { label: frame.ref }
            : frame.refKind === KEY_REF_KIND.id
              ? { id: frame.ref }
              : { uri: frame.ref };
        const request: SignRequest = {
          key: ref,
          mechanism: frame.mechanism,
          purpose: frame.purpose,
          data: frame.data,
        };
        if (frame.saltLength !== undefined) request.saltLength = frame.saltLength;
        this.track(id, this.session.sign(request), (signature) => signature);
      } else if (kind === KIND.SIGN_UPDATE && this.hello) {
        const { handle, chunk } = readUpdateFrame(payload);
        this.track(id, this.session.signUpdate(handle, chunk), () => Buffer.alloc(0));
      } else if (kind === KIND.CALL) {
        this.onCall(id, payload);
      } else if (kind === KIND.SIGN || kind === KIND.SIGN_UPDATE) {
        this.refuse(id, new HsmError('CKR_PROTOCOL', 'say hello first'));
      } else {
        this.refuse(id, new HsmError('CKR_PROTOCOL', `unknown frame kind ${kind}`));
      }
    } catch (error) {
      this.refuse(id, error);
    }
  }

  private onCall(id: number, payload: Buffer): void {
    let request: unknown;
    try {
      request = JSON.parse(payload.toString('utf8', HEADER_LENGTH));
    } catch {
      throw new HsmError('CKR_PROTOCOL', 'CALL body is not JSON');
    }
    if (typeof request !== 'object' || request === null || Array.isArray(request)) {
      throw new HsmError('CKR_PROTOCOL', 'CALL body is not an object');
    }
    const { op: name, args, ...rest } = request as { op?: unknown; args?: unknown };
    if (typeof name !== 'string') throw new HsmError('CKR_PROTOCOL', 'CALL body has no op');
    if (Object.keys(rest).length > 0)
      throw new HsmError('CKR_PROTOCOL', 'CALL body has fields other than op and args');
    if (name === 'hello') {
      this.onHello(id, args);
      return;
    }
    if (!this.hello) throw new HsmError('CKR_PROTOCOL', 'say hello first');
    const definition = Object.hasOwn(this.ops, name) ? this.ops[name] : undefined;
    if (!definition) {
      const shown = OP_NAME.test(name) ? name : 'unknown';
      this.track(
        id,
        this.session.perform(
          shown,
          'public',
          () => {
            throw new HsmError('CKR_FUNCTION_NOT_SUPPORTED', `unknown operation '${shown}'`);
          },
          { whenSealed: true },
        ),
        () => '',
      );
      return;
    }
    const parsed = definition.args.safeParse(args);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      const where = issue?.path.length ? issue.path.join('.') : 'args';
      // Capped: a message may echo what the client sent (a list of unknown keys).
      const failure = new HsmError(
        'CKR_ARGUMENTS_BAD',
        `${where}: ${issue?.message ?? 'invalid'}`.slice(0, 200),
      );
      this.track(
        id,
        this.session.perform(name, 'public', () => Promise.reject(failure), { whenSealed: true }),
        () => '',
      );
      return;
    }
    const isBuiltIn = Object.hasOwn(BUILT_IN_OPS, name);
    // Built-in operations check access and audit inside the session; extensions get the same here.
    const result = isBuiltIn
      ? definition.run(this.session, parsed.data as never)
      : this.session.perform(
          name,
          definition.access,
          (event) => definition.run(this.session, parsed.data as never, event),
          { whenSealed: definition.whenSealed ?? false },
        );
    this.track(id, result, (value) => JSON.stringify(value ?? null));
  }

  private onHello(id: number, args: unknown): void {
    const hello = z
      .strictObject({
        protocol: z.literal(PROTOCOL_NAME),
        versions: z.array(z.number().int()).min(1).max(16),
      })
      .safeParse(args);
    if (!hello.success)
      throw new HsmError('CKR_PROTOCOL', `hello must be { protocol: '${PROTOCOL_NAME}', versions }`);
    const version = Math.max(
      ...hello.data.versions.filter((v) => (SUPPORTED_VERSIONS as readonly number[]).includes(v)),
    );
    if (!Number.isFinite(version)) {
      throw new HsmError(
        'CKR_PROTOCOL',
        `no common protocol version; this partition speaks ${SUPPORTED_VERSIONS.join(', ')}`,
      );
    }
    this.hello = true;
    const partition = this.session.status().then((status) => ({
      protocol: PROTOCOL_NAME,
      version,
      partition: status.name,
      backend: status.backend,
      maxFrame: MAX_FRAME,
    }));
    this.track(id, partition, (value) => JSON.stringify(value));
  }

  private track<T>(id: number, promise: Promise<T>, encode: (value: T) => Uint8Array | string): void {
    this.inFlight++;
    if (this.inFlight >= this.maxInFlight) this.pauseReading();
    promise.then(
      (value) => {
        this.inFlight--;
        let body: Uint8Array | string;
        try {
          body = encode(value);
        } catch (error) {
          this.refuse(id, error);
          return;
        }
        this.answer(id, STATUS.OK, body);
      },
      (error: unknown) => {
        this.inFlight--;
        this.refuse(id, error);
      },
    );
  }

  private refuse(id: number, error: unknown): void {
    let failure: HsmError;
    if (isHsmError(error)) failure = error;
    else {
      this.options.log?.(`internal error: ${(error as Error)?.message ?? String(error)}`);
      failure = new HsmError('CKR_DEVICE_ERROR', 'internal error');
    }
    if (failure.rv === 'CKR_PROTOCOL') void this.session.recordProtocolError(failure.code);
    this.answer(id, STATUS.ERROR, errorBody(failure));
  }

  private answer(id: number, status: number, body: Uint8Array | string): void {
    if (this.socket.destroyed || !this.socket.writable) return;
    this.out.push(answerFrame(id, status, body));
    this.schedule();
  }

  /** Writes every answer gathered since the last write at once. */
  private flush(): void {
    if (this.out.length > 0 && !this.socket.destroyed && this.socket.writable) {
      const data = this.out.length === 1 ? this.out[0]! : Buffer.concat(this.out);
      this.out = [];
      this.socket.write(data);
      if (this.socket.writableLength > HIGH_WATER) this.pauseReading();
    }
  }

  private pauseReading(): void {
    if (!this.readPaused) {
      this.readPaused = true;
      this.socket.pause();
    }
  }

  private maybeResume(): void {
    if (
      this.readPaused &&
      this.inFlight < this.maxInFlight / 2 &&
      this.queue.length - this.queueHead < this.maxInFlight / 2 &&
      this.socket.writableLength <= HIGH_WATER
    ) {
      this.readPaused = false;
      this.socket.resume();
    }
  }

  /** After the client half-closes, answer what is in flight, then close our side. */
  private maybeFinish(): void {
    const idle = this.inFlight === 0 && this.out.length === 0 && this.queueHead === this.queue.length;
    if (this.ended && idle && !this.pumpScheduled) this.socket.end();
  }
}
