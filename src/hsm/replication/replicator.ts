import { RemotePartition } from '../client.ts';
import type { SealedFileStore } from '../custody/file-store.ts';
import type { PartitionFolder } from '../custody/vault.ts';
import { parseLinkUrl } from '../link.ts';
import { checkCertificate } from '../p11/certificates.ts';
import type { EmulatedPartition, ReplicationHooks } from '../partition.ts';
import type { UserRecord } from '../store.ts';
import { HsmError, isHsmError } from '../types.ts';
import { certificateFingerprint, type Member, readMembership, type SignedMembership } from './membership.ts';
import { isUser, majority, mergeUser, planKeys, type VersionStamp } from './versions.ts';
import { openUsers, type PeerState } from './wire.ts';

/**
 * One member's side of the cluster (issue #23): it pulls from its peers what it lacks, over the
 * members' mutual-TLS links, on every change a peer reports and every `intervalMs`, and it tells
 * its peers of its own changes. The CA's client plays no part. Only an unsealed member replicates:
 * everything it receives opens only under the master key.
 */
export interface ReplicatorOptions {
  partition: EmulatedPartition;
  folder: PartitionFolder;
  /** This member on the links: the URL peers reach it at, its certificate and key (PEM), the link CA. */
  self: { url: string; cert: Buffer; key: Buffer; ca: Buffer };
  /** Members that must hold a new key before its creation is acknowledged. Default: a majority. */
  quorum?: number;
  /** How often it compares with every peer. Default 5 s. */
  intervalMs?: number;
  log?: (line: string) => void;
}

interface Peer {
  member: Member;
  fingerprint: string;
  client: RemotePartition;
}

const REQUEST_TIMEOUT_MS = 10_000;

export class Replicator implements ReplicationHooks {
  readonly fingerprint: string;
  private readonly peers = new Map<string, Peer>();
  private readonly fingerprints = new Map<string, string>();
  /** Pulls run one at a time: what one applies, the next one sees. */
  private chain: Promise<unknown> = Promise.resolve();
  /** Peers with a periodic pull waiting in the chain (a slow peer does not pile them up). */
  private readonly queued = new Set<string>();
  /** The last refusal logged per member. */
  private readonly refusals = new Map<string, string>();
  private readonly timer: NodeJS.Timeout;
  private closed = false;

  constructor(readonly options: ReplicatorOptions) {
    if (options.partition.options.tokenKeys)
      throw new Error('a partition whose keys live on a PKCS#11 token does not replicate');
    this.fingerprint = certificateFingerprint(options.self.cert);
    options.partition.replication = this;
    this.timer = setInterval(() => this.tick(), options.intervalMs ?? 5000);
    this.timer.unref();
  }

  get partitionId(): string {
    return this.options.folder.partitionId;
  }

  /** The store once unsealed; the cluster key and everything replicated need it. */
  requireStore(): SealedFileStore {
    const store = this.options.folder.store;
    if (!store) throw new HsmError('CKR_TOKEN_SEALED', 'partition is sealed');
    return store;
  }

  /** The last membership read, by the stored value it was read from (its signature is checked once). */
  private read: { raw: unknown; signed: SignedMembership | undefined } | undefined;

  /** The membership this member holds, if any (and it checks). */
  membership(): SignedMembership | undefined {
    const store = this.options.folder.store;
    if (!store) return undefined;
    const raw = store.membership;
    const known = this.read;
    if (known && known.raw === raw) return known.signed;
    const signed = readMembership(store.keys.cluster, this.partitionId, raw);
    this.read = { raw, signed };
    return signed;
  }

  fingerprintOf(member: Member): string {
    let fingerprint = this.fingerprints.get(member.cert);
    if (!fingerprint) {
      fingerprint = certificateFingerprint(member.cert);
      this.fingerprints.set(member.cert, fingerprint);
    }
    return fingerprint;
  }

  /** This member's entry in the membership, if it is in one. */
  self(membership = this.membership()): Member | undefined {
    return membership?.membership.members.find((m) => this.fingerprintOf(m) === this.fingerprint);
  }

  /** The member a link session came from (its client certificate), if it is a member. */
  memberByFingerprint(fingerprint: string | undefined): Member | undefined {
    if (!fingerprint) return undefined;
    return this.membership()?.membership.members.find((m) => this.fingerprintOf(m) === fingerprint);
  }

  memberId(): string {
    return this.self()?.id ?? '';
  }

  /** The other members, each with a client over the link pinned to its certificate. */
  private others(): Peer[] {
    const membership = this.membership();
    const self = this.self(membership);
    if (!membership || !self) return [];
    return membership.membership.members.filter((m) => m !== self).map((m) => this.peer(m));
  }

  private peer(member: Member): Peer {
    const fingerprint = this.fingerprintOf(member);
    const known = this.peers.get(member.id);
    if (known && known.fingerprint === fingerprint && known.member.url === member.url) return known;
    void known?.client.close();
    const peer = { member, fingerprint, client: this.linkClient(member.url, fingerprint) };
    this.peers.set(member.id, peer);
    return peer;
  }

  /** A client over the link to `url`, accepting only the certificate `fingerprint`. */
  linkClient(url: string, fingerprint: string): RemotePartition {
    const { host, port } = parseLinkUrl(url);
    const { cert, key, ca } = this.options.self;
    return RemotePartition.create({
      tls: { host, port, cert, key, ca, fingerprint },
      connectTimeoutMs: 3000,
      requestTimeoutMs: REQUEST_TIMEOUT_MS,
    });
  }

  // --- what the partition tells the cluster --------------------------------------------------

  async keyCreated(id: string): Promise<void> {
    const others = this.others();
    if (others.length === 0) return;
    const members = others.length + 1;
    const quorum = Math.min(this.options.quorum ?? majority(members), members);
    const needed = quorum - 1;
    let acks = 0;
    let settled = 0;
    await new Promise<void>((resolve, reject) => {
      if (needed <= 0) resolve();
      for (const peer of others) {
        this.notify(peer, id)
          .then(
            (answer) => {
              // Counted only when the peer says it now holds the key (a label clash keeps it out).
              if ((answer as { holds?: unknown } | null)?.holds !== true) return;
              acks += 1;
              if (acks === needed) resolve();
            },
            () => {},
          )
          .finally(() => {
            settled += 1;
            if (settled === others.length && acks < needed) {
              reject(
                new HsmError(
                  'CKR_DEVICE_ERROR',
                  `key ${id} is stored on this member, but only ${acks + 1} of the ${quorum} members the quorum needs hold it; the others get it when they return`,
                ),
              );
            }
          });
      }
    });
  }

  async changed(): Promise<void> {
    await Promise.allSettled(this.others().map((peer) => this.notify(peer)));
  }

  /** Asks a peer to pull from this member now; resolves once it has (saying whether it holds `key`). */
  private notify(peer: Peer, key?: string): Promise<unknown> {
    return peer.client.call('peer.notify', key ? { key } : undefined, { timeoutMs: REQUEST_TIMEOUT_MS });
  }

  // --- pulling -------------------------------------------------------------------------------

  private tick(): void {
    if (this.closed || this.options.partition.state !== 'unsealed') return;
    for (const peer of this.others()) {
      if (this.queued.has(peer.member.id)) continue;
      this.queued.add(peer.member.id);
      void this.pull(peer.member.id)
        .catch(() => {})
        .finally(() => this.queued.delete(peer.member.id));
    }
  }

  /** Pulls from one member what this one lacks (after the pulls already waiting). */
  pull(memberId: string): Promise<void> {
    const run = this.chain.then(() => this.pullOnce(memberId));
    this.chain = run.catch(() => {});
    return run;
  }

  private async pullOnce(memberId: string): Promise<void> {
    if (this.closed) return;
    const peer = this.others().find((p) => p.member.id === memberId);
    if (!peer) return;
    let state: PeerState;
    try {
      state = await peer.client.call<PeerState>('peer.state', undefined, { timeoutMs: REQUEST_TIMEOUT_MS });
      this.refusals.delete(memberId);
    } catch (error) {
      const message = (error as Error).message;
      // Logged once per reason, not every round: a removed member keeps asking, and keeps being refused.
      const quiet = isHsmError(error, 'CKR_DEVICE_REMOVED') || isHsmError(error, 'CKR_TOKEN_SEALED');
      if (!quiet && this.refusals.get(memberId) !== message) {
        this.refusals.set(memberId, message);
        this.log(`member ${memberId} refused to share its state: ${message}`);
      }
      throw error;
    }
    const store = this.requireStore();
    const theirs = readMembership(store.keys.cluster, this.partitionId, state.membership);
    if (theirs && theirs.membership.version > (this.membership()?.membership.version ?? 0)) {
      await this.adopt(theirs, `from member ${memberId}`);
    }
    await this.mergeUsers(store, state, memberId);
    await this.mergeKeys(store, peer, state);
    await this.mergeCertificates(store, state, memberId);
  }

  /** Certificates of keys this member holds, where it has none or an older one. */
  private async mergeCertificates(store: SealedFileStore, state: PeerState, from: string): Promise<void> {
    const mine = new Map((await store.listCertificates()).map((c) => [c.keyId, c.storedAt]));
    const held = new Set(store.keyIds());
    for (const [keyId, c] of Object.entries(state.certificates ?? {})) {
      const have = mine.get(keyId);
      if (!held.has(keyId) || (have !== undefined && have >= c.storedAt)) continue;
      if (typeof c.label !== 'string' || typeof c.der !== 'string' || typeof c.storedAt !== 'string')
        continue;
      const key = await store.getKey(keyId);
      key?.privateKey.fill(0);
      let der: Buffer;
      try {
        der = checkCertificate(Buffer.from(c.der, 'base64'), key!.publicKey);
      } catch (error) {
        this.log(`certificate of key ${keyId} from member ${from} not taken: ${(error as Error).message}`);
        continue;
      }
      await store.putCertificate({ keyId, label: c.label, der, storedAt: c.storedAt });
      await this.audit({ op: 'replicateCertificate', keyId, detail: `from member ${from}` });
    }
  }

  private async mergeUsers(store: SealedFileStore, state: PeerState, from: string): Promise<void> {
    const { partition } = this.options;
    const limit = partition.options.maxFailedLogins ?? 5;
    const snapshot = openUsers(store.keys.objects, this.partitionId, state.users);
    const incoming: [string, UserRecord | VersionStamp][] = [
      ...snapshot.users.map((u): [string, UserRecord] => [u.name, u]),
      ...Object.entries(snapshot.deleted),
    ];
    for (const [name, remote] of incoming) {
      // In the user's login queue, so a login here does not write over what this merge brings.
      await partition.serialLogin(name, async () => {
        const local = (await store.getUser(name)) ?? (await store.userTombstone(name));
        const merged = mergeUser(local, remote, limit);
        if (merged === undefined) return;
        if (isUser(merged)) await store.putUser(merged);
        else await store.deleteUser(name, merged);
        await this.audit({ op: 'replicateUser', subject: name, detail: `from member ${from}` });
      });
    }
  }

  private async mergeKeys(store: SealedFileStore, peer: Peer, state: PeerState): Promise<void> {
    const { partition } = this.options;
    const local = {
      keys: (await store.listKeys()).map((k) => k.id),
      tombstones: Object.keys(store.tombstones()),
    };
    const plan = planKeys(local, { keys: state.keys, tombstones: Object.keys(state.tombstones ?? {}) });
    const from = `from member ${peer.member.id}`;
    for (const id of plan.destroy) {
      const key = await store.getKey(id);
      await store.deleteKey(id, state.tombstones[id]?.destroyedAt);
      partition.forgetKey(id);
      key?.privateKey.fill(0);
      await this.audit({ op: 'replicateDestroy', keyId: id, keyLabel: key?.label ?? '', detail: from });
    }
    for (const id of plan.bury) {
      const tombstone = state.tombstones[id];
      if (tombstone && !plan.destroy.includes(id))
        await store.buryKey(id, {
          label: String(tombstone.label),
          destroyedAt: String(tombstone.destroyedAt),
        });
    }
    if (plan.fetch.length === 0) return;
    const { files } = await peer.client.call<{ files: Record<string, string> }>(
      'peer.keys',
      { ids: plan.fetch.slice(0, 256) },
      { timeoutMs: REQUEST_TIMEOUT_MS },
    );
    for (const [id, file] of Object.entries(files)) {
      if (!plan.fetch.includes(id)) continue;
      try {
        const [key] = await store.importSealedKeys([{ id, bytes: Buffer.from(file, 'base64') }]);
        partition.adoptKey(key!);
        key!.privateKey.fill(0);
        await this.audit({ op: 'replicateKey', keyId: id, keyLabel: key!.label, detail: from });
      } catch (error) {
        // Two members created keys of one label at once: both stay where they are, and status shows it.
        this.log(`key ${id} ${from} not taken: ${(error as Error).message}`);
        await this.audit({
          op: 'replicateKey',
          keyId: id,
          detail: from,
          result: isHsmError(error) ? error.code : 'hsm.device_error',
        });
      }
    }
  }

  private audit(event: {
    op: string;
    keyId?: string;
    keyLabel?: string;
    subject?: string;
    detail: string;
    result?: string;
  }) {
    const { partition } = this.options;
    return partition.audit({ time: partition.isoNow(), result: 'ok', ...event });
  }

  /** Stores a newer membership this member was given (by a peer, or signed here for the officer). */
  async adopt(signed: SignedMembership, from: string): Promise<void> {
    const store = this.requireStore();
    const current = this.membership();
    if (current && signed.membership.version <= current.membership.version) return;
    await store.setMembership(signed);
    const ids = new Set(signed.membership.members.map((m) => m.id));
    for (const [id, peer] of this.peers) {
      if (!ids.has(id)) {
        this.peers.delete(id);
        void peer.client.close();
      }
    }
    const self = this.self(signed);
    this.log(
      `membership version ${signed.membership.version} (${from}): ${signed.membership.members.map((m) => m.id).join(', ')}${self ? '' : '; this member is not in it and stops replicating'}`,
    );
    await this.audit({ op: 'clusterMembership', detail: `version ${signed.membership.version} ${from}` });
  }

  log(line: string): void {
    this.options.log?.(`cluster: ${line}`);
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.timer);
    // A pull in flight is not waited for: what it would still apply, the next start pulls again.
    await Promise.all([...this.peers.values()].map((peer) => peer.client.close()));
    this.peers.clear();
  }
}
