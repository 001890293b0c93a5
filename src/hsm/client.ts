import { createHash } from 'node:crypto';
import { createConnection, isIP, type Socket } from 'node:net';
import { checkServerIdentity, connect as connectTls, type PeerCertificate } from 'node:tls';
import {
  callFrame,
  FrameReader,
  KEY_REF_KIND,
  MAX_UPDATE_CHUNK,
  PROTOCOL_NAME,
  readErrorBody,
  STATUS,
  SUPPORTED_VERSIONS,
  setFrameId,
  signDataRoom,
  signFrame,
  updateFrame,
} from './protocol.ts';
import {
  type CreateKeyRequest,
  HsmError,
  isHsmError,
  type KeyInfo,
  type KeyManager,
  type KeyRef,
  type LoginRequest,
  type PartitionSessionControl,
  type PartitionStatus,
  type PartitionUserAdmin,
  type Role,
  type SignInitRequest,
  type SignRequest,
  type SignStreamRequest,
  type UnsealRequest,
  type UserInfo,
} from './types.ts';

/**
 * The CA's side of the partition socket: a KeyManager whose every call crosses to the partition
 * process. Calls are pipelined on one connection and batched per event-loop turn.
 *
 * The CA must outlive its partition: when the partition dies, calls in flight fail with HsmError
 * CKR_DEVICE_REMOVED ('hsm.unavailable'), and so do calls that find no partition; a call that
 * gets no answer within its timeout fails the same way and drops the connection. The next call
 * connects again, runs `onConnect` (unseal if needed, log in) and proceeds.
 */
/** A member over mutual TLS (link.ts): where, and the CA node's client certificate with the link CA. */
export interface TlsEndpoint {
  host: string;
  port: number;
  /** PEM: the client certificate, its key, and the CA the partition's certificate must chain to. */
  cert: string | Buffer;
  key: string | Buffer;
  ca: string | Buffer;
  /**
   * SHA-256 (hex) of the one certificate the member may present, on top of the chain and name
   * checks: how members of a cluster reach exactly the member the membership lists (issue #23).
   */
  fingerprint?: string;
}

export interface RemotePartitionOptions {
  /** The partition's Unix socket; or, instead, `tls`. */
  socketPath?: string;
  /** A partition member over mutual TLS 1.3 (`signet hsm serve --listen`). */
  tls?: TlsEndpoint;
  /** Default 30 s. */
  requestTimeoutMs?: number;
  /** Key generation (RSA-4096 takes seconds). Default 120 s. */
  createKeyTimeoutMs?: number;
  /** Default 5 s. */
  connectTimeoutMs?: number;
  /**
   * Runs on every new connection before any other call uses it: sessions (logins) do not
   * survive a reconnect, so this is where the CA logs in, e.g. `(p) => p.login({ user, pin })`.
   * It gets a RemotePartition bound to the new connection. A failure fails the calls waiting.
   */
  onConnect?: (partition: RemotePartition) => Promise<void>;
  /**
   * Told how long each signature took, by purpose (the server's partition signing histogram): an
   * explicit hook, so nothing wraps this client's methods from outside.
   */
  onSigned?: (purpose: string, seconds: number) => void;
}

interface Pending {
  resolve: (body: Buffer) => void;
  reject: (error: HsmError) => void;
  deadline: number;
}

const unavailable = (message: string, cause?: unknown) =>
  new HsmError('CKR_DEVICE_REMOVED', message, cause === undefined ? undefined : { cause });

/** After a failed connection attempt, calls fail fast with its error for this long before the next try. */
const RETRY_AFTER_MS = 250;
/** Failures of onConnect that retrying cannot cure and that would count against the user's PIN. */
const STICKY_FAILURES = new Set([
  'CKR_PIN_INCORRECT',
  'CKR_PIN_LOCKED',
  'CKR_USER_TYPE_INVALID',
  'CKR_PROTOCOL',
]);

/** How many SIGN_UPDATE frames a multi-part signature keeps in flight. */
const UPDATE_WINDOW = 8;
/** Chunk size a multi-part signature sends, well under the frame limit. */
const UPDATE_CHUNK = 512 * 1024;

/** The usual host name check, then the certificate must be exactly the pinned one. */
const pinned =
  (fingerprint: string) =>
  (host: string, cert: PeerCertificate): Error | undefined =>
    checkServerIdentity(host, cert) ??
    (createHash('sha256').update(cert.raw).digest('hex') === fingerprint
      ? undefined
      : new Error(`the certificate presented at ${host} is not the member's`));

/** One socket to the partition: framing, request ids, answers, timeouts. */
class ClientConnection {
  private readonly pending = new Map<number, Pending>();
  private readonly reader = new FrameReader();
  private nextId = 1;
  private out: Buffer[] = [];
  private flushScheduled = false;
  private sweeper: NodeJS.Timeout;
  private failure: HsmError | undefined;
  hello: { version: number; partition: string; backend: string; maxFrame: number } | undefined;

  private constructor(private readonly socket: Socket) {
    socket.setNoDelay?.(true);
    socket.on('data', (chunk: Buffer) => {
      try {
        this.reader.push(
          chunk,
          (payload) => this.onAnswer(payload),
          () => this.fail(new HsmError('CKR_PROTOCOL', 'the partition sent an oversized frame')),
        );
      } catch (error) {
        this.fail(new HsmError('CKR_PROTOCOL', 'unreadable answer from the partition', { cause: error }));
      }
    });
    socket.on('error', (error) => this.fail(unavailable('partition connection failed', error)));
    socket.on('close', () => this.fail(unavailable('partition connection closed')));
    this.sweeper = setInterval(() => this.sweep(), 250);
    this.sweeper.unref();
  }

  static open(
    endpoint: { socketPath?: string; tls?: TlsEndpoint },
    timeoutMs: number,
  ): Promise<ClientConnection> {
    const { tls } = endpoint;
    const where = tls
      ? `tls://${isIP(tls.host) === 6 ? `[${tls.host}]` : tls.host}:${tls.port}`
      : endpoint.socketPath;
    return new Promise((resolve, reject) => {
      const socket = tls
        ? connectTls({
            host: tls.host,
            port: tls.port,
            cert: tls.cert,
            key: tls.key,
            ca: tls.ca,
            minVersion: 'TLSv1.3',
            maxVersion: 'TLSv1.3',
            // SNI carries host names only (RFC 6066 section 3); the certificate is checked against the host either way.
            ...(isIP(tls.host) === 0 ? { servername: tls.host } : {}),
            ...(tls.fingerprint ? { checkServerIdentity: pinned(tls.fingerprint) } : {}),
          })
        : createConnection(endpoint.socketPath ?? '');
      const timer = setTimeout(() => {
        socket.destroy();
        reject(unavailable(`no partition answered at ${where}`));
      }, timeoutMs);
      socket.once(tls ? 'secureConnect' : 'connect', () => {
        clearTimeout(timer);
        socket.removeAllListeners('error');
        resolve(new ClientConnection(socket));
      });
      socket.once('error', (error: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        reject(unavailable(`no partition at ${where} (${error.code ?? error.message})`, error));
      });
    });
  }

  get open(): boolean {
    return this.failure === undefined;
  }

  /** Sends a whole frame (built with its id field blank) and resolves with the answer's body. */
  send(frame: Buffer, timeoutMs: number): Promise<Buffer> {
    if (this.failure) return Promise.reject(this.failure);
    const id = this.nextId;
    this.nextId = this.nextId >= 0xffff_ffff ? 1 : this.nextId + 1;
    setFrameId(frame, id);
    const answer = new Promise<Buffer>((resolve, reject) => {
      this.pending.set(id, { resolve, reject, deadline: Date.now() + timeoutMs });
    });
    this.out.push(frame);
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => this.flush());
    }
    return answer;
  }

  /** Resolves once the socket has room again (multi-part signatures wait on it). */
  async writable(): Promise<void> {
    if (this.socket.writableNeedDrain && this.open) {
      await new Promise<void>((resolve) => {
        const done = () => {
          this.socket.off('drain', done);
          this.socket.off('close', done);
          resolve();
        };
        this.socket.on('drain', done);
        this.socket.on('close', done);
      });
    }
  }

  private flush(): void {
    this.flushScheduled = false;
    if (this.out.length === 0 || this.failure) return;
    const data = this.out.length === 1 ? this.out[0]! : Buffer.concat(this.out);
    this.out = [];
    this.socket.write(data);
  }

  private onAnswer(payload: Buffer): void {
    if (payload.length < 5) {
      this.fail(new HsmError('CKR_PROTOCOL', 'the partition sent a frame shorter than its header'));
      return;
    }
    const status = payload[0];
    const id = payload.readUInt32BE(1);
    const entry = this.pending.get(id);
    if (!entry) {
      // Id 0 answers a frame the partition could not read: this client is out of step with it.
      if (id === 0) this.fail(readErrorBody(payload.subarray(5)));
      return;
    }
    this.pending.delete(id);
    if (status === STATUS.OK) entry.resolve(Buffer.from(payload.subarray(5)));
    else entry.reject(readErrorBody(payload.subarray(5)));
  }

  private sweep(): void {
    const now = Date.now();
    for (const entry of this.pending.values()) {
      if (entry.deadline < now) {
        this.fail(unavailable('the partition did not answer in time'));
        return;
      }
    }
  }

  /** Fails every call in flight and every later one; the owner reconnects. */
  fail(error: HsmError): void {
    if (!this.failure) {
      this.failure = error.rv === 'CKR_DEVICE_REMOVED' ? error : unavailable(error.message, error);
    }
    clearInterval(this.sweeper);
    this.out = [];
    const pending = [...this.pending.values()];
    this.pending.clear();
    for (const entry of pending) entry.reject(this.failure);
    this.socket.destroy();
  }
}

const keyFromWire = (wire: KeyInfo & { publicKey: unknown }): KeyInfo => ({
  ...wire,
  publicKey: new Uint8Array(Buffer.from(wire.publicKey as unknown as string, 'base64')),
});

const toBase64 = (bytes: Uint8Array) =>
  Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');

function refKind(ref: KeyRef): { refKind: number; ref: string } {
  if (typeof ref !== 'object' || ref === null)
    throw new HsmError('CKR_ARGUMENTS_BAD', 'key reference must be an object');
  const given =
    (ref.uri !== undefined ? 1 : 0) + (ref.label !== undefined ? 1 : 0) + (ref.id !== undefined ? 1 : 0);
  if (given !== 1) throw new HsmError('CKR_ARGUMENTS_BAD', 'name a key by exactly one of uri, label or id');
  const [kind, value] =
    ref.label !== undefined
      ? [KEY_REF_KIND.label, ref.label]
      : ref.id !== undefined
        ? [KEY_REF_KIND.id, ref.id]
        : [KEY_REF_KIND.uri, ref.uri];
  if (typeof value !== 'string') throw new HsmError('CKR_ARGUMENTS_BAD', 'a key reference is a string');
  return { refKind: kind, ref: value };
}

export class RemotePartition implements KeyManager, PartitionSessionControl, PartitionUserAdmin {
  private connection: ClientConnection | undefined;
  private connecting: Promise<ClientConnection> | undefined;
  private closed = false;
  private readonly requestTimeoutMs: number;
  /** Why the last connection attempt failed, and until when calls fail fast with it instead of retrying. */
  private lastFailure: { error: HsmError; until: number } | undefined;

  private constructor(
    private readonly options: RemotePartitionOptions,
    /** Set for the instance given to onConnect: it talks over that one connection, never reconnects. */
    private readonly bound?: ClientConnection,
  ) {
    this.requestTimeoutMs = options.requestTimeoutMs ?? 30_000;
    if ((options.socketPath === undefined) === (options.tls === undefined)) {
      throw new Error('a partition client takes exactly one of socketPath and tls');
    }
  }

  /** Where this client connects: the socket path or tls://host:port. */
  get endpoint(): string {
    const { tls } = this.options;
    return tls
      ? `tls://${isIP(tls.host) === 6 ? `[${tls.host}]` : tls.host}:${tls.port}`
      : this.options.socketPath!;
  }

  /** Whether a connection is open now (no call is made). */
  get connected(): boolean {
    return (this.bound ?? this.connection)?.open ?? false;
  }

  /** A client that connects at its first call (a cluster member that may be down now). */
  static create(options: RemotePartitionOptions): RemotePartition {
    return new RemotePartition(options);
  }

  /** Connects (and runs onConnect); fails with CKR_DEVICE_REMOVED when no partition answers. */
  static async connect(options: RemotePartitionOptions): Promise<RemotePartition> {
    const partition = new RemotePartition(options);
    await partition.ready();
    return partition;
  }

  /** The partition's name and protocol version, from the last hello. */
  get hello(): { version: number; partition: string; backend: string } | undefined {
    const hello = (this.bound ?? this.connection)?.hello;
    return hello && { version: hello.version, partition: hello.partition, backend: hello.backend };
  }

  private ready(): ClientConnection | Promise<ClientConnection> {
    if (this.bound) return this.bound;
    if (this.closed) throw unavailable('this client is closed');
    if (this.connection?.open) return this.connection;
    if (this.lastFailure && Date.now() < this.lastFailure.until) throw this.lastFailure.error;
    this.connecting ??= this.open()
      .then(
        (connection) => {
          this.lastFailure = undefined;
          return connection;
        },
        (error: HsmError) => {
          // A refused login does not fix itself: retrying on every call would only lock the user
          // (CKR_PIN_LOCKED after five). Such a failure stays until reconnect() is called.
          const sticky = STICKY_FAILURES.has(error.rv);
          this.lastFailure = {
            error,
            until: sticky ? Number.POSITIVE_INFINITY : Date.now() + RETRY_AFTER_MS,
          };
          throw error;
        },
      )
      .finally(() => {
        this.connecting = undefined;
      });
    return this.connecting;
  }

  /**
   * Drops the connection and connects again now (running onConnect), clearing a remembered
   * failure: for after the operator fixed a PIN or unsealed the partition.
   */
  async reconnect(): Promise<void> {
    if (this.bound)
      throw new HsmError('CKR_OPERATION_NOT_PERMITTED', 'a connection given to onConnect does not reconnect');
    await this.connecting?.catch(() => {});
    this.connection?.fail(unavailable('reconnecting'));
    this.connection = undefined;
    this.lastFailure = undefined;
    await this.ready();
  }

  private async open(): Promise<ClientConnection> {
    const { connectTimeoutMs = 5000 } = this.options;
    const connection = await ClientConnection.open(this.options, connectTimeoutMs);
    try {
      const body = await connection.send(
        callFrame('hello', { protocol: PROTOCOL_NAME, versions: [...SUPPORTED_VERSIONS] }),
        connectTimeoutMs,
      );
      const hello = JSON.parse(body.toString('utf8')) as ClientConnection['hello'];
      if (!hello || !(SUPPORTED_VERSIONS as readonly number[]).includes(hello.version)) {
        throw new HsmError(
          'CKR_PROTOCOL',
          'the partition chose a protocol version this client does not speak',
        );
      }
      connection.hello = hello;
      if (this.options.onConnect) await this.options.onConnect(new RemotePartition(this.options, connection));
    } catch (error) {
      const failure = isHsmError(error) ? error : unavailable('partition handshake failed', error);
      connection.fail(failure);
      throw failure;
    }
    if (this.closed) {
      connection.fail(unavailable('this client is closed'));
      throw unavailable('this client is closed');
    }
    this.connection = connection;
    return connection;
  }

  /** Sends a CALL; the answer is the operation's JSON. Custody's extension operations go through here. */
  async call<T = unknown>(
    op: string,
    args?: unknown,
    { timeoutMs }: { timeoutMs?: number } = {},
  ): Promise<T> {
    const frame = callFrame(op, args);
    const connection = await this.ready();
    const body = await connection.send(frame, timeoutMs ?? this.requestTimeoutMs);
    return JSON.parse(body.toString('utf8')) as T;
  }

  async status(): Promise<PartitionStatus> {
    return this.call('status');
  }

  async login(request: LoginRequest): Promise<{ user: string; role: Role }> {
    return this.call('login', { user: request.user, pin: request.pin });
  }

  async logout(): Promise<void> {
    await this.call('logout');
  }

  async unseal(request: UnsealRequest): Promise<PartitionStatus> {
    const args =
      request.shares !== undefined
        ? { shares: request.shares.map(toBase64) }
        : { secret: request.secret === undefined ? undefined : toBase64(request.secret) };
    return this.call('unseal', args);
  }

  async createKey(request: CreateKeyRequest): Promise<KeyInfo> {
    const timeoutMs = this.options.createKeyTimeoutMs ?? 120_000;
    return keyFromWire(await this.call('createKey', request, { timeoutMs }));
  }

  async findKey(request: KeyRef): Promise<KeyInfo | undefined> {
    const wire = await this.call<(KeyInfo & { publicKey: unknown }) | null>('findKey', request);
    return wire ? keyFromWire(wire) : undefined;
  }

  async listKeys(): Promise<KeyInfo[]> {
    return (await this.call<(KeyInfo & { publicKey: unknown })[]>('listKeys')).map(keyFromWire);
  }

  async getPublicKey(request: KeyRef): Promise<Uint8Array> {
    const { publicKey } = await this.call<{ publicKey: string }>('getPublicKey', request);
    return new Uint8Array(Buffer.from(publicKey, 'base64'));
  }

  async destroyKey(request: KeyRef): Promise<void> {
    await this.call('destroyKey', request);
  }

  async exportKey(request: KeyRef): Promise<Uint8Array> {
    return new Uint8Array(Buffer.from(await this.call<string>('exportKey', request), 'base64'));
  }

  async generateRandom(request: { length: number }): Promise<Uint8Array> {
    const { bytes } = await this.call<{ bytes: string }>('generateRandom', { length: request.length });
    return new Uint8Array(Buffer.from(bytes, 'base64'));
  }

  /**
   * One signature; data that does not fit one frame goes as a multi-part signature instead,
   * so callers (the WebCrypto facade signing a large CRL) need not care.
   */
  async sign(request: SignRequest): Promise<Uint8Array> {
    return this.timedSign(request.purpose, () => this.signUntimed(request));
  }

  /** Multi-part signature: signInit, SIGN_UPDATE frames (a few in flight), signFinal, on one connection. */
  async signStream(request: SignStreamRequest): Promise<Uint8Array> {
    return this.timedSign(request.purpose, () => this.signStreamUntimed(request));
  }

  private async timedSign(purpose: string | undefined, work: () => Promise<Uint8Array>): Promise<Uint8Array> {
    const observe = this.options.onSigned;
    if (!observe) return work();
    const started = performance.now();
    try {
      return await work();
    } finally {
      observe(purpose ?? 'other', (performance.now() - started) / 1000);
    }
  }

  private async signUntimed(request: SignRequest): Promise<Uint8Array> {
    const { refKind: kind, ref } = refKind(request.key);
    if (!(request.data instanceof Uint8Array)) throw new HsmError('CKR_ARGUMENTS_BAD', 'data is bytes');
    if (request.data.length > signDataRoom(ref)) {
      const { data, ...init } = request;
      return this.signStreamUntimed({ ...init, chunks: [data] });
    }
    const frame = signFrame({
      mechanism: request.mechanism,
      purpose: request.purpose,
      ...(request.saltLength !== undefined ? { saltLength: request.saltLength } : {}),
      refKind: kind,
      ref,
      data: request.data,
    });
    const connection = this.connection?.open && !this.bound ? this.connection : await this.ready();
    return connection.send(frame, this.requestTimeoutMs);
  }

  private async signStreamUntimed(request: SignStreamRequest): Promise<Uint8Array> {
    const { chunks, ...rest } = request;
    const init: SignInitRequest = {
      key: rest.key,
      mechanism: rest.mechanism,
      purpose: rest.purpose,
      ...(rest.saltLength !== undefined ? { saltLength: rest.saltLength } : {}),
    };
    const connection = await this.ready();
    const timeout = this.requestTimeoutMs;
    const callOn = async <T>(op: string, args: unknown): Promise<T> =>
      JSON.parse((await connection.send(callFrame(op, args), timeout)).toString('utf8')) as T;
    const { handle } = await callOn<{ handle: number }>('signInit', init);
    const inFlight: Promise<Buffer>[] = [];
    try {
      for await (const chunk of chunks) {
        if (!(chunk instanceof Uint8Array)) throw new HsmError('CKR_ARGUMENTS_BAD', 'chunks are bytes');
        for (let offset = 0; offset < chunk.length; offset += UPDATE_CHUNK) {
          const piece = chunk.subarray(
            offset,
            Math.min(offset + UPDATE_CHUNK, offset + MAX_UPDATE_CHUNK, chunk.length),
          );
          const answer = connection.send(updateFrame(handle, piece), timeout);
          answer.catch(() => {});
          inFlight.push(answer);
          if (inFlight.length >= UPDATE_WINDOW) await inFlight.shift();
          await connection.writable();
        }
      }
      await Promise.all(inFlight);
    } catch (error) {
      await callOn('signCancel', { handle }).catch(() => {});
      throw error;
    }
    const { signature } = await callOn<{ signature: string }>('signFinal', { handle });
    return new Uint8Array(Buffer.from(signature, 'base64'));
  }

  async createUser(request: { name: string; role: Role; pin: string }): Promise<UserInfo> {
    return this.call('createUser', { name: request.name, role: request.role, pin: request.pin });
  }

  async listUsers(): Promise<UserInfo[]> {
    return this.call('listUsers');
  }

  async unlockUser(request: { name: string }): Promise<UserInfo> {
    return this.call('unlockUser', { name: request.name });
  }

  async setUserPin(request: { name: string; pin: string }): Promise<void> {
    await this.call('setUserPin', { name: request.name, pin: request.pin });
  }

  async deleteUser(request: { name: string }): Promise<void> {
    await this.call('deleteUser', { name: request.name });
  }

  /** Closes the connection; later calls fail with CKR_DEVICE_REMOVED. */
  async close(): Promise<void> {
    if (this.bound) return;
    this.closed = true;
    this.connection?.fail(unavailable('this client is closed'));
    this.connection = undefined;
  }
}
