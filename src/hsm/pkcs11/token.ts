import { createHash } from 'node:crypto';
import type * as Pkcs11Js from 'pkcs11js';
import { MECHANISM_SPECS } from '../mechanisms.ts';
import { CKA } from '../p11/pkcs11.ts';
import type { TokenKeyEntry, TokenKeys, TokenSignStream } from '../token-keys.ts';
import { HsmError, type KeyAlgorithm, type KeyUsage, type SignMechanism } from '../types.ts';
import {
  CKF_RW_SESSION,
  CKF_SERIAL_SESSION,
  CKO_PRIVATE_KEY,
  CKO_PUBLIC_KEY,
  CKU_USER,
  ED25519_NAME,
  GENERATE_MECHANISM,
  MECHANISM_NAMES,
  SIGN_MECHANISM,
} from './constants.ts';
import { isTokenGone, moduleError, moduleReturnValue, returnValueName } from './errors.ts';
import { acquireModule, call, findSlot, type Pkcs11Instance, releaseModule, spaces } from './module.ts';
import { describeKey, findObjects, keyPairTemplates, readAttributes, readUlong, u } from './objects.ts';
import {
  digestingStream,
  gatheringStream,
  mechanismParams,
  moduleStream,
  signatureLength,
} from './signing.ts';
import { formatPkcs11Uri, parsePkcs11Uri } from './uri.ts';

export { CKM } from './constants.ts';

/**
 * One PKCS#11 token, opened by the partition process (never by the CA): the module loaded with
 * pkcs11js, the slot found by token label (or slot id), the token's user logged in with the
 * token PIN, and a pool of sessions for concurrent signatures. Keys are found by CKA_ID and
 * CKA_LABEL, never by handles kept across runs (handles change between processes).
 *
 * Signing (issue #25): ECDSA is hashed here and signed with CKM_ECDSA (SoftHSM 2.6 has no
 * CKM_ECDSA_SHA256), which answers r||s, the IEEE P1363 form callers expect; RSA PKCS#1 v1.5 and
 * PSS use the CKM_SHAxxx_RSA_PKCS(_PSS) mechanisms, multi-part through C_SignUpdate/C_SignFinal;
 * Ed25519 uses CKM_EDDSA over the whole message (pure EdDSA has no multi-part form).
 *
 * A token that goes away (CKR_DEVICE_REMOVED, CKR_SESSION_HANDLE_INVALID...) makes operations fail
 * with CKR_DEVICE_REMOVED (hsm.unavailable, 503 at the API); the next operation after that
 * finalises the module and opens the token again, so service resumes once it is back.
 *
 * Beside it: module.ts (loading the module, finding the slot), objects.ts (finding keys, reading
 * their attributes, key-pair templates), constants.ts (the PKCS#11 numbers), signing.ts
 * (mechanism parameters, multi-part streams), errors.ts (return values to HsmError).
 */

export interface Pkcs11TokenOptions {
  /** Path of the PKCS#11 module (/usr/lib/softhsm/libsofthsm2.so, /opt/cloudhsm/lib/libcloudhsm_pkcs11.so...). */
  module: string;
  /** The token's label (CK_TOKEN_INFO.label); preferred over slotId. */
  tokenLabel?: string;
  /** The PKCS#11 slot ID, when the label is not unique. */
  slotId?: number;
  /** The token's user PIN (C_Login CKU_USER). Never logged. */
  pin: string;
  /** Sessions in the pool for one-part signatures; default 4 (libuv's thread pool runs the *Async calls). */
  sessions?: number;
  /** Mechanisms to treat as absent even if the token lists them (a token whose list is wrong). */
  excludeMechanisms?: number[];
  log?: (line: string) => void;
}

/** Return values after which a key's handle is looked up again. */
const STALE_HANDLE = new Set(['CKR_KEY_HANDLE_INVALID', 'CKR_OBJECT_HANDLE_INVALID']);
/** Return values after which the slot is asked whether the token is still there. */
const PROBE_AFTER = new Set([
  ...STALE_HANDLE,
  'CKR_GENERAL_ERROR',
  'CKR_DEVICE_ERROR',
  'CKR_FUNCTION_FAILED',
]);

interface Handles {
  priv: Buffer;
  entry: TokenKeyEntry;
}

export class Pkcs11Token implements TokenKeys {
  private pkcs11: Pkcs11Instance | undefined;
  private slot: Buffer | undefined;
  private mechanisms = new Set<number>();
  private free: Buffer[] = [];
  /** Every session of the pool, free or in use. */
  private pool: Buffer[] = [];
  private readonly waiters: ((session: Buffer) => void)[] = [];
  /** Sessions handed out by the pool; those of an older generation are closed on return. */
  private generation = 0;
  private handles = new Map<string, Handles>();
  private reopening: Promise<void> | undefined;
  private lastReopen = 0;
  private broken: HsmError | undefined;
  private closed = false;
  /** The token's label (read from the token when it was chosen by slot id). */
  label: string;

  private constructor(readonly options: Pkcs11TokenOptions) {
    this.label = options.tokenLabel ?? `slot ${options.slotId}`;
  }

  /** Loads the module, finds the token, logs in; errors name the PKCS#11 code and what to check. */
  static async open(options: Pkcs11TokenOptions): Promise<Pkcs11Token> {
    if ((options.tokenLabel === undefined) === (options.slotId === undefined) && !options.tokenLabel) {
      throw new HsmError('CKR_ARGUMENTS_BAD', 'name the token by its label or its slot id');
    }
    const token = new Pkcs11Token(options);
    await token.connect();
    return token;
  }

  get token(): { label: string; module: string } {
    return { label: this.label, module: this.options.module };
  }

  uriFor(label: string): string {
    return formatPkcs11Uri(this.label, label);
  }

  parseUri(uri: string): { label?: string; id?: string } {
    const parsed = parsePkcs11Uri(uri);
    if (parsed.token !== undefined && parsed.token !== this.label) {
      throw new HsmError(
        'CKR_ARGUMENTS_BAD',
        `key URI names token '${parsed.token}', this is '${this.label}'`,
      );
    }
    return {
      ...(parsed.object !== undefined ? { label: parsed.object } : {}),
      ...(parsed.id !== undefined ? { id: parsed.id } : {}),
    };
  }

  checkMechanism(mechanism: SignMechanism): void {
    this.requireMechanism(SIGN_MECHANISM[mechanism], mechanism);
  }

  /** `pkcs11 (token L, module PATH)`, as `signet hsm status` shows it. */
  describe(): string {
    return `pkcs11 (token ${this.label}, module ${this.options.module})`;
  }

  private async connect(): Promise<void> {
    const pkcs11 = acquireModule(this.options.module);
    try {
      const { slot, label: slotLabel } = findSlot(pkcs11, this.options);
      const mechanisms = new Set(call('C_GetMechanismList', () => pkcs11.C_GetMechanismList(slot)));
      for (const m of this.options.excludeMechanisms ?? []) mechanisms.delete(m);
      const sessions: Buffer[] = [];
      const count = Math.max(1, Math.min(this.options.sessions ?? 4, 64));
      for (let i = 0; i < count; i++) {
        sessions.push(
          call('C_OpenSession', () => pkcs11.C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION)),
        );
      }
      try {
        pkcs11.C_Login(sessions[0]!, CKU_USER, this.options.pin);
      } catch (error) {
        // Logged in already (another application in this process): the login state is the token's.
        if (returnValueName(moduleReturnValue(error) ?? -1) !== 'CKR_USER_ALREADY_LOGGED_IN')
          throw moduleError('C_Login', error);
      }
      this.pkcs11 = pkcs11;
      this.slot = slot;
      this.label = slotLabel;
      this.mechanisms = mechanisms;
      this.free = sessions;
      this.pool = [...sessions];
      this.generation++;
      this.handles = new Map();
      this.broken = undefined;
      while (this.waiters.length > 0 && this.free.length > 0) this.waiters.shift()!(this.free.pop()!);
    } catch (error) {
      releaseModule(this.options.module);
      throw error instanceof HsmError ? error : moduleError('opening the token', error);
    }
  }

  private take(): Buffer | undefined {
    return this.free.pop();
  }

  private release(session: Buffer, generation: number, waiter?: (session: Buffer) => void): void {
    if (generation !== this.generation) return;
    const next = waiter ?? this.waiters.shift();
    if (next) next(session);
    else this.free.push(session);
  }

  /** The token's state before each operation: reopened (at most once a second) after it went away. */
  private async ready(): Promise<Pkcs11Instance> {
    if (this.closed) throw new HsmError('CKR_DEVICE_REMOVED', 'the token is closed');
    if (this.broken) {
      if (!this.reopening && Date.now() - this.lastReopen >= 1000) {
        this.lastReopen = Date.now();
        this.reopening = this.reopen().finally(() => {
          this.reopening = undefined;
        });
      }
      if (this.reopening) await this.reopening.catch(() => {});
      if (this.broken) throw this.broken;
    }
    return this.pkcs11!;
  }

  private async reopen(): Promise<void> {
    this.teardown();
    try {
      await this.connect();
      this.options.log?.(`token ${this.label} is back`);
    } catch (error) {
      this.broken = error instanceof HsmError ? error : moduleError('reopening the token', error);
    }
  }

  /** Forgets the module state; the next operation reconnects. */
  private teardown(): void {
    const pkcs11 = this.pkcs11;
    this.pkcs11 = undefined;
    this.free = [];
    this.handles = new Map();
    this.generation++;
    if (!pkcs11) return;
    // Only this token's sessions: another user of the module (a second partition on it) keeps its own.
    for (const session of this.pool.splice(0)) {
      try {
        pkcs11.C_CloseSession(session);
      } catch {}
    }
    releaseModule(this.options.module);
  }

  /**
   * C_SignInit with the key of this CKA_ID. A handle that stopped working is looked up again once
   * (the module may have reloaded its objects); if the token no longer answers in its slot, it
   * is gone.
   */
  private signInit(pkcs11: Pkcs11Instance, session: Buffer, mech: Pkcs11Js.Mechanism, id: string): void {
    for (let attempt = 0; ; attempt++) {
      const key = this.handleOf(pkcs11, session, id);
      try {
        pkcs11.C_SignInit(session, mech, key);
        return;
      } catch (error) {
        const name = returnValueName(moduleReturnValue(error) ?? -1);
        if (!STALE_HANDLE.has(name) || attempt > 0) throw this.failed('C_SignInit', error);
        this.handles.delete(id);
        if (!this.answers(pkcs11)) throw this.failed('C_SignInit', error);
      }
    }
  }

  /** Whether the token still answers in its slot with its label (C_GetTokenInfo). */
  private answers(pkcs11: Pkcs11Instance): boolean {
    try {
      return spaces(pkcs11.C_GetTokenInfo(this.slot!).label) === this.label;
    } catch {
      return false;
    }
  }

  /** Marks the token gone when `error` says so, and returns the error to throw. */
  private failed(callName: string, error: unknown): HsmError {
    let failure = moduleError(callName, error);
    let gone = isTokenGone(error);
    // A module may report a vanished device as a general error or a handle that stopped working
    // (SoftHSM does when its token folder goes away): ask the slot before blaming the request.
    if (!gone && !this.broken && this.pkcs11 && !(error instanceof HsmError)) {
      const name = returnValueName(moduleReturnValue(error) ?? -1);
      if (PROBE_AFTER.has(name) && !this.answers(this.pkcs11)) {
        gone = true;
        failure = new HsmError(
          'CKR_DEVICE_REMOVED',
          `token ${this.label} no longer answers in its slot (${callName} returned ${name}): check the HSM; the partition reconnects when it is back`,
          { cause: error },
        );
      }
    }
    if (gone && !this.broken && !this.closed) {
      this.broken = failure;
      this.options.log?.(`token ${this.label} is unavailable (${failure.reason}); reconnecting`);
      this.teardown();
    }
    return failure;
  }

  /** Runs `body` on a pooled session; each session serves one operation at a time. */
  private async withSession<T>(
    body: (pkcs11: Pkcs11Instance, session: Buffer) => T | Promise<T>,
  ): Promise<T> {
    await this.ready();
    const session = this.take() ?? (await new Promise<Buffer>((resolve) => this.waiters.push(resolve)));
    const generation = this.generation;
    try {
      const pkcs11 = this.pkcs11;
      if (!pkcs11) throw this.broken ?? new HsmError('CKR_DEVICE_REMOVED', 'the token is closed');
      return await body(pkcs11, session);
    } finally {
      this.release(session, generation);
    }
  }

  /** Requires a mechanism the token offers; otherwise a refusal naming it. */
  requireMechanism(mechanism: number, purpose: string): void {
    if (this.pkcs11 && !this.mechanisms.has(mechanism)) {
      throw new HsmError(
        'CKR_MECHANISM_INVALID',
        `token ${this.label} does not offer ${MECHANISM_NAMES[mechanism] ?? `mechanism 0x${mechanism.toString(16)}`}, needed for ${purpose}`,
      );
    }
  }

  // --- keys ------------------------------------------------------------------------------------

  /** Every key pair on the token whose type Signet knows, found by CKA_ID. */
  async list(): Promise<TokenKeyEntry[]> {
    return this.withSession((pkcs11, session) => this.listOn(pkcs11, session));
  }

  private listOn(pkcs11: Pkcs11Instance, session: Buffer): TokenKeyEntry[] {
    try {
      const found = findObjects(pkcs11, session, [
        { type: CKA.CLASS, value: u(CKO_PRIVATE_KEY) },
        { type: CKA.TOKEN, value: true },
      ]);
      const entries: TokenKeyEntry[] = [];
      const handles = new Map<string, Handles>();
      for (const priv of found) {
        const entry = describeKey(pkcs11, session, priv);
        if (!entry) continue;
        if (handles.has(entry.id)) {
          this.options.log?.(
            `token ${this.label}: two private keys share CKA_ID ${entry.id}; both are ignored`,
          );
          handles.delete(entry.id);
          continue;
        }
        handles.set(entry.id, { priv, entry });
      }
      for (const h of handles.values()) entries.push(h.entry);
      this.handles = handles;
      return entries;
    } catch (error) {
      throw this.failed('C_FindObjects', error);
    }
  }

  /**
   * Generates a key pair on the token: CKA_TOKEN, CKA_PRIVATE and CKA_SENSITIVE true,
   * CKA_EXTRACTABLE false, and only the usages asked (sign on the private half, verify on the
   * public one; never decrypt, unwrap or derive).
   */
  async create(request: {
    id: string;
    label: string;
    algorithm: KeyAlgorithm;
    usages: KeyUsage[];
  }): Promise<TokenKeyEntry> {
    const { id, label, algorithm } = request;
    const generate = GENERATE_MECHANISM[algorithm];
    await this.ready();
    this.requireMechanism(generate, `${algorithm} keys`);
    return this.oneAtATime(() =>
      this.withSession(async (pkcs11, session) => {
        let existing: Buffer[];
        try {
          existing = findObjects(pkcs11, session, [
            { type: CKA.CLASS, value: u(CKO_PRIVATE_KEY) },
            { type: CKA.LABEL, value: label },
          ]);
        } catch (error) {
          throw this.failed('C_FindObjects', error);
        }
        if (existing.length > 0)
          throw new HsmError(
            'CKR_OBJECT_EXISTS',
            `token ${this.label} already holds a key labelled '${label}'`,
          );
        const { publicTemplate, privateTemplate } = keyPairTemplates(request);
        const generatePair = () =>
          pkcs11.C_GenerateKeyPairAsync(session, { mechanism: generate }, publicTemplate, privateTemplate);
        let pair: Pkcs11Js.KeyPair;
        try {
          pair = await generatePair();
        } catch (error) {
          // Some modules name Edwards curves only by their PrintableString name (PKCS#11 3.0 §2.3.10).
          if (algorithm === 'ed25519' && !isTokenGone(error)) {
            publicTemplate[publicTemplate.length - 1] = { type: CKA.EC_PARAMS, value: ED25519_NAME };
            try {
              pair = await generatePair();
            } catch (second) {
              throw this.failed('C_GenerateKeyPair', second);
            }
          } else throw this.failed('C_GenerateKeyPair', error);
        }
        try {
          const entry = describeKey(pkcs11, session, pair.privateKey);
          if (!entry || entry.id !== id) throw new Error('the generated key does not read back');
          this.handles.set(id, { priv: pair.privateKey, entry });
          return entry;
        } catch (error) {
          for (const object of [pair.privateKey, pair.publicKey]) {
            try {
              pkcs11.C_DestroyObject(session, object);
            } catch {}
          }
          throw this.failed('C_GetAttributeValue', error);
        }
      }),
    );
  }

  private changes: Promise<unknown> = Promise.resolve();

  /**
   * Creates and destroys one at a time: SoftHSM 2.6's file store answered CKR_GENERAL_ERROR to
   * one of six key pairs generated at once on a loaded machine. Keys are created rarely;
   * signatures are not serialised.
   */
  private oneAtATime<T>(body: () => Promise<T>): Promise<T> {
    const run = this.changes.then(body, body);
    this.changes = run.catch(() => {});
    return run;
  }

  /** Destroys both halves of the key with this CKA_ID. */
  async destroy(id: string): Promise<void> {
    await this.oneAtATime(() =>
      this.withSession((pkcs11, session) => {
        try {
          const objects = findObjects(pkcs11, session, [
            { type: CKA.ID, value: Buffer.from(id, 'hex') },
          ]).filter((object) => {
            const cls = readAttributes(pkcs11, session, object, [CKA.CLASS]).get(CKA.CLASS);
            return (
              cls !== undefined && (readUlong(cls) === CKO_PRIVATE_KEY || readUlong(cls) === CKO_PUBLIC_KEY)
            );
          });
          for (const object of objects) pkcs11.C_DestroyObject(session, object);
          this.handles.delete(id);
        } catch (error) {
          throw this.failed('C_DestroyObject', error);
        }
      }),
    );
  }

  /** The private key's handle in this run of the module, found by CKA_ID (on the caller's session). */
  private handleOf(pkcs11: Pkcs11Instance, session: Buffer, id: string): Buffer {
    const known = this.handles.get(id);
    if (known) return known.priv;
    this.listOn(pkcs11, session);
    const found = this.handles.get(id);
    if (!found)
      throw new HsmError('CKR_KEY_HANDLE_INVALID', `token ${this.label} holds no key with CKA_ID ${id}`);
    return found.priv;
  }

  // --- signing ---------------------------------------------------------------------------------

  private mechanismFor(mechanism: SignMechanism, saltLength: number | undefined): Pkcs11Js.Mechanism {
    this.requireMechanism(SIGN_MECHANISM[mechanism], mechanism);
    return mechanismParams(mechanism, saltLength);
  }

  /**
   * One-part signature of `data` (the whole message). ECDSA: the message is hashed here and the
   * digest signed with CKM_ECDSA; the answer is r||s (PKCS#11 v2.40 §2.3.1), IEEE P1363 form.
   */
  async sign(
    id: string,
    algorithm: KeyAlgorithm,
    mechanism: SignMechanism,
    data: Buffer,
    saltLength?: number,
  ): Promise<Uint8Array> {
    await this.ready();
    const mech = this.mechanismFor(mechanism, saltLength);
    const spec = MECHANISM_SPECS[mechanism];
    const input = spec.family === 'ec' ? createHash(spec.hash!).update(data).digest() : data;
    return this.signPrepared(id, algorithm, mech, input);
  }

  private async signPrepared(
    id: string,
    algorithm: KeyAlgorithm,
    mech: Pkcs11Js.Mechanism,
    input: Buffer,
  ): Promise<Uint8Array> {
    const length = signatureLength(algorithm);
    return this.withSession(async (pkcs11, session) => {
      this.signInit(pkcs11, session, mech, id);
      let signature: Buffer;
      try {
        signature = await pkcs11.C_SignAsync(session, input, Buffer.alloc(length));
      } catch (error) {
        throw this.failed('C_Sign', error);
      }
      if (signature.length !== length)
        throw new HsmError(
          'CKR_DEVICE_ERROR',
          `the token returned a signature of ${signature.length} octets`,
        );
      return new Uint8Array(signature);
    });
  }

  /**
   * A multi-part signature. RSA runs C_SignInit / C_SignUpdate / C_SignFinal on a session of its
   * own (held until the end); ECDSA hashes here and signs the digest at the end; Ed25519 gathers
   * the message (pure EdDSA signs it whole).
   */
  async startStream(
    id: string,
    algorithm: KeyAlgorithm,
    mechanism: SignMechanism,
    saltLength?: number,
  ): Promise<TokenSignStream> {
    const pkcs11 = await this.ready();
    const mech = this.mechanismFor(mechanism, saltLength);
    const spec = MECHANISM_SPECS[mechanism];
    const signOnce = (input: Buffer) => this.signPrepared(id, algorithm, mech, input);
    if (spec.family === 'ec') return digestingStream(spec.hash!, signOnce);
    if (spec.family === 'ed25519') return gatheringStream(signOnce);
    let session: Buffer;
    try {
      session = pkcs11.C_OpenSession(this.slot!, CKF_SERIAL_SESSION | CKF_RW_SESSION);
    } catch (error) {
      throw this.failed('C_OpenSession', error);
    }
    const generation = this.generation;
    let open = true;
    const end = () => {
      if (!open) return;
      open = false;
      if (generation !== this.generation) return;
      try {
        pkcs11.C_CloseSession(session);
      } catch {}
    };
    try {
      this.signInit(pkcs11, session, mech, id);
    } catch (error) {
      end();
      throw error;
    }
    return moduleStream(pkcs11, session, signatureLength(algorithm), end, (call, error) =>
      this.failed(call, error),
    );
  }

  /** C_GenerateRandom from the token. */
  async random(length: number): Promise<Uint8Array> {
    return this.withSession((pkcs11, session) => {
      try {
        return new Uint8Array(pkcs11.C_GenerateRandom(session, Buffer.alloc(length)));
      } catch (error) {
        throw this.failed('C_GenerateRandom', error);
      }
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    // Closing the sessions and, for the module's last user, C_Finalize end the login too.
    this.teardown();
  }
}
