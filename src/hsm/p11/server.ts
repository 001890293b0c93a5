import { createServer, type Server, type Socket } from 'node:net';
import type { EmulatedPartition } from '../partition.ts';
import { clearStaleSocket } from '../server.ts';
import { HsmError } from '../types.ts';
import { listenPrivately } from '../unix-socket.ts';
import { dispatch } from './dispatch.ts';
import { P11Token } from './token.ts';
import { ProtocolError, RpcReader } from './wire.ts';

/**
 * The partition's second socket: p11-kit's RPC protocol, which Debian's `p11-kit-client.so`
 * speaks when `P11_KIT_SERVER_ADDRESS=unix:path=PATH` (issue #26). Any PKCS#11 consumer
 * (pkcs11-tool, OpenSSL's pkcs11 engine, nginx) then uses the partition's keys of purpose
 * `other` with no native code in this project.
 *
 * Transport (p11-kit 0.24.1 `rpc-transport.c`): the client sends one version octet and reads
 * one back; this server speaks version 0, which newer clients fall back to. Then messages both
 * ways, each `u32 code, u32 options length, u32 body length` (big-endian), the options (the
 * client's module name, ignored) and the body (wire.ts). An answer echoes its request's code.
 * Requests on one connection are answered one after the other, in order.
 *
 * A malformed message (unknown call, wrong signature string, truncated or extra octets, an
 * oversized frame, a frame left unfinished) is recorded in the audit log and closes that
 * connection only; the partition and its other connections carry on.
 */

export interface P11ServerOptions {
  partition: EmulatedPartition;
  socketPath: string;
  /** The partition user C_Login(CKU_USER) logs in as. Default 'ca'. */
  user?: string;
  /** The partition user C_Login(CKU_SO) logs in as. Default 'officer'. */
  officer?: string;
  /** Default 256. */
  maxConnections?: number;
  /** A message must be complete this long after its first octet. Default 30 s. */
  frameTimeoutMs?: number;
  log?: (line: string) => void;
}

export interface P11Server {
  readonly socketPath: string;
  connectionCount(): number;
  close(): Promise<void>;
}

const HEADER = 12;
/** The protocol version this server speaks (p11-kit's P11_RPC_PROTOCOL_VERSION_MINIMUM). */
const VERSION = 0;
/** Largest body: a C_SignUpdate chunk, a certificate, a template; far above what clients send. */
const MAX_BODY = 8 * 1024 * 1024;
/** The options carry a module name. */
const MAX_OPTIONS = 4096;
/** Messages read ahead of the one being answered before the server stops reading. */
const MAX_QUEUED = 16;

export async function startP11Server(options: P11ServerOptions): Promise<P11Server> {
  const { socketPath } = options;
  await clearStaleSocket(socketPath);
  const connections = new Set<P11Connection>();
  const server: Server = createServer((socket) => {
    let connection: P11Connection;
    try {
      connection = new P11Connection(socket, options);
    } catch (error) {
      // The partition is closing: no session can be opened any more.
      options.log?.(`p11 connection refused: ${(error as Error).message}`);
      socket.destroy();
      return;
    }
    connections.add(connection);
    socket.once('close', () => connections.delete(connection));
  });
  server.maxConnections = options.maxConnections ?? 256;
  server.on('error', (error) => options.log?.(`p11 server error: ${error.message}`));
  // Created 0600 through the umask, so nobody else can connect before the chmod (as server.ts does).
  return listenPrivately(server, socketPath, connections);
}

class P11Connection {
  private readonly token: P11Token;
  private versioned = false;
  private buffered: Buffer[] = [];
  private bufferedLength = 0;
  private readonly queue: { code: number; body: Buffer }[] = [];
  private working = false;
  private closed = false;
  private frameTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly socket: Socket,
    private readonly options: P11ServerOptions,
  ) {
    this.token = new P11Token({
      partition: options.partition,
      ...(options.user ? { user: options.user } : {}),
      ...(options.officer ? { officer: options.officer } : {}),
    });
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', () => socket.destroy());
    socket.on('close', () => {
      this.closed = true;
      clearTimeout(this.frameTimer);
      void this.token.close();
    });
  }

  destroy(): void {
    this.socket.destroy();
  }

  private onData(chunk: Buffer): void {
    this.buffered.push(chunk);
    this.bufferedLength += chunk.length;
    const queued = this.queue.length;
    try {
      this.split();
    } catch (error) {
      this.fail(error instanceof ProtocolError ? error.message : 'unreadable stream');
      return;
    }
    this.watchFrame(this.queue.length > queued);
    if (this.queue.length >= MAX_QUEUED) this.socket.pause();
    void this.work();
  }

  /** Cuts complete frames off what was read. */
  private split(): void {
    let data =
      this.buffered.length === 1 ? this.buffered[0]! : Buffer.concat(this.buffered, this.bufferedLength);
    if (!this.versioned && data.length >= 1) {
      // Answer with our version whatever the client offers: a newer client falls back to it.
      this.versioned = true;
      this.socket.write(Buffer.from([VERSION]));
      data = data.subarray(1);
    }
    while (this.versioned && data.length >= HEADER) {
      const code = data.readUInt32BE(0);
      const optionsLength = data.readUInt32BE(4);
      const bodyLength = data.readUInt32BE(8);
      if (code === 0) throw new ProtocolError('message code 0');
      if (optionsLength > MAX_OPTIONS || bodyLength > MAX_BODY) throw new ProtocolError('message too large');
      const total = HEADER + optionsLength + bodyLength;
      if (data.length < total) break;
      this.queue.push({ code, body: Buffer.from(data.subarray(HEADER + optionsLength, total)) });
      data = data.subarray(total);
    }
    this.buffered = data.length > 0 ? [data] : [];
    this.bufferedLength = data.length;
  }

  /**
   * A message must be complete within the timeout of its first octet; a client stalled or
   * trickling mid-message is cut off. The clock restarts only when a message completes.
   */
  private watchFrame(completed: boolean): void {
    if (this.bufferedLength === 0 || completed) {
      clearTimeout(this.frameTimer);
      this.frameTimer = undefined;
    }
    if (this.bufferedLength === 0 || this.frameTimer) return;
    this.frameTimer = setTimeout(
      () => this.fail('message not completed in time'),
      this.options.frameTimeoutMs ?? 30_000,
    );
    this.frameTimer.unref();
  }

  private async work(): Promise<void> {
    if (this.working) return;
    this.working = true;
    try {
      while (this.queue.length > 0 && !this.closed) {
        const { code, body } = this.queue.shift()!;
        if (this.queue.length < MAX_QUEUED / 2) this.socket.resume();
        let answer: Buffer;
        try {
          ({ answer } = await dispatch(this.token, new RpcReader(body), (call, error) =>
            this.options.log?.(`p11 ${call.name} failed: ${(error as Error)?.message ?? String(error)}`),
          ));
        } catch (error) {
          this.fail(error instanceof ProtocolError ? error.message : 'internal error');
          if (!(error instanceof ProtocolError))
            this.options.log?.(`p11 connection error: ${(error as Error)?.message}`);
          return;
        }
        if (this.closed) return;
        const header = Buffer.alloc(HEADER);
        header.writeUInt32BE(code, 0);
        header.writeUInt32BE(0, 4);
        header.writeUInt32BE(answer.length, 8);
        this.socket.write(Buffer.concat([header, answer]));
      }
    } finally {
      this.working = false;
    }
  }

  /** Records why, and closes this connection (its login and operations end with it). */
  private fail(why: string): void {
    if (this.closed) return;
    this.closed = true;
    this.queue.length = 0;
    this.options.log?.(`p11 connection closed: ${why}`);
    void this.token.session
      .perform(
        'p11.protocol',
        'public',
        (event) => {
          event.detail = why.slice(0, 200);
          throw new HsmError('CKR_PROTOCOL', why);
        },
        { whenSealed: true },
      )
      .catch(() => {});
    this.socket.destroy();
  }
}
