import {
  createHash,
  createPrivateKey,
  createPublicKey,
  createSign,
  generateKeyPair,
  type Hash,
  hash,
  type KeyObject,
  sign as nodeSign,
  randomBytes,
  type Sign,
  type SignKeyObjectInput,
} from 'node:crypto';
import { checkKeyRef, formatKeyUri, KEY_LABEL, PARTITION_NAME, parseKeyUri, USER_NAME } from './key-uri.ts';
import {
  checkSignMechanism,
  KEY_ALGORITHM_SPECS,
  type KeyAlgorithmSpec,
  MECHANISM_SPECS,
  signingInput,
} from './mechanisms.ts';
import { isPkcs11Uri } from './pkcs11/uri.ts';
import { PROTOCOL_VERSION } from './protocol.ts';
import { mayRawSign, rawSign } from './raw-sign.ts';
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
import type { TokenKeys, TokenSignStream } from './token-keys.ts';
import {
  type Clock,
  type CreateKeyRequest,
  HSM_REASONS,
  HsmError,
  isHsmError,
  KEY_ALGORITHMS,
  KEY_USAGES,
  type KeyInfo,
  type KeyManager,
  type KeyRef,
  type LoginRequest,
  type PartitionSessionControl,
  type PartitionState,
  type PartitionStatus,
  type PartitionUserAdmin,
  RAW_SIGN_MECHANISMS,
  type RawSignRequest,
  ROLES,
  type Role,
  SIGN_MECHANISMS,
  SIGN_PURPOSES,
  type SignInitRequest,
  type SignMechanism,
  type SignPurpose,
  type SignRequest,
  type SignStreamRequest,
  type UnsealRequest,
  type UserInfo,
} from './types.ts';

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

/** Who may call an operation: anyone (even before login), any logged-in user, or one role. */
export type Access = 'public' | 'any' | Role;

interface LoadedKey {
  readonly info: KeyInfo;
  /** Undefined for a key on the token (`onToken`). */
  readonly privateKey: KeyObject | undefined;
  readonly onToken?: boolean;
  /** Signing inputs per mechanism and salt length, built once. */
  readonly inputs: Map<string, SignKeyObjectInput>;
}

interface Stream {
  key: LoadedKey;
  mechanism: SignMechanism;
  purpose: SignPurpose;
  input: SignKeyObjectInput | undefined;
  /** A token key's multi-part operation (its own C_SignUpdate, hashing or gathering). */
  token?: TokenSignStream;
  /** RSA and ECDSA hash as they go (C_SignUpdate); Ed25519 gathers the message. */
  signer?: Sign;
  parts?: Buffer[];
  length: number;
  /** SHA-256 of the whole message, for the audit record. */
  digest: Hash;
}

const MAX_PIN_OCTETS = 256;

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
    if (this.isCurrent(key)) {
      this.keysById.delete(key.info.id);
      this.keysByLabel.delete(key.info.label);
      this.uriCache.clear();
    }
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

function generate(spec: KeyAlgorithmSpec): Promise<{ privateKey: KeyObject }> {
  return new Promise((resolve, reject) => {
    const done = (error: Error | null, _publicKey: KeyObject, privateKey: KeyObject) =>
      error
        ? reject(new HsmError('CKR_DEVICE_ERROR', 'key generation failed', { cause: error }))
        : resolve({ privateKey });
    const g = spec.generate;
    if (g.type === 'ec') generateKeyPair('ec', { namedCurve: g.namedCurve }, done);
    else if (g.type === 'rsa')
      generateKeyPair('rsa', { modulusLength: g.modulusLength, publicExponent: 0x10001 }, done);
    else generateKeyPair('ed25519', {}, done);
  });
}

const copyInfo = (info: KeyInfo): KeyInfo => ({
  ...info,
  usages: [...info.usages],
  purposes: [...info.purposes],
  publicKey: Uint8Array.from(info.publicKey),
});

const bad = (message: string) => new HsmError('CKR_ARGUMENTS_BAD', message);

function toHsmError(error: unknown, partition: EmulatedPartition, op: string): HsmError {
  if (isHsmError(error)) return error;
  partition.log(`${op} failed: ${error instanceof Error ? error.message : String(error)}`);
  return new HsmError('CKR_DEVICE_ERROR', `${op} failed inside the partition`, { cause: error });
}

function checkCreateKey(request: CreateKeyRequest): void {
  if (typeof request !== 'object' || request === null) throw bad('createKey takes a request object');
  if (typeof request.label !== 'string' || !KEY_LABEL.test(request.label)) {
    throw bad('label must match [A-Za-z0-9][A-Za-z0-9._-]{0,63}');
  }
  if (!(KEY_ALGORITHMS as readonly string[]).includes(request.algorithm)) {
    throw bad(`algorithm must be one of ${KEY_ALGORITHMS.join(', ')}`);
  }
  if (request.extractable !== undefined && typeof request.extractable !== 'boolean')
    throw bad('extractable is a boolean');
  if (request.extractable) {
    throw new HsmError('CKR_ATTRIBUTE_VALUE_INVALID', 'this partition creates only non-extractable keys');
  }
  checkList('usages', request.usages, KEY_USAGES);
  checkList('purposes', request.purposes, SIGN_PURPOSES);
}

function checkList(name: string, value: unknown, allowed: readonly string[]): void {
  if (value === undefined) return;
  if (!Array.isArray(value) || value.length === 0 || value.length > allowed.length) {
    throw bad(`${name} must be a non-empty list of ${allowed.join(', ')}`);
  }
  for (const item of value)
    if (!allowed.includes(item)) throw bad(`${name} must be drawn from ${allowed.join(', ')}`);
  if (new Set(value).size !== value.length) throw bad(`${name} lists an entry twice`);
}

function checkSignParams(request: SignInitRequest): void {
  if (typeof request !== 'object' || request === null) throw bad('sign takes a request object');
  if (!(SIGN_MECHANISMS as readonly string[]).includes(request.mechanism)) {
    throw new HsmError('CKR_MECHANISM_INVALID', `mechanism must be one of ${SIGN_MECHANISMS.join(', ')}`);
  }
  if (!(SIGN_PURPOSES as readonly string[]).includes(request.purpose)) {
    throw bad(`purpose must be one of ${SIGN_PURPOSES.join(', ')}`);
  }
  if (request.saltLength !== undefined && !Number.isSafeInteger(request.saltLength)) {
    throw new HsmError('CKR_MECHANISM_PARAM_INVALID', 'saltLength is an integer');
  }
}

const asBuffer = (data: Uint8Array): Buffer =>
  Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);

/**
 * One client's view of the partition (a PKCS#11 session): its login, its open multi-part
 * operations, and every operation it makes, each recorded in the audit log with its outcome.
 */
export class PartitionSession implements KeyManager, PartitionSessionControl, PartitionUserAdmin {
  private user: { name: string; role: Role } | undefined;
  private readonly streams = new Map<number, Stream>();
  private nextHandle = 1;
  private closed = false;

  constructor(
    private readonly partition: EmulatedPartition,
    readonly id: number,
  ) {}

  get loggedInAs(): { name: string; role: Role } | undefined {
    return this.user && { ...this.user };
  }

  /**
   * Runs one operation: checks the caller may, runs it, and appends its audit record (the
   * outcome, or the failure's code). Extension operations (server.ts) go through here too.
   * `body` may add fields (keyId, digest, ...) to the record it is given.
   */
  async perform<T, A = undefined>(
    op: string,
    access: Access,
    body: (this: PartitionSession, event: AuditEvent, arg: A) => T | Promise<T>,
    options?: { whenSealed?: boolean },
    arg?: A,
  ): Promise<T> {
    const event = this.event(op);
    let result: T;
    try {
      if (this.closed) throw new HsmError('CKR_SESSION_CLOSED', 'session is closed');
      if (!options?.whenSealed) this.partition.requireStore();
      this.checkAccess(access);
      const value = body.call(this, event, arg as A);
      // Signing is synchronous: no extra turn through the microtask queue for it.
      result = value instanceof Promise ? await value : value;
    } catch (error) {
      return this.refused(event, error);
    }
    await this.partition.audit(event);
    return result;
  }

  private event(op: string): AuditEvent {
    const event: AuditEvent = { time: this.partition.isoNow(), session: this.id, op, result: 'ok' };
    if (this.user) event.user = this.user.name;
    return event;
  }

  private checkAccess(access: Access): void {
    if (access === 'public') return;
    if (!this.user) throw new HsmError('CKR_USER_NOT_LOGGED_IN', 'log in first');
    if (access !== 'any' && this.user.role !== access) {
      throw new HsmError('CKR_OPERATION_NOT_PERMITTED', `only the crypto ${access} may do this`);
    }
  }

  /** Records a frame the server could not turn into an operation. */
  async recordProtocolError(result: string): Promise<void> {
    await this.partition.audit({ ...this.event('protocol'), result }).catch(() => {});
  }

  // --- session control -----------------------------------------------------------------------

  async status(): Promise<PartitionStatus> {
    return this.perform('status', 'public', () => this.partition.status(this.user), { whenSealed: true });
  }

  async unseal(request: UnsealRequest): Promise<PartitionStatus> {
    return this.perform(
      'unseal',
      'public',
      async () => {
        if (typeof request !== 'object' || request === null)
          throw bad('unseal takes { secret } or { shares }');
        const { secret, shares } = request;
        if ((secret === undefined) === (shares === undefined))
          throw bad('unseal takes either secret or shares');
        if (secret !== undefined && !(secret instanceof Uint8Array)) throw bad('secret is bytes');
        if (
          shares !== undefined &&
          (!Array.isArray(shares) || !shares.every((s) => s instanceof Uint8Array))
        ) {
          throw bad('shares are bytes');
        }
        await this.partition.unseal(request);
        return this.partition.status(this.user);
      },
      { whenSealed: true },
    );
  }

  async login(request: LoginRequest): Promise<{ user: string; role: Role }> {
    const name = typeof request?.user === 'string' && USER_NAME.test(request.user) ? request.user : undefined;
    return this.perform('login', 'public', async (event) => {
      if (name === undefined) throw bad('user must match [a-z0-9][a-z0-9._-]{0,31}');
      if (typeof request.pin !== 'string' || Buffer.byteLength(request.pin) > MAX_PIN_OCTETS) {
        throw bad(`pin is a string of at most ${MAX_PIN_OCTETS} octets`);
      }
      event.user = name;
      if (this.user)
        throw new HsmError('CKR_USER_ALREADY_LOGGED_IN', `already logged in as ${this.user.name}`);
      const store = this.partition.requireStore();
      const role = await this.partition.serialLogin(name, async () => {
        const record = await store.getUser(name);
        if (!record) {
          const dummy = await this.partition.dummy();
          if (dummy) await this.partition.options.verifyPin(dummy, request.pin);
          throw new HsmError('CKR_PIN_INCORRECT', 'wrong user or PIN');
        }
        if (record.locked)
          throw new HsmError('CKR_PIN_LOCKED', `user ${name} is locked; the officer must unlock it`);
        if (!(await this.partition.options.verifyPin(record, request.pin))) {
          const failedLogins = record.failedLogins + 1;
          const locked = failedLogins >= (this.partition.options.maxFailedLogins ?? 5);
          await store.putUser({ ...record, failedLogins, locked });
          if (locked) throw new HsmError('CKR_PIN_LOCKED', `wrong PIN; user ${name} is now locked`);
          throw new HsmError('CKR_PIN_INCORRECT', 'wrong user or PIN');
        }
        if (record.failedLogins !== 0) await store.putUser({ ...record, failedLogins: 0 });
        return record.role;
      });
      // A concurrent login on this session may have won while this one waited.
      const winner = this.loggedInAs;
      if (winner) throw new HsmError('CKR_USER_ALREADY_LOGGED_IN', `already logged in as ${winner.name}`);
      this.user = { name, role };
      return { user: name, role };
    });
  }

  async logout(): Promise<void> {
    return this.perform(
      'logout',
      'any',
      () => {
        this.abortStreams('logout');
        this.user = undefined;
      },
      { whenSealed: true },
    );
  }

  // --- keys ----------------------------------------------------------------------------------

  async createKey(request: CreateKeyRequest): Promise<KeyInfo> {
    return this.perform('createKey', 'officer', async (event) => {
      checkCreateKey(request);
      event.keyLabel = request.label;
      const key = await this.partition.createKey(request);
      event.keyId = key.info.id;
      return copyInfo(key.info);
    });
  }

  async findKey(request: KeyRef): Promise<KeyInfo | undefined> {
    return this.perform('findKey', 'any', (event) => {
      const key = this.partition.lookup(request);
      if (key) Object.assign(event, { keyId: key.info.id, keyLabel: key.info.label });
      return key && copyInfo(key.info);
    });
  }

  async listKeys(): Promise<KeyInfo[]> {
    return this.perform('listKeys', 'any', () => this.partition.listKeys());
  }

  async getPublicKey(request: KeyRef): Promise<Uint8Array> {
    return this.perform('getPublicKey', 'any', (event) => {
      const key = this.keyFor(request, event);
      return Uint8Array.from(key.info.publicKey);
    });
  }

  async destroyKey(request: KeyRef): Promise<void> {
    return this.perform('destroyKey', 'officer', async (event) => {
      await this.partition.destroyKey(this.keyFor(request, event));
    });
  }

  async exportKey(request: KeyRef): Promise<Uint8Array> {
    return this.perform('exportKey', 'any', (event) => {
      const key = this.keyFor(request, event);
      if (!key.info.extractable)
        throw new HsmError('CKR_KEY_UNEXTRACTABLE', `key ${key.info.label} is not extractable`);
      // No key here is extractable (createKey refuses it); keep the answer a refusal regardless.
      throw new HsmError('CKR_FUNCTION_NOT_SUPPORTED', 'this partition never releases private key material');
    });
  }

  async generateRandom(request: { length: number }): Promise<Uint8Array> {
    return this.perform('generateRandom', 'any', (event) => {
      const length = request?.length;
      if (!Number.isSafeInteger(length) || length < 1 || length > 65536)
        throw bad('length must be 1 to 65536');
      event.length = length;
      return randomBytes(length);
    });
  }

  private keyFor(ref: KeyRef, event: AuditEvent): LoadedKey {
    if (typeof ref !== 'object' || ref === null) throw bad('key reference must be an object');
    const key = this.partition.require(ref);
    event.keyId = key.info.id;
    event.keyLabel = key.info.label;
    return key;
  }

  // --- signing -------------------------------------------------------------------------------

  /**
   * Checks that this key may make this signature, and returns the node:crypto signing input
   * (undefined for a token key, whose token does the signing).
   */
  private signable(
    key: LoadedKey,
    mechanism: SignMechanism,
    purpose: SignPurpose,
    saltLength?: number,
  ): SignKeyObjectInput | undefined {
    const { info } = key;
    if (!info.usages.includes('sign')) {
      throw new HsmError('CKR_KEY_FUNCTION_NOT_PERMITTED', `key ${info.label} was not created for signing`);
    }
    if (!info.purposes.includes(purpose)) {
      throw new HsmError(
        'CKR_KEY_FUNCTION_NOT_PERMITTED',
        `key ${info.label} may not sign for purpose '${purpose}'`,
      );
    }
    if (!key.privateKey) {
      checkSignMechanism(info.algorithm, mechanism, saltLength);
      this.partition.options.tokenKeys!.checkMechanism(mechanism);
      return undefined;
    }
    const cacheKey = saltLength === undefined ? mechanism : `${mechanism}/${saltLength}`;
    let input = key.inputs.get(cacheKey);
    if (!input) {
      input = signingInput(info.algorithm, key.privateKey, mechanism, saltLength);
      key.inputs.set(cacheKey, input);
    }
    return input;
  }

  /**
   * The hot path, written out rather than through perform(): synchronous up to the audit append,
   * no closure made per signature. Same checks, same record, same rule (released only once the
   * record is appended).
   */
  sign(request: SignRequest): Promise<Uint8Array> {
    const event = this.event('sign');
    let signature: Uint8Array | Promise<Uint8Array>;
    try {
      if (this.closed) throw new HsmError('CKR_SESSION_CLOSED', 'session is closed');
      this.partition.requireStore();
      this.checkAccess('user');
      signature = this.signOnce(event, request);
    } catch (error) {
      return this.refused(event, error);
    }
    if (signature instanceof Promise) {
      // A token key: the token answers later; its failure is audited like any other.
      return signature.then(
        (value) => this.partition.audit(event).then(() => value),
        (error) => this.refused(event, error),
      );
    }
    const value = signature;
    return this.partition.audit(event).then(() => value);
  }

  /** Records a failed operation and rejects with its reason. */
  private async refused(event: AuditEvent, error: unknown): Promise<never> {
    const failure = toHsmError(error, this.partition, event.op);
    event.result = failure.code;
    await this.partition.audit(event).catch(() => {});
    throw failure;
  }

  private signOnce(event: AuditEvent, request: SignRequest): Uint8Array | Promise<Uint8Array> {
    checkSignParams(request);
    if (!(request.data instanceof Uint8Array)) throw bad('data is bytes');
    const key = this.keyFor(request.key, event);
    event.purpose = request.purpose;
    event.mechanism = request.mechanism;
    const input = this.signable(key, request.mechanism, request.purpose, request.saltLength);
    const data = asBuffer(request.data);
    event.length = data.length;
    event.digest = hash('sha256', data, 'hex');
    if (!input) {
      return this.partition.options.tokenKeys!.sign(
        key.info.id,
        key.info.algorithm,
        request.mechanism,
        data,
        request.saltLength,
      );
    }
    try {
      return nodeSign(key.info.algorithm === 'ed25519' ? null : hashOf(request.mechanism), data, input);
    } catch (error) {
      throw new HsmError('CKR_DEVICE_ERROR', 'signing failed', { cause: error });
    }
  }

  /**
   * Signs input the caller prepared (a digest, a DigestInfo: raw-sign.ts), for the PKCS#11 front
   * end. Only keys whose purposes are exactly ['other'] may; audited like sign, purpose 'other'.
   */
  async signRaw(request: RawSignRequest): Promise<Uint8Array> {
    return this.perform('sign', 'user', (event) => {
      if (typeof request !== 'object' || request === null) throw bad('signRaw takes a request object');
      if (!(RAW_SIGN_MECHANISMS as readonly string[]).includes(request.mechanism))
        throw new HsmError(
          'CKR_MECHANISM_INVALID',
          `mechanism must be one of ${RAW_SIGN_MECHANISMS.join(', ')}`,
        );
      if (!(request.data instanceof Uint8Array)) throw bad('data is bytes');
      const key = this.keyFor(request.key, event);
      Object.assign(event, { purpose: 'other', mechanism: request.mechanism, length: request.data.length });
      event.digest = hash('sha256', request.data, 'hex');
      if (!key.privateKey) {
        throw new HsmError(
          'CKR_FUNCTION_NOT_SUPPORTED',
          `key ${key.info.label} is on a PKCS#11 token: use the token's own module for raw signatures`,
        );
      }
      if (!mayRawSign(key.info)) {
        throw new HsmError(
          'CKR_KEY_FUNCTION_NOT_PERMITTED',
          `key ${key.info.label} signs only what the partition hashes itself (its purposes are not exactly 'other')`,
        );
      }
      try {
        return rawSign(key.info, key.privateKey, request);
      } catch (error) {
        if (isHsmError(error)) throw error;
        throw new HsmError('CKR_DEVICE_ERROR', 'signing failed', { cause: error });
      }
    });
  }

  /** C_SignInit: returns a handle for signUpdate / signFinal on this session. */
  async signInit(request: SignInitRequest): Promise<number> {
    return this.perform('signInit', 'user', async (event) => {
      checkSignParams(request);
      const key = this.keyFor(request.key, event);
      Object.assign(event, { purpose: request.purpose, mechanism: request.mechanism });
      const input = this.signable(key, request.mechanism, request.purpose, request.saltLength);
      if (this.streams.size >= (this.partition.options.maxOpenStreams ?? 4)) {
        throw new HsmError('CKR_OPERATION_ACTIVE', 'too many multi-part operations open on this session');
      }
      const ed25519 = key.info.algorithm === 'ed25519';
      const token = input
        ? undefined
        : await this.partition.options.tokenKeys!.startStream(
            key.info.id,
            key.info.algorithm,
            request.mechanism,
            request.saltLength,
          );
      const stream: Stream = {
        key,
        mechanism: request.mechanism,
        purpose: request.purpose,
        input,
        length: 0,
        digest: createHash('sha256'),
        ...(token ? { token } : ed25519 ? { parts: [] } : { signer: createSign(hashOf(request.mechanism)!) }),
      };
      const handle = this.nextHandle;
      this.nextHandle = (this.nextHandle % 0xffff_ffff) + 1;
      this.streams.set(handle, stream);
      return handle;
    });
  }

  /**
   * C_SignUpdate. The chunk is applied before the first await, so updates sent one after the
   * other on a connection apply in that order. Success is not audited chunk by chunk: the
   * signFinal record carries the whole message's length and digest. An error ends the operation,
   * as in PKCS#11.
   */
  signUpdate(handle: number, chunk: Uint8Array): Promise<void> {
    const stream = this.streams.get(handle);
    if (stream && this.user?.role === 'user' && chunk instanceof Uint8Array && !this.closed) {
      const limit = this.partition.options.maxStreamBytes ?? 64 * 1024 * 1024;
      const gathers = stream.parts !== undefined || (stream.token && stream.key.info.algorithm === 'ed25519');
      if (!gathers || stream.length + chunk.length <= limit) {
        const data = asBuffer(chunk);
        stream.length += data.length;
        stream.digest.update(data);
        if (stream.token) {
          try {
            stream.token.update(data);
          } catch (error) {
            return this.perform('signUpdate', 'user', (event) => {
              this.streams.delete(handle);
              Object.assign(event, {
                keyId: stream.key.info.id,
                keyLabel: stream.key.info.label,
                purpose: stream.purpose,
              });
              throw error;
            });
          }
        } else if (stream.signer) stream.signer.update(data);
        else stream.parts!.push(Buffer.from(data));
        return Promise.resolve();
      }
    }
    // Every other case is a failure, audited; as in PKCS#11 it ends the operation.
    return this.perform('signUpdate', 'user', (event) => {
      const open = this.streams.get(handle);
      if (!open) throw new HsmError('CKR_OPERATION_NOT_INITIALIZED', 'no such multi-part operation');
      this.streams.delete(handle);
      open.token?.cancel();
      Object.assign(event, { keyId: open.key.info.id, keyLabel: open.key.info.label, purpose: open.purpose });
      if (!(chunk instanceof Uint8Array)) throw bad('chunk is bytes');
      throw new HsmError('CKR_DATA_LEN_RANGE', 'the message exceeds what the partition gathers for Ed25519');
    });
  }

  /** C_SignFinal: signs what the updates carried and ends the operation. */
  async signFinal(handle: number): Promise<Uint8Array> {
    return this.perform('signFinal', 'user', (event) => {
      const stream = this.streams.get(handle);
      if (!stream) throw new HsmError('CKR_OPERATION_NOT_INITIALIZED', 'no such multi-part operation');
      this.streams.delete(handle);
      const { key } = stream;
      Object.assign(event, {
        keyId: key.info.id,
        keyLabel: key.info.label,
        purpose: stream.purpose,
        mechanism: stream.mechanism,
        length: stream.length,
        digest: stream.digest.digest('hex'),
      });
      if (!this.partition.isCurrent(key)) {
        stream.token?.cancel();
        throw new HsmError('CKR_KEY_HANDLE_INVALID', 'the key was destroyed');
      }
      if (stream.token) return stream.token.final();
      try {
        return stream.signer
          ? stream.signer.sign(stream.input!)
          : nodeSign(null, Buffer.concat(stream.parts!, stream.length), stream.input!);
      } catch (error) {
        throw new HsmError('CKR_DEVICE_ERROR', 'signing failed', { cause: error });
      }
    });
  }

  /** Ends a multi-part operation without signing (PKCS#11 3.0 C_SessionCancel). */
  async signCancel(handle: number): Promise<void> {
    return this.perform('signCancel', 'user', (event) => {
      const stream = this.streams.get(handle);
      if (!stream) throw new HsmError('CKR_OPERATION_NOT_INITIALIZED', 'no such multi-part operation');
      this.streams.delete(handle);
      stream.token?.cancel();
      Object.assign(event, {
        keyId: stream.key.info.id,
        keyLabel: stream.key.info.label,
        purpose: stream.purpose,
      });
    });
  }

  async signStream(request: SignStreamRequest): Promise<Uint8Array> {
    const handle = await this.signInit(request);
    try {
      for await (const chunk of request.chunks) await this.signUpdate(handle, chunk);
    } catch (error) {
      await this.signCancel(handle).catch(() => {});
      throw error;
    }
    return this.signFinal(handle);
  }

  private abortStreams(reason: string): void {
    for (const [handle, stream] of this.streams) {
      this.streams.delete(handle);
      stream.token?.cancel();
      void this.partition
        .audit({
          ...this.event('signCancel'),
          keyId: stream.key.info.id,
          keyLabel: stream.key.info.label,
          purpose: stream.purpose,
          result: HSM_REASONS.CKR_SESSION_CLOSED,
          detail: reason,
        })
        .catch(() => {});
    }
  }

  // --- users ---------------------------------------------------------------------------------

  async createUser(request: { name: string; role: Role; pin: string }): Promise<UserInfo> {
    return this.perform('createUser', 'officer', async (event) => {
      const name = this.checkUserName(request?.name, event);
      if (!(ROLES as readonly string[]).includes(request.role))
        throw bad(`role must be one of ${ROLES.join(', ')}`);
      const pinHash = await this.hashPin(request.pin);
      const store = this.partition.requireStore();
      if (await store.getUser(name)) throw new HsmError('CKR_OBJECT_EXISTS', `user ${name} exists`);
      const record: UserRecord = { name, role: request.role, pinHash, failedLogins: 0, locked: false };
      await store.putUser(record);
      return userInfo(record);
    });
  }

  async listUsers(): Promise<UserInfo[]> {
    return this.perform('listUsers', 'officer', async () => {
      const users = await this.partition.requireStore().listUsers();
      return users.map(userInfo).sort((a, b) => a.name.localeCompare(b.name));
    });
  }

  async unlockUser(request: { name: string }): Promise<UserInfo> {
    return this.perform('unlockUser', 'officer', async (event) => {
      const name = this.checkUserName(request?.name, event);
      return this.partition.serialLogin(name, async () => {
        const record = await this.existingUser(name);
        const unlocked = { ...record, failedLogins: 0, locked: false };
        await this.partition.requireStore().putUser(unlocked);
        return userInfo(unlocked);
      });
    });
  }

  /** Sets a user's PIN (C_InitPIN); also clears a lock, the usual way back for a locked user. */
  async setUserPin(request: { name: string; pin: string }): Promise<void> {
    return this.perform('setUserPin', 'officer', async (event) => {
      const name = this.checkUserName(request?.name, event);
      const pinHash = await this.hashPin(request.pin);
      await this.partition.serialLogin(name, async () => {
        const record = await this.existingUser(name);
        await this.partition.requireStore().putUser({ ...record, pinHash, failedLogins: 0, locked: false });
      });
    });
  }

  async deleteUser(request: { name: string }): Promise<void> {
    return this.perform('deleteUser', 'officer', async (event) => {
      const name = this.checkUserName(request?.name, event);
      const store = this.partition.requireStore();
      if (!store.deleteUser)
        throw new HsmError('CKR_FUNCTION_NOT_SUPPORTED', 'this store cannot delete users');
      if (name === this.user?.name)
        throw new HsmError('CKR_OPERATION_NOT_PERMITTED', 'an officer cannot delete itself');
      const record = await this.existingUser(name);
      if (record.role === 'officer') {
        const officers = (await store.listUsers()).filter((u) => u.role === 'officer');
        if (officers.length <= 1) throw new HsmError('CKR_OPERATION_NOT_PERMITTED', 'the last officer stays');
      }
      await store.deleteUser(name);
    });
  }

  private checkUserName(name: unknown, event: AuditEvent): string {
    if (typeof name !== 'string' || !USER_NAME.test(name))
      throw bad('user name must match [a-z0-9][a-z0-9._-]{0,31}');
    event.subject = name;
    return name;
  }

  private async existingUser(name: string): Promise<UserRecord> {
    const record = await this.partition.requireStore().getUser(name);
    if (!record) throw bad(`no user ${name}`);
    return record;
  }

  private async hashPin(pin: unknown): Promise<string> {
    const hashPin = this.partition.options.hashPin;
    if (!hashPin) throw new HsmError('CKR_FUNCTION_NOT_SUPPORTED', 'this partition cannot set PINs');
    const min = this.partition.options.minPinLength ?? 8;
    if (typeof pin !== 'string' || [...pin].length < min || Buffer.byteLength(pin) > MAX_PIN_OCTETS) {
      throw new HsmError('CKR_PIN_LEN_RANGE', `a PIN has ${min} to ${MAX_PIN_OCTETS} characters`);
    }
    return hashPin(pin);
  }

  /** Ends the session: open multi-part operations are abandoned (nothing is signed), the login ends. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.abortStreams('session closed');
    this.closed = true;
    this.user = undefined;
    this.partition.forget(this);
  }
}

const hashOf = (mechanism: SignMechanism): string | null => MECHANISM_SPECS[mechanism].hash;

const userInfo = (record: UserRecord): UserInfo => ({
  name: record.name,
  role: record.role,
  failedLogins: record.failedLogins,
  locked: record.locked,
});
