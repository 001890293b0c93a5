import { createConnection, type Socket } from 'node:net';
import { CALL_ID, CALLS, HANDSHAKE } from '../../../src/hsm/p11/calls.ts';
import { CKF } from '../../../src/hsm/p11/pkcs11.ts';
import { RpcReader, RpcWriter } from '../../../src/hsm/p11/wire.ts';

/**
 * A bare p11-kit RPC client for tests: the transport of rpc-transport.c (a version octet, then
 * `u32 code, u32 options length, u32 body length` frames) and messages built by hand, so tests can
 * send what Debian's client would and what it never would (wrong signatures, truncated bodies).
 */
export class RpcTestClient {
  private buffered = Buffer.alloc(0);
  private waiting: ((frame: { code: number; body: Buffer } | undefined) => void) | undefined;
  private nextCode = 0x10;
  closed = false;

  private constructor(readonly socket: Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.buffered = Buffer.concat([this.buffered, chunk]);
      this.deliver();
    });
    socket.on('close', () => {
      this.closed = true;
      this.waiting?.(undefined);
      this.waiting = undefined;
    });
    socket.on('error', () => {});
  }

  /** Connects and exchanges the version octet; answers the server's version. */
  static async connect(path: string, version = 0): Promise<{ client: RpcTestClient; version: number }> {
    const socket = createConnection(path);
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    const got = await new Promise<number>((resolve, reject) => {
      socket.once('data', (chunk: Buffer) => {
        if (chunk.length !== 1) reject(new Error(`expected one version octet, got ${chunk.length}`));
        else resolve(chunk[0]!);
      });
      socket.write(Buffer.from([version]));
    });
    return { client: new RpcTestClient(socket), version: got };
  }

  private deliver(): void {
    if (!this.waiting || this.buffered.length < 12) return;
    const optionsLength = this.buffered.readUInt32BE(4);
    const bodyLength = this.buffered.readUInt32BE(8);
    const total = 12 + optionsLength + bodyLength;
    if (this.buffered.length < total) return;
    const frame = {
      code: this.buffered.readUInt32BE(0),
      body: this.buffered.subarray(12 + optionsLength, total),
    };
    this.buffered = this.buffered.subarray(total);
    const waiting = this.waiting;
    this.waiting = undefined;
    waiting(frame);
  }

  /** Sends raw octets as one frame's body; answers the body of the answer, or undefined once the server closed. */
  async rawCall(body: Buffer, code = this.nextCode++): Promise<{ code: number; body: Buffer } | undefined> {
    if (this.closed) return undefined;
    const header = Buffer.alloc(12);
    header.writeUInt32BE(code, 0);
    header.writeUInt32BE(0, 4);
    header.writeUInt32BE(body.length, 8);
    const answer = new Promise<{ code: number; body: Buffer } | undefined>((resolve) => {
      this.waiting = resolve;
    });
    this.socket.write(Buffer.concat([header, body]));
    this.deliver();
    return answer;
  }

  /**
   * Calls `name` with arguments written by `args`; answers the CK_RV (0 for a normal answer) and a
   * reader over the answer's values. Throws if the server closed the connection instead.
   */
  async call(name: string, args: (w: RpcWriter) => void = () => {}): Promise<{ rv: number; r: RpcReader }> {
    const id = CALL_ID[name];
    if (id === undefined) throw new Error(`no call ${name}`);
    const w = new RpcWriter().u32(id).rawArray(Buffer.from(CALLS[id]!.request, 'latin1'));
    args(w);
    const answer = await this.rawCall(w.finish());
    if (!answer) throw new Error(`the server closed the connection on ${name}`);
    const r = new RpcReader(answer.body);
    const answeredId = r.u32();
    const signature = r.rawArray()?.toString('latin1');
    if (answeredId === 0) {
      if (signature !== 'u') throw new Error('error answer with a wrong signature');
      return { rv: r.ulong(), r };
    }
    if (answeredId !== id || signature !== CALLS[id]!.response)
      throw new Error(`answer to ${name} is not one`);
    return { rv: 0, r };
  }

  close(): void {
    this.socket.destroy();
  }

  // --- conveniences ----------------------------------------------------------------------------

  async initialize(): Promise<number> {
    return (await this.call('C_Initialize', (w) => w.byteArray(HANDSHAKE).u8(0).byteArrayLength(0))).rv;
  }

  async openSession(rw = false): Promise<number> {
    const { rv, r } = await this.call('C_OpenSession', (w) =>
      w.ulong(1).ulong(CKF.SERIAL_SESSION | (rw ? CKF.RW_SESSION : 0)),
    );
    if (rv !== 0) throw new Error(`C_OpenSession: 0x${rv.toString(16)}`);
    return r.ulong();
  }

  async login(session: number, userType: number, pin: string): Promise<number> {
    return (await this.call('C_Login', (w) => w.ulong(session).ulong(userType).byteArray(Buffer.from(pin))))
      .rv;
  }

  /** C_FindObjectsInit with a template of (type, canonical value) pairs, then all handles. */
  async find(session: number, template: [number, Buffer][]): Promise<number[]> {
    const init = await this.call('C_FindObjectsInit', (w) => {
      w.ulong(session).u32(template.length);
      for (const [type, value] of template) w.attribute(type, value);
    });
    if (init.rv !== 0) throw new Error(`C_FindObjectsInit: 0x${init.rv.toString(16)}`);
    const { r } = await this.call('C_FindObjects', (w) => w.ulong(session).u32(100));
    r.u8();
    const count = r.u32();
    const handles = Array.from({ length: count }, () => r.ulong());
    await this.call('C_FindObjectsFinal', (w) => w.ulong(session));
    return handles;
  }
}
