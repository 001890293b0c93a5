import {
  createHash,
  createSign,
  hash,
  sign as nodeSign,
  randomBytes,
  type SignKeyObjectInput,
} from 'node:crypto';
import { USER_NAME } from './key-uri.ts';
import { checkSignMechanism, MECHANISM_SPECS, signingInput } from './mechanisms.ts';
import type { Access, EmulatedPartition, LoadedKey } from './partition.ts';
import {
  asBuffer,
  bad,
  checkCreateKey,
  checkSignParams,
  copyInfo,
  MAX_PIN_OCTETS,
  type Stream,
  toHsmError,
} from './partition-requests.ts';
import { mayRawSign, rawSign } from './raw-sign.ts';
import * as users from './session-users.ts';
import type { AuditEvent } from './store.ts';
import {
  type CreateKeyRequest,
  HSM_REASONS,
  HsmError,
  isHsmError,
  type KeyInfo,
  type KeyManager,
  type KeyRef,
  type LoginRequest,
  type PartitionSessionControl,
  type PartitionStatus,
  type PartitionUserAdmin,
  RAW_SIGN_MECHANISMS,
  type RawSignRequest,
  type Role,
  type SignInitRequest,
  type SignMechanism,
  type SignPurpose,
  type SignRequest,
  type SignStreamRequest,
  type UnsealRequest,
  type UserInfo,
} from './types.ts';

/**
 * One client's view of the partition (a PKCS#11 session): its login, its open multi-part
 * operations, and every operation it makes, each recorded in the audit log with its outcome.
 */
export class PartitionSession implements KeyManager, PartitionSessionControl, PartitionUserAdmin {
  private user: { name: string; role: Role } | undefined;
  private readonly streams = new Map<number, Stream>();
  private nextHandle = 1;
  private closed = false;
  /**
   * Set on a session that came over a mutual-TLS link: the SHA-256 (hex) of the certificate its
   * client presented. Members of a cluster are recognised by it (replication/ops.ts).
   */
  linkPeer: string | undefined;

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
      const role = await users.checkLogin(this.partition, name, request.pin);
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
    return this.perform('createUser', 'officer', (event) => users.createUser(this.partition, event, request));
  }

  async listUsers(): Promise<UserInfo[]> {
    return this.perform('listUsers', 'officer', () => users.listUsers(this.partition));
  }

  async unlockUser(request: { name: string }): Promise<UserInfo> {
    return this.perform('unlockUser', 'officer', (event) => users.unlockUser(this.partition, event, request));
  }

  /** Sets a user's PIN (C_InitPIN); also clears a lock, the usual way back for a locked user. */
  async setUserPin(request: { name: string; pin: string }): Promise<void> {
    return this.perform('setUserPin', 'officer', (event) => users.setUserPin(this.partition, event, request));
  }

  async deleteUser(request: { name: string }): Promise<void> {
    return this.perform('deleteUser', 'officer', (event) =>
      users.deleteUser(this.partition, event, request, this.user?.name),
    );
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
