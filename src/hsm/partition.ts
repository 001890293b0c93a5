import {
  createPrivateKey,
  createPublicKey,
  type KeyObject,
  randomBytes,
  type SignKeyObjectInput,
} from 'node:crypto';
import { checkKeyRef, formatKeyUri, KEY_LABEL, PARTITION_NAME, parseKeyUri } from './key-uri.ts';
import { KEY_ALGORITHM_SPECS } from './mechanisms.ts';
import { copyInfo, generate } from './partition-requests.ts';
import { isPkcs11Uri } from './pkcs11/uri.ts';
import { PROTOCOL_VERSION } from './protocol.ts';
import { PartitionSession } from './session.ts';
import type {
  AuditEvent,
  AuditSink,
  PartitionStore,
  PartitionVault,
  PinHasher,
  PinVerifier,
  StoredKeyObject,
  UserRecord,
} from './store.ts';
import type { TokenKeys } from './token-keys.ts';
import {
  type Clock,
  type CreateKeyRequest,
  HsmError,
  type KeyInfo,
  type KeyRef,
  type PartitionState,
  type PartitionStatus,
  type Role,
  SIGN_PURPOSES,
  type UnsealRequest,
} from './types.ts';

export { PartitionSession };

/**
 * The emulated partition's logic: key objects, sessions, roles, signing and the audit trail.
 * It is transport-free; server.ts puts one session per socket connection in front of it, and
 * tests may use a session in-process as a KeyManager. Custody (sealing, the file store, PIN
 * hashing, the audit chain) arrives through the seams in store.ts.
 *
 * Private keys live here as node:crypto KeyObjects, created once per key when the partition
 * unseals (NOTES.md: creating a key from its encoding per signature is 16x slower).
 */

export interface EmulatedPartitionOptions {
  /** Partition name, as in key URIs (`hsm:partition=NAME;...`). */
  name: string;
  vault: PartitionVault;
  audit: AuditSink;
  verifyPin: PinVerifier;
  /** Needed for createUser / setUserPin; without it they answer CKR_FUNCTION_NOT_SUPPORTED. */
  hashPin?: PinHasher;
  clock?: Clock;
  /** Consecutive failed logins that lock a user (the lock is stored, so it survives restarts). Default 5. */
  maxFailedLogins?: number;
  /** Shortest PIN createUser / setUserPin accept. Default 8. */
  minPinLength?: number;
  /** Most octets a multi-part Ed25519 signature gathers before signing. Default 64 MiB. */
  maxStreamBytes?: number;
  /** Multi-part operations one session may have open at once. Default 4. */
  maxOpenStreams?: number;
  /** Operational log for failures the caller only sees as CKR_DEVICE_ERROR; never given secrets. */
  log?: (line: string) => void;
  /**
   * Keys on a PKCS#11 token instead of in the sealed store (issue #25). The store then keeps, per
   * key, only its attributes (purposes, creation time; an empty private key marks it) and the
   * token is the authority on which keys exist. The partition closes it when it closes.
   */
  tokenKeys?: TokenKeys;
}

/**
 * What the partition tells the cluster it belongs to (issue #23, replication/replicator.ts). Absent
 * on a partition alone.
 */
export interface ReplicationHooks {
  /** This member's id in the cluster, which stamps the user versions it writes ('' when alone). */
  memberId(): string;
  /** A key was created here: resolves once the cluster's quorum holds it, else rejects. */
  keyCreated(id: string): Promise<void>;
  /** A key was destroyed or a user changed here: resolves once the reachable members have it. */
  changed(): Promise<void>;
}

/** Who may call an operation: anyone (even before login), any logged-in user, or one role. */
export type Access = 'public' | 'any' | Role;

export interface LoadedKey {
  readonly info: KeyInfo;
  /** Undefined for a key on the token (`onToken`). */
  readonly privateKey: KeyObject | undefined;
  readonly onToken?: boolean;
  /** Signing inputs per mechanism and salt length, built once. */
  readonly inputs: Map<string, SignKeyObjectInput>;
}

export class EmulatedPartition {
  readonly name: string;
  readonly clock: Clock;
  private store: PartitionStore | undefined;
  private unsealing: Promise<unknown> | undefined;
  private readonly keysById = new Map<string, LoadedKey>();
  private readonly keysByLabel = new Map<string, LoadedKey>();
  /** Labels whose keys are being generated, so two concurrent creates cannot both win. */
  private readonly pendingLabels = new Set<string>();
  private readonly uriCache = new Map<string, { label?: string; id?: string }>();
  private readonly sessions = new Set<PartitionSession>();
  private readonly loginQueues = new Map<string, Promise<unknown>>();
  private dummyUser: Promise<UserRecord | undefined> | undefined;
  private nextSessionId = 1;
  private closed = false;
  /** Set by the cluster this partition is a member of (issue #23). */
  replication: ReplicationHooks | undefined;

  private constructor(readonly options: EmulatedPartitionOptions) {
    if (!PARTITION_NAME.test(options.name))
      throw new Error(`partition name '${options.name}' is not [a-z0-9-]{1,32}`);
    this.name = options.name;
    this.clock = options.clock ?? { now: () => new Date() };
  }

  /** Opens the partition; a vault that reports 'unsealed' (the in-memory one) is opened right away. */
  static async open(options: EmulatedPartitionOptions): Promise<EmulatedPartition> {
    const partition = new EmulatedPartition(options);
    if (options.vault.status().state === 'unsealed') {
      if (!options.vault.openUnsealed)
        throw new Error('the vault reports unsealed but cannot open its store');
      await partition.load(await options.vault.openUnsealed());
    }
    return partition;
  }

  get state(): PartitionState {
    return this.store ? 'unsealed' : this.options.vault.status().state;
  }

  /** A session: one per client connection, holding its login and its multi-part operations. */
  openSession(): PartitionSession {
    if (this.closed) throw new HsmError('CKR_DEVICE_REMOVED', 'partition is closed');
    const session = new PartitionSession(this, this.nextSessionId++);
    this.sessions.add(session);
    return session;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.allSettled([...this.sessions].map((s) => s.close()));
    await this.store?.close();
    await this.options.tokenKeys?.close();
    await this.options.audit.close();
  }

  // --- the parts sessions use --------------------------------------------------------------

  /** @internal */
  forget(session: PartitionSession): void {
    this.sessions.delete(session);
  }

  /** @internal Appends an audit record; a failing audit log fails the operation (nothing unaudited is released). */
  audit(event: AuditEvent): Promise<void> {
    try {
      return this.options.audit.append(event).then(undefined, this.auditFailed);
    } catch (error) {
      return Promise.reject(this.auditFailed(error));
    }
  }

  private readonly auditFailed = (error: unknown): never => {
    this.log(`audit append failed: ${(error as Error)?.message ?? String(error)}`);
    throw new HsmError('CKR_DEVICE_ERROR', 'the audit log cannot record this operation', { cause: error });
  };

  private lastMs = Number.NaN;
  private lastIso = '';

  /** @internal The clock's time as RFC 3339, formatted once per millisecond (thousands of signatures share one). */
  isoNow(): string {
    const now = this.clock.now();
    const ms = now.getTime();
    if (ms !== this.lastMs) {
      this.lastMs = ms;
      this.lastIso = now.toISOString();
    }
    return this.lastIso;
  }

  /** @internal */
  log(line: string): void {
    this.options.log?.(line);
  }

  /** The store of the unsealed partition; throws CKR_TOKEN_SEALED (or why not) otherwise. Extension operations use it. */
  requireStore(): PartitionStore {
    if (this.store) return this.store;
    if (this.closed) throw new HsmError('CKR_DEVICE_REMOVED', 'partition is closed');
    const state = this.options.vault.status().state;
    if (state === 'uninitialized')
      throw new HsmError('CKR_TOKEN_NOT_PRESENT', 'partition is not initialised');
    throw new HsmError('CKR_TOKEN_SEALED', 'partition is sealed: only status and unseal are answered');
  }

  /** @internal */
  status(user: { name: string; role: Role } | undefined): PartitionStatus {
    const vault = this.options.vault.status();
    const token = this.options.tokenKeys?.token;
    return {
      name: this.name,
      state: this.state,
      backend: token ? 'pkcs11' : 'emulated',
      ...(token ? { token: { ...token } } : {}),
      protocolVersion: PROTOCOL_VERSION,
      ...(vault.sealing ? { sealing: vault.sealing } : {}),
      ...(user && this.store ? { keyCount: this.keysById.size, user: { ...user } } : {}),
    };
  }

  /** @internal */
  async unseal(material: UnsealRequest): Promise<void> {
    // One unseal at a time; the loser of a race finds the partition unsealed.
    while (this.unsealing) await this.unsealing.catch(() => {});
    if (this.store) throw new HsmError('CKR_OPERATION_NOT_PERMITTED', 'partition is already unsealed');
    const attempt = (async () => {
      const store = await this.options.vault.unseal(material);
      await this.load(store);
    })();
    this.unsealing = attempt;
    try {
      await attempt;
    } finally {
      this.unsealing = undefined;
    }
  }

  private async load(store: PartitionStore): Promise<void> {
    const stored = await store.listKeys();
    const tokenKeys = this.options.tokenKeys;
    const loaded = stored
      .filter((key) => !tokenKeys || key.privateKey.length > 0)
      .map((key) => this.toLoaded(key));
    if (tokenKeys) loaded.push(...(await this.loadTokenKeys(tokenKeys, stored)));
    for (const key of loaded) this.index(key);
    this.store = store;
  }

  /**
   * The token's key pairs that this partition created, with the purposes and creation time its
   * store recorded. Other keys on the token (another partition's on a shared token, or made with
   * the token's own tools) are not this partition's: they are neither listed nor usable. A
   * recorded key missing from the token is logged and left out.
   */
  private async loadTokenKeys(tokenKeys: TokenKeys, stored: StoredKeyObject[]): Promise<LoadedKey[]> {
    const records = new Map(stored.filter((key) => key.privateKey.length === 0).map((key) => [key.id, key]));
    const loaded: LoadedKey[] = [];
    const labels = new Set<string>();
    let foreign = 0;
    for (const entry of await tokenKeys.list()) {
      if (!records.has(entry.id)) {
        foreign++;
        continue;
      }
      if (!KEY_LABEL.test(entry.label) || labels.has(entry.label)) {
        this.log(`token key ${entry.id} has a label Signet cannot address uniquely; it is ignored`);
        continue;
      }
      labels.add(entry.label);
      const record = records.get(entry.id);
      records.delete(entry.id);
      loaded.push(this.tokenLoaded(entry, record));
    }
    for (const record of records.values())
      this.log(`key ${record.label} (${record.id}) is recorded but not on the token; it is left out`);
    if (foreign > 0) this.log(`the token holds ${foreign} other key pair(s), not this partition's`);
    return loaded;
  }

  private tokenLoaded(
    entry: Awaited<ReturnType<TokenKeys['list']>>[number],
    record: StoredKeyObject | undefined,
  ): LoadedKey {
    const info: KeyInfo = {
      id: entry.id,
      label: entry.label,
      algorithm: entry.algorithm,
      usages: record ? [...record.usages] : [...entry.usages],
      purposes: record ? [...record.purposes] : [...SIGN_PURPOSES],
      extractable: entry.extractable,
      createdAt: record?.createdAt ?? new Date(0).toISOString(),
      uri: this.options.tokenKeys!.uriFor(entry.label),
      publicKey: Uint8Array.from(entry.publicKey),
    };
    return { info, privateKey: undefined, onToken: true, inputs: new Map() };
  }

  /** Turns a stored object into KeyObjects, refusing one whose halves do not belong together. */
  private toLoaded(key: StoredKeyObject, privateKey?: KeyObject): LoadedKey {
    let priv: KeyObject;
    try {
      priv =
        privateKey ?? createPrivateKey({ key: Buffer.from(key.privateKey), format: 'der', type: 'pkcs8' });
      const spki = createPublicKey(priv).export({ format: 'der', type: 'spki' });
      if (!spki.equals(Buffer.from(key.publicKey))) throw new Error('public key does not match private key');
    } catch (error) {
      throw new HsmError('CKR_INTEGRITY_FAILED', `key object ${key.id} is damaged`, { cause: error });
    }
    const info: KeyInfo = {
      id: key.id,
      label: key.label,
      algorithm: key.algorithm,
      usages: [...key.usages],
      purposes: [...key.purposes],
      extractable: key.extractable,
      createdAt: key.createdAt,
      uri: this.options.tokenKeys?.uriFor(key.label) ?? formatKeyUri(this.name, key.label),
      publicKey: Uint8Array.from(key.publicKey),
    };
    return { info, privateKey: priv, inputs: new Map() };
  }

  private index(key: LoadedKey): void {
    this.keysById.set(key.info.id, key);
    this.keysByLabel.set(key.info.label, key);
  }

  /** @internal Finds a key object, or undefined. Throws CKR_ARGUMENTS_BAD for a malformed reference. */
  lookup(ref: KeyRef): LoadedKey | undefined {
    this.requireStore();
    // The hot paths: a label or id found in the map is well formed; anything else is checked below.
    if (ref.uri === undefined) {
      const key =
        ref.id === undefined
          ? ref.label !== undefined && this.keysByLabel.get(ref.label)
          : ref.label === undefined && this.keysById.get(ref.id);
      if (key) return key;
    }
    checkKeyRef(ref);
    if (ref.label !== undefined) return this.keysByLabel.get(ref.label);
    if (ref.id !== undefined) return this.keysById.get(ref.id);
    let parsed = this.uriCache.get(ref.uri!);
    if (!parsed && isPkcs11Uri(ref.uri)) {
      if (!this.options.tokenKeys)
        throw new HsmError('CKR_ARGUMENTS_BAD', `partition '${this.name}' keeps no keys on a PKCS#11 token`);
      parsed = this.options.tokenKeys.parseUri(ref.uri);
      if (this.uriCache.size > 1024) this.uriCache.clear();
      this.uriCache.set(ref.uri!, parsed);
    }
    if (!parsed) {
      const uri = parseKeyUri(ref.uri!);
      if (uri.partition !== this.name) {
        throw new HsmError(
          'CKR_ARGUMENTS_BAD',
          `key URI names partition '${uri.partition}', this is '${this.name}'`,
        );
      }
      parsed = { ...(uri.label ? { label: uri.label } : {}), ...(uri.id ? { id: uri.id } : {}) };
      if (this.uriCache.size > 1024) this.uriCache.clear();
      this.uriCache.set(ref.uri!, parsed);
    }
    const byLabel = parsed.label !== undefined ? this.keysByLabel.get(parsed.label) : undefined;
    const byId = parsed.id !== undefined ? this.keysById.get(parsed.id) : undefined;
    if (parsed.label !== undefined && parsed.id !== undefined) return byLabel === byId ? byLabel : undefined;
    return byLabel ?? byId;
  }

  /** @internal */
  require(ref: KeyRef): LoadedKey {
    const key = this.lookup(ref);
    if (!key) throw new HsmError('CKR_KEY_HANDLE_INVALID', 'no such key');
    return key;
  }

  /** @internal */
  isCurrent(key: LoadedKey): boolean {
    return this.keysById.get(key.info.id) === key;
  }

  /** @internal */
  listKeys(): KeyInfo[] {
    this.requireStore();
    return [...this.keysById.values()]
      .map((k) => copyInfo(k.info))
      .sort((a, b) => a.label.localeCompare(b.label));
  }

  /** @internal */
  keyCount(): number {
    return this.keysById.size;
  }

  /** @internal */
  async createKey(request: CreateKeyRequest): Promise<LoadedKey> {
    const store = this.requireStore();
    const { label, algorithm } = request;
    const usages = request.usages ?? ['sign', 'verify'];
    const purposes = request.purposes ?? [...SIGN_PURPOSES];
    if (this.keysByLabel.has(label) || this.pendingLabels.has(label)) {
      throw new HsmError('CKR_OBJECT_EXISTS', `a key labelled '${label}' exists`);
    }
    this.pendingLabels.add(label);
    try {
      if (this.options.tokenKeys) return await this.createTokenKey(store, this.options.tokenKeys, request);
      const { privateKey } = await generate(KEY_ALGORITHM_SPECS[algorithm]);
      const stored: StoredKeyObject = {
        id: randomBytes(16).toString('hex'),
        label,
        algorithm,
        usages: [...new Set(usages)],
        purposes: [...new Set(purposes)],
        extractable: false,
        createdAt: this.clock.now().toISOString(),
        publicKey: createPublicKey(privateKey).export({ format: 'der', type: 'spki' }),
        privateKey: privateKey.export({ format: 'der', type: 'pkcs8' }),
      };
      const loaded = this.toLoaded(stored, privateKey);
      await store.putKey(stored);
      this.index(loaded);
      // Acknowledged only once the cluster's quorum holds it; the key stays here either way.
      await this.replication?.keyCreated(stored.id);
      return loaded;
    } finally {
      this.pendingLabels.delete(label);
    }
  }

  /**
   * A key pair generated on the token, its attributes recorded in the store (an empty private
   * key marks the record). If the record cannot be written the token key is destroyed again.
   */
  private async createTokenKey(
    store: PartitionStore,
    tokenKeys: TokenKeys,
    request: CreateKeyRequest,
  ): Promise<LoadedKey> {
    const id = randomBytes(16).toString('hex');
    const usages = [...new Set(request.usages ?? (['sign', 'verify'] as const))];
    const entry = await tokenKeys.create({ id, label: request.label, algorithm: request.algorithm, usages });
    const stored: StoredKeyObject = {
      id,
      label: request.label,
      algorithm: request.algorithm,
      usages,
      purposes: [...new Set(request.purposes ?? SIGN_PURPOSES)],
      extractable: false,
      createdAt: this.clock.now().toISOString(),
      publicKey: Uint8Array.from(entry.publicKey),
      privateKey: new Uint8Array(0),
    };
    try {
      await store.putKey(stored);
    } catch (error) {
      await tokenKeys.destroy(id).catch(() => {});
      throw error;
    }
    const loaded = this.tokenLoaded(entry, stored);
    this.index(loaded);
    return loaded;
  }

  /** @internal */
  async destroyKey(key: LoadedKey): Promise<void> {
    const store = this.requireStore();
    if (key.onToken) await this.options.tokenKeys!.destroy(key.info.id);
    await store.deleteKey(key.info.id);
    this.forgetKey(key.info.id);
    await this.replication?.changed();
  }

  /** A key another member of the cluster created, already stored here: usable from now on. */
  adoptKey(key: StoredKeyObject): void {
    if (this.options.tokenKeys) throw new Error('a partition on a PKCS#11 token does not replicate');
    this.index(this.toLoaded(key));
  }

  /** Drops a key from the partition's view (destroyed here or, by its tombstone, elsewhere). */
  forgetKey(id: string): void {
    const key = this.keysById.get(id);
    if (!key) return;
    this.keysById.delete(id);
    if (this.keysByLabel.get(key.info.label) === key) this.keysByLabel.delete(key.info.label);
    this.uriCache.clear();
  }

  /** The member id user versions are stamped with ('' alone). */
  memberId(): string {
    return this.replication?.memberId() ?? '';
  }

  /**
   * Runs login attempts (and anything else that reads then writes a user's failure count) for one
   * user name one after the other, so two wrong PINs sent at once both count towards the lock.
   */
  async serialLogin<T>(name: string, attempt: () => Promise<T>): Promise<T> {
    const previous = this.loginQueues.get(name) ?? Promise.resolve();
    const run = previous.catch(() => {}).then(attempt);
    const tail = run.catch(() => {});
    this.loginQueues.set(name, tail);
    try {
      return await run;
    } finally {
      if (this.loginQueues.get(name) === tail) this.loginQueues.delete(name);
    }
  }

  /** @internal A record to verify PINs of unknown users against, so their answer takes as long. */
  dummy(): Promise<UserRecord | undefined> {
    const hashPin = this.options.hashPin;
    this.dummyUser ??= hashPin
      ? hashPin(randomBytes(24).toString('base64')).then(
          (pinHash) => ({ name: '', role: 'user', pinHash, failedLogins: 0, locked: false }),
          () => undefined,
        )
      : Promise.resolve(undefined);
    return this.dummyUser;
  }
}
