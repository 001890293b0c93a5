import { RemotePartition, type RemotePartitionOptions } from './client.ts';
import {
  type CreateKeyRequest,
  HsmError,
  isHsmError,
  type KeyInfo,
  type KeyManager,
  type KeyRef,
  type PartitionStatus,
  type SignRequest,
  type SignStreamRequest,
} from './types.ts';

/**
 * The CA's client of a partition cluster (issue #22, DESIGN.md "Cluster"): a connection to every
 * member, each signature sent to a healthy member with the fewest requests in flight, and the
 * requests of a member that fails retried on another. Two signatures over the same bytes are both
 * valid, so a retry is safe: at worst two members sign one TBS, and reconcile counts it once.
 *
 * A member is `up` (used), `down` (unreachable, not used until a health check reaches it), `sealed`
 * (its process answers but is sealed and this node has no unseal secret: waits for custodians) or
 * `missing-keys` (unsealed, but lacks a key this node needs, e.g. a clone made before that key).
 * With no member up, calls still try the others (each fails fast while its connection is down),
 * so a single-member partition behaves as a plain RemotePartition.
 */
export type MemberState = 'up' | 'down' | 'sealed' | 'missing-keys';

export interface ClusterMemberOptions extends Omit<RemotePartitionOptions, 'onConnect'> {
  /** How logs and metrics name the member: its socket path or tls://host:port by default. */
  name?: string;
}

export interface PartitionClusterOptions {
  /** The partition's name (in key URIs). */
  name: string;
  members: ClusterMemberOptions[];
  /** Runs on every new connection to any member: unseal if possible, log in. */
  onConnect?: (partition: RemotePartition) => Promise<void>;
  /** How often members that are not up are tried again. Default 1 s. */
  healthIntervalMs?: number;
  /** A member changed state (logged by the node). */
  onMemberState?: (event: MemberStateEvent) => void;
}

export interface MemberStateEvent {
  member: string;
  state: MemberState;
  previous: MemberState;
  reason?: string;
}

export interface MemberSnapshot {
  partition: string;
  member: string;
  state: MemberState;
  inFlight: number;
  /** Requests this member failed that were retried on another member. */
  failovers: number;
  signatures: number;
}

/** Failures that say "this member cannot serve now", as opposed to a refusal any member would give. */
const MEMBER_FAILURES = new Set(['CKR_DEVICE_REMOVED', 'CKR_TOKEN_SEALED', 'CKR_USER_NOT_LOGGED_IN']);
/** A refusal that another member may not give: it lacks the key (a clone older than the key). */
const TRY_ANOTHER = new Set(['CKR_KEY_HANDLE_INVALID']);

const unavailable = (message: string, cause?: unknown) =>
  new HsmError('CKR_DEVICE_REMOVED', message, cause === undefined ? undefined : { cause });

class Member {
  state: MemberState = 'down';
  inFlight = 0;
  failovers = 0;
  signatures = 0;
  checking: Promise<void> | undefined;
  constructor(
    readonly name: string,
    readonly client: RemotePartition,
  ) {}
}

export class PartitionCluster implements KeyManager {
  private readonly members: Member[];
  private readonly timer: NodeJS.Timeout;
  private needed: KeyRef[] = [];
  private closed = false;

  private constructor(private readonly options: PartitionClusterOptions) {
    if (options.members.length === 0) throw new Error(`partition ${options.name} has no members`);
    this.members = options.members.map((member) => {
      const { name, ...rest } = member;
      const client = RemotePartition.create({
        ...rest,
        ...(options.onConnect ? { onConnect: options.onConnect } : {}),
      });
      return new Member(name ?? client.endpoint, client);
    });
    // Each tick tries the members that are not up; every fifth also checks those that are, so an
    // idle member that went away (or was resealed) is noticed before a request finds out.
    let tick = 0;
    this.timer = setInterval(() => void this.checkAll(++tick % 5 === 0), options.healthIntervalMs ?? 1000);
    this.timer.unref();
  }

  /**
   * Connects to every member; resolves once one is up, and fails (with the first member's error)
   * when none is: the node does not start on a partition it cannot use.
   */
  static async connect(options: PartitionClusterOptions): Promise<PartitionCluster> {
    const cluster = new PartitionCluster(options);
    await cluster.checkAll();
    if (!cluster.members.some((m) => m.state === 'up')) {
      const failure = cluster.members.some((m) => m.state === 'sealed')
        ? new HsmError('CKR_TOKEN_SEALED', `partition ${options.name} is sealed`)
        : await cluster.members[0]!.client.status().then(
            () => unavailable(`no member of partition ${options.name} is usable`),
            (error: unknown) => error,
          );
      await cluster.close();
      throw failure;
    }
    return cluster;
  }

  get name(): string {
    return this.options.name;
  }

  /** Keys every member must hold to be used (the issuers' keys in this partition). */
  requireKeys(keys: KeyRef[]): void {
    this.needed = keys;
    for (const member of this.members) {
      if (member.state === 'up') void this.check(member, { force: true, keys: true });
    }
  }

  snapshot(): MemberSnapshot[] {
    return this.members.map((m) => ({
      partition: this.options.name,
      member: m.name,
      state: m.state,
      inFlight: m.inFlight,
      failovers: m.failovers,
      signatures: m.signatures,
    }));
  }

  /** Marks a member down at once (its supervisor saw the process die) rather than at its next failure. */
  memberDown(name: string, reason: string): void {
    const member = this.members.find((m) => m.name === name);
    if (member) this.setState(member, 'down', reason);
  }

  /** Tries every member that is not up (and, with `all`, those that are). */
  async checkAll(all = false): Promise<void> {
    await Promise.all(
      this.members.filter((m) => all || m.state !== 'up').map((m) => this.check(m, { force: all })),
    );
  }

  /**
   * Status of one member, and whether it holds the needed keys when it is about to be used (not
   * on every periodic check of a member in use: each lookup is a record in its audit log).
   */
  private check(member: Member, { force = false, keys = false } = {}): Promise<void> {
    if (this.closed || (member.state === 'up' && !force)) return Promise.resolve();
    member.checking ??= (async () => {
      try {
        const status = await member.client.status();
        if (status.state !== 'unsealed') {
          this.setState(member, status.state === 'sealed' ? 'sealed' : 'down', `partition ${status.state}`);
          return;
        }
        const lookKeys = keys || member.state !== 'up';
        for (const key of lookKeys ? this.needed : []) {
          if (!(await member.client.findKey(key))) {
            this.setState(member, 'missing-keys', `lacks key ${key.uri ?? key.label ?? key.id}`);
            return;
          }
        }
        this.setState(member, 'up');
      } catch (error) {
        const rv = isHsmError(error) ? error.rv : undefined;
        this.setState(member, rv === 'CKR_TOKEN_SEALED' ? 'sealed' : 'down', (error as Error).message);
      }
    })().finally(() => {
      member.checking = undefined;
    });
    return member.checking;
  }

  private setState(member: Member, state: MemberState, reason?: string): void {
    if (member.state === state) return;
    const previous = member.state;
    member.state = state;
    this.options.onMemberState?.({ member: member.name, state, previous, ...(reason ? { reason } : {}) });
  }

  /** Up members by fewest in flight, then the others (a call that finds none up still tries them). */
  private candidates(tried: Set<Member>): Member[] {
    const rank = (m: Member) => (m.state === 'up' ? 0 : m.state === 'down' ? 1 : 2);
    return this.members
      .filter((m) => !tried.has(m) && m.state !== 'missing-keys')
      .sort((a, b) => rank(a) - rank(b) || a.inFlight - b.inFlight);
  }

  /**
   * Runs `call` on the best member; when that member fails (or lacks the key), on the next one.
   * `replayable` false (a streamed signature whose chunks cannot be read twice) tries one member.
   */
  private async route<T>(
    call: (client: RemotePartition) => Promise<T>,
    { replayable = true, signature = false }: { replayable?: boolean; signature?: boolean } = {},
  ): Promise<T> {
    if (this.closed) throw unavailable('this client is closed');
    const tried = new Set<Member>();
    let lastError: unknown;
    for (;;) {
      const member = this.candidates(tried)[0];
      if (!member) throw lastError ?? unavailable(`no member of partition ${this.options.name} is usable`);
      tried.add(member);
      member.inFlight += 1;
      try {
        const result = await call(member.client);
        if (signature) member.signatures += 1;
        if (member.state !== 'up') void this.check(member);
        return result;
      } catch (error) {
        const rv = isHsmError(error) ? error.rv : undefined;
        if (rv === undefined || !(MEMBER_FAILURES.has(rv) || TRY_ANOTHER.has(rv))) throw error;
        lastError = error;
        if (MEMBER_FAILURES.has(rv)) {
          this.setState(member, rv === 'CKR_TOKEN_SEALED' ? 'sealed' : 'down', (error as Error).message);
        }
        if (!replayable || this.candidates(tried).length === 0) throw error;
        member.failovers += 1;
      } finally {
        member.inFlight -= 1;
      }
    }
  }

  async status(): Promise<PartitionStatus> {
    const up = this.members.find((m) => m.state === 'up');
    if (up) return this.route((c) => c.status());
    await this.checkAll();
    const now = this.members.find((m) => m.state === 'up');
    if (now) return now.client.status();
    const sealed = this.members.find((m) => m.state === 'sealed');
    if (sealed) return { name: this.options.name, state: 'sealed', backend: 'emulated', protocolVersion: 1 };
    return this.members[0]!.client.status();
  }

  /** Readiness in one word or phrase: 'unsealed' when a member is up, else why not. */
  async readiness(): Promise<{ state: string }> {
    if (this.members.some((m) => m.state === 'up')) return { state: 'unsealed' };
    await this.checkAll();
    if (this.members.some((m) => m.state === 'up')) return { state: 'unsealed' };
    if (this.members.some((m) => m.state === 'sealed'))
      return { state: 'sealed, waiting for custodians (signet hsm unseal)' };
    if (this.members.some((m) => m.state === 'missing-keys'))
      return { state: 'members lack the issuers keys' };
    return { state: 'unreachable' };
  }

  async sign(request: SignRequest): Promise<Uint8Array> {
    return this.route((c) => c.sign(request), { signature: true });
  }

  async signStream(request: SignStreamRequest): Promise<Uint8Array> {
    return this.route((c) => c.signStream(request), {
      replayable: Array.isArray(request.chunks),
      signature: true,
    });
  }

  async findKey(request: KeyRef): Promise<KeyInfo | undefined> {
    return this.route((c) => c.findKey(request));
  }

  async listKeys(): Promise<KeyInfo[]> {
    return this.route((c) => c.listKeys());
  }

  async getPublicKey(request: KeyRef): Promise<Uint8Array> {
    return this.route((c) => c.getPublicKey(request));
  }

  /**
   * Creates the key on one member, which answers once its cluster's quorum holds it (issue #23,
   * replication/); members outside a cluster get it by `signet hsm sync` (DESIGN.md "Cluster").
   */
  async createKey(request: CreateKeyRequest): Promise<KeyInfo> {
    return this.route((c) => c.createKey(request), { replayable: false });
  }

  async destroyKey(request: KeyRef): Promise<void> {
    return this.route((c) => c.destroyKey(request), { replayable: false });
  }

  async exportKey(request: KeyRef): Promise<Uint8Array> {
    return this.route((c) => c.exportKey(request));
  }

  async generateRandom(request: { length: number }): Promise<Uint8Array> {
    return this.route((c) => c.generateRandom(request));
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.timer);
    await Promise.all(this.members.map((m) => m.client.close()));
  }
}
