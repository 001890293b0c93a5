/**
 * Fuzzing a socket protocol from recorded real traffic (issue #34): a recording proxy in front of
 * the partition's Unix sockets keeps what real clients send (the CA's RemotePartition, pkcs11-tool
 * on p11-kit-client.so), split into frames. Replays then mutate it two ways:
 *
 * - frame by frame on a primed connection (the recorded prelude up to the login replayed intact,
 *   so the mutated frames reach the operations behind it): one mutated frame at a time, its length
 *   fields usually fixed up so that it is parsed, and each must be answered (or the connection
 *   closed) within the time limit;
 * - the whole recorded stream mutated byte by byte (framing, the version byte, hello and login),
 *   written, then half-closed: the server must close within the time limit.
 */
import { connect, createServer, type Server, type Socket } from 'node:net';
import {
  bounded,
  keepFailure,
  mutateBytes,
  mutateJsonText,
  Rng,
  regressionInputs,
  tally,
} from './mutator.ts';

/** How a protocol splits a byte stream into frames, and which frames prime a connection. */
export interface Framing {
  name: string;
  /** Bytes sent once before the first frame (p11-kit: the version byte). */
  preamble: number;
  /** The length of the frame at `offset` (header included), or undefined if incomplete. */
  frameLength(stream: Buffer, offset: number): number | undefined;
  /** The frame with its length fields set to fit its (mutated) body. */
  fixLengths(frame: Buffer): Buffer;
  /** Mutates one frame (its header is the first `header` bytes). */
  mutate(rng: Rng, frame: Buffer): Buffer;
  /** A frame that logs in: the prelude of a primed connection ends with it. */
  isLogin(frame: Buffer): boolean;
  /** A frame not replayed alone (it ends the session's state: logout, finalize). */
  isTeardown(frame: Buffer): boolean;
}

export interface RecordedSession {
  preamble: Buffer;
  frames: Buffer[];
}

/** Splits a recorded client stream into its preamble and whole frames (a trailing partial frame is dropped). */
export function splitSession(framing: Framing, stream: Buffer): RecordedSession {
  const preamble = stream.subarray(0, framing.preamble);
  const frames: Buffer[] = [];
  let offset = framing.preamble;
  for (;;) {
    const length = framing.frameLength(stream, offset);
    if (length === undefined || offset + length > stream.length) break;
    frames.push(Buffer.from(stream.subarray(offset, offset + length)));
    offset += length;
  }
  return { preamble: Buffer.from(preamble), frames };
}

/** A Unix-socket proxy that records each connection's client-to-server bytes. */
export async function recordingProxy(listenPath: string, targetPath: string) {
  const sessions: Buffer[][] = [];
  const server: Server = createServer((client) => {
    const chunks: Buffer[] = [];
    sessions.push(chunks);
    const upstream = connect(targetPath);
    client.on('data', (data: Buffer) => {
      chunks.push(Buffer.from(data));
      upstream.write(data);
    });
    upstream.on('data', (data: Buffer) => client.write(data));
    client.on('end', () => upstream.end());
    upstream.on('end', () => client.end());
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
  });
  await new Promise<void>((resolve) => server.listen(listenPath, resolve));
  return {
    /** Every connection so far, as one buffer each. */
    streams: () => sessions.map((chunks) => Buffer.concat(chunks)),
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** The partition protocol (src/hsm/protocol.ts): u32 length | kind | u32 id | body. */
export const partitionFraming: Framing = {
  name: 'partition-socket',
  preamble: 0,
  frameLength: (stream, offset) =>
    stream.length - offset >= 4 ? 4 + stream.readUInt32BE(offset) : undefined,
  fixLengths(frame) {
    const out = Buffer.from(
      frame.length >= 4 ? frame : Buffer.concat([frame, Buffer.alloc(4 - frame.length)]),
    );
    out.writeUInt32BE(out.length - 4, 0);
    return out;
  },
  mutate(rng, frame) {
    // A CALL's JSON mutated as JSON reaches the argument checks; otherwise bytes anywhere.
    if (frame[4] === 1 && rng.int(2) === 0) {
      try {
        const call = JSON.parse(frame.subarray(9).toString('utf8')) as unknown;
        return Buffer.concat([frame.subarray(0, 9), Buffer.from(mutateJsonText(rng, call), 'utf8')]);
      } catch {
        // not JSON after all: fall through to bytes
      }
    }
    return Buffer.from(mutateBytes(rng, frame));
  },
  isLogin: (frame) => frame[4] === 1 && /"op":"login"/.test(frame.subarray(9).toString('utf8')),
  isTeardown: (frame) => frame[4] === 1 && /"op":"logout"/.test(frame.subarray(9).toString('utf8')),
};

/** p11-kit's RPC (NOTES.md): a version byte, then u32 message id | u32 options length | u32 body length | options | body. */
const P11_CALL = { finalize: 2, closeSession: 11, closeAllSessions: 12, login: 18, logout: 19 };
const p11Call = (frame: Buffer) => (frame.length >= 16 ? frame.readUInt32BE(12 + frame.readUInt32BE(4)) : -1);
export const p11Framing: Framing = {
  name: 'p11-rpc-socket',
  preamble: 1,
  frameLength(stream, offset) {
    if (stream.length - offset < 12) return undefined;
    return 12 + stream.readUInt32BE(offset + 4) + stream.readUInt32BE(offset + 8);
  },
  fixLengths(frame) {
    const out = Buffer.from(
      frame.length >= 12 ? frame : Buffer.concat([frame, Buffer.alloc(12 - frame.length)]),
    );
    const options = Math.min(out.readUInt32BE(4), out.length - 12);
    out.writeUInt32BE(options, 4);
    out.writeUInt32BE(out.length - 12 - options, 8);
    return out;
  },
  mutate(rng, frame) {
    // Mostly the call's arguments, behind an intact call id and signature string (a changed
    // signature is refused before any argument is read); otherwise bytes anywhere.
    const body = frame.length >= 20 ? 12 + frame.readUInt32BE(4) : frame.length;
    const args = body + 8 <= frame.length ? body + 8 + frame.readUInt32BE(body + 4) : frame.length;
    if (args < frame.length && rng.int(4) !== 0) {
      return Buffer.concat([frame.subarray(0, args), Buffer.from(mutateBytes(rng, frame.subarray(args)))]);
    }
    return Buffer.from(mutateBytes(rng, frame));
  },
  isLogin: (frame) => p11Call(frame) === P11_CALL.login,
  isTeardown: (frame) =>
    [P11_CALL.finalize, P11_CALL.closeSession, P11_CALL.closeAllSessions, P11_CALL.logout].includes(
      p11Call(frame),
    ),
};

const ANSWER_MS = 10_000;

/** A connection that counts the answers (whole frames) it receives. */
class Probe {
  readonly socket: Socket;
  private received = Buffer.alloc(0);
  private answers = 0;
  private preambleLeft: number;
  closed = false;
  private waiters: (() => void)[] = [];

  constructor(
    path: string,
    private readonly framing: Framing,
  ) {
    this.preambleLeft = framing.preamble;
    this.socket = connect(path);
    this.socket.on('data', (data: Buffer) => {
      this.received = Buffer.concat([this.received, data]);
      if (this.preambleLeft) {
        const skip = Math.min(this.preambleLeft, this.received.length);
        this.received = this.received.subarray(skip);
        this.preambleLeft -= skip;
      }
      for (;;) {
        const length = this.framing.frameLength(this.received, 0);
        if (length === undefined || length > this.received.length) break;
        this.received = this.received.subarray(length);
        this.answers += 1;
      }
      this.wake();
    });
    this.socket.on('error', () => {});
    this.socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
  }

  private wake() {
    for (const waiter of this.waiters.splice(0)) waiter();
  }

  /** Resolves once `count` answers came in, or the connection closed. */
  async until(count: number): Promise<void> {
    while (this.answers < count && !this.closed)
      await new Promise<void>((resolve) => this.waiters.push(resolve));
  }

  get answered(): number {
    return this.answers;
  }

  /** Sends `bytes` and waits for `frames` more answers (or the close). */
  async exchange(bytes: Buffer, frames: number, what: string): Promise<void> {
    const want = this.answers + frames;
    this.socket.write(bytes);
    await bounded(ANSWER_MS, what, () => this.until(want));
  }

  async closeWithin(what: string): Promise<void> {
    this.socket.end();
    await bounded(ANSWER_MS, what, () => this.until(Number.POSITIVE_INFINITY));
  }

  destroy() {
    this.socket.destroy();
  }
}

export interface SocketFuzzOptions {
  socketPath: string;
  framing: Framing;
  sessions: RecordedSession[];
  count: number;
  seed: number;
  /** Run between inputs every `checkEvery` (e.g. the partition still signs; a locked user unlocked). */
  check?: () => Promise<void>;
  checkEvery?: number;
}

/**
 * Runs the kept inputs of the framing's target, then `count` new ones. An input is one mutated
 * frame on a primed connection (nine in ten) or one whole mutated session. Returns failures.
 */
export async function fuzzSocket(options: SocketFuzzOptions): Promise<string[]> {
  const { framing, socketPath, sessions, count, seed } = options;
  const failures: string[] = [];
  const fail = (what: string, error: unknown, input: Buffer) => {
    failures.push(
      `${framing.name} ${what}: ${(error as Error).message} (input kept in ${keepFailure(framing.name, input)})`,
    );
  };
  const primed = sessions.map((session) => {
    const login = session.frames.findIndex((frame) => framing.isLogin(frame));
    const prelude = login >= 0 ? session.frames.slice(0, login + 1) : session.frames.slice(0, 1);
    const rest = session.frames.slice(prelude.length).filter((frame) => !framing.isTeardown(frame));
    return { session, prelude, rest };
  });
  const usable = primed.filter((p) => p.rest.length > 0);
  if (!usable.length) throw new Error(`${framing.name}: no recorded frames after a prelude`);

  // A whole stream, written at once then half-closed: the server must close within the limit.
  const wholeStream = async (bytes: Buffer, label: string) => {
    const probe = new Probe(socketPath, framing);
    try {
      probe.socket.write(bytes);
      await probe.closeWithin(`${framing.name} ${label}`);
    } catch (error) {
      fail(label, error, bytes);
    } finally {
      probe.destroy();
    }
  };
  for (const fixture of regressionInputs(framing.name))
    await wholeStream(Buffer.from(fixture.bytes), `fixture ${fixture.name}`);

  const rng = new Rng(seed);
  let connection: { probe: Probe; primed: (typeof usable)[number]; sent: number } | undefined;
  const prime = async (choice: (typeof usable)[number]) => {
    const probe = new Probe(socketPath, framing);
    const prelude = Buffer.concat([choice.session.preamble, ...choice.prelude]);
    await probe.exchange(prelude, choice.prelude.length, `${framing.name} priming`);
    if (probe.closed)
      throw new Error(`${framing.name}: the server closed a connection primed with recorded frames`);
    return { probe, primed: choice, sent: 0 };
  };
  let run = 0;
  let primes = 0;
  for (; run < count && failures.length < 10; run++) {
    if (options.check && run % (options.checkEvery ?? 500) === 0) await options.check();
    const label = `input ${run} (seed ${seed})`;
    if (rng.int(10) === 0) {
      const session = rng.pick(sessions);
      const stream = Buffer.concat([session.preamble, ...session.frames]);
      await wholeStream(Buffer.from(mutateBytes(rng, stream)), label);
      continue;
    }
    // A fresh primed connection now and then, so one connection's state does not decide everything.
    if (!connection || connection.probe.closed || connection.sent >= 50) {
      connection?.probe.destroy();
      connection = await prime(rng.pick(usable));
      primes += 1;
    }
    const original = rng.pick(connection.primed.rest);
    const mutated = framing.mutate(rng, original);
    const frame = rng.int(5) === 0 ? mutated : framing.fixLengths(mutated);
    // The whole replay kept on failure: the prelude, then the frame.
    const replay = Buffer.concat([connection.primed.session.preamble, ...connection.primed.prelude, frame]);
    connection.sent += 1;
    try {
      // A frame whose length fields were left wrong may leave the server waiting for the rest:
      // then the half-close must end the connection instead.
      if (frame === mutated && framing.frameLength(frame, 0) !== frame.length) {
        connection.probe.socket.write(frame);
        await connection.probe.closeWithin(`${framing.name} ${label}`);
      } else {
        await connection.probe.exchange(frame, 1, `${framing.name} ${label}`);
      }
    } catch (error) {
      fail(label, error, replay);
      connection.probe.destroy();
      connection = undefined;
    }
  }
  connection?.probe.destroy();
  // How often a mutated frame cost the connection (each new one replays a login, scrypt-hashed).
  console.log(`${framing.name}: ${run} inputs, ${primes} primed connections`);
  tally.set(framing.name, (tally.get(framing.name) ?? 0) + run);
  return failures;
}
