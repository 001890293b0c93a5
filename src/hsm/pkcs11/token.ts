import { createHash, createPublicKey, type Hash } from 'node:crypto';
import { createRequire } from 'node:module';
import type * as Pkcs11Js from 'pkcs11js';
import { KEY_ALGORITHM_SPECS, MECHANISM_SPECS } from '../mechanisms.ts';
import { CKA, CKG, CKK, CKO, CKM as FRONT_END_CKM } from '../p11/pkcs11.ts';
import type { TokenKeyEntry, TokenKeys, TokenSignStream } from '../token-keys.ts';
import { HsmError, type KeyAlgorithm, type KeyUsage, type SignMechanism } from '../types.ts';
import { isTokenGone, moduleError, moduleReturnValue, returnValueName } from './errors.ts';
import { formatPkcs11Uri, parsePkcs11Uri } from './uri.ts';

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
 */

// PKCS#11 v2.40 numbers (pkcs11t.h), shared with the p11-kit front end, plus what only a
// module client needs: the PSS and EdDSA mechanisms and Edwards keys (PKCS#11 3.0).
const CKO_PUBLIC_KEY = CKO.PUBLIC_KEY;
const CKO_PRIVATE_KEY = CKO.PRIVATE_KEY;
const CKK_RSA = CKK.RSA;
const CKK_EC = CKK.EC;
const CKK_EC_EDWARDS = 0x40;
export const CKM = {
  ...FRONT_END_CKM,
  SHA256_RSA_PKCS_PSS: 0x43,
  SHA384_RSA_PKCS_PSS: 0x44,
  SHA512_RSA_PKCS_PSS: 0x45,
  EC_EDWARDS_KEY_PAIR_GEN: 0x1055,
  EDDSA: 0x1057,
} as const;
const MECHANISM_NAMES: Record<number, string> = Object.fromEntries(
  Object.entries(CKM).map(([name, value]) => [value, `CKM_${name}`]),
);
const CKG_MGF1 = { sha256: CKG.MGF1_SHA256, sha384: CKG.MGF1_SHA384, sha512: CKG.MGF1_SHA512 } as const;
const CKU_USER = 1;
const CKF_RW_SESSION = 2;
const CKF_SERIAL_SESSION = 4;
const CK_PARAMS_RSA_PSS = 5;
const CKF_OS_LOCKING_OK = 2;

/** DER OIDs for CKA_EC_PARAMS (RFC 5480 §2.1.1.1, RFC 8410 §3). */
const EC_PARAMS = {
  'ecdsa-p256': Buffer.from('06082a8648ce3d030107', 'hex'),
  'ecdsa-p384': Buffer.from('06052b81040022', 'hex'),
  ed25519: Buffer.from('06032b6570', 'hex'),
} as const;
/** PKCS#11 3.0 also allows the curve's name as a PrintableString for Edwards curves. */
const ED25519_NAME = Buffer.from('130c656477617264733235353139', 'hex');

/** Which key-pair generation and signing mechanisms each operation needs. */
const GENERATE_MECHANISM: Record<KeyAlgorithm, number> = {
  'ecdsa-p256': CKM.EC_KEY_PAIR_GEN,
  'ecdsa-p384': CKM.EC_KEY_PAIR_GEN,
  'rsa-2048': CKM.RSA_PKCS_KEY_PAIR_GEN,
  'rsa-3072': CKM.RSA_PKCS_KEY_PAIR_GEN,
  'rsa-4096': CKM.RSA_PKCS_KEY_PAIR_GEN,
  ed25519: CKM.EC_EDWARDS_KEY_PAIR_GEN,
};
const SIGN_MECHANISM: Record<SignMechanism, number> = {
  'ecdsa-sha256': CKM.ECDSA,
  'ecdsa-sha384': CKM.ECDSA,
  'rsa-pkcs1-sha256': CKM.SHA256_RSA_PKCS,
  'rsa-pkcs1-sha384': CKM.SHA384_RSA_PKCS,
  'rsa-pkcs1-sha512': CKM.SHA512_RSA_PKCS,
  'rsa-pss-sha256': CKM.SHA256_RSA_PKCS_PSS,
  'rsa-pss-sha384': CKM.SHA384_RSA_PKCS_PSS,
  'rsa-pss-sha512': CKM.SHA512_RSA_PKCS_PSS,
  ed25519: CKM.EDDSA,
};
const HASH_MECHANISM = { sha256: CKM.SHA256, sha384: CKM.SHA384, sha512: CKM.SHA512 } as const;

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

type Pkcs11Module = typeof Pkcs11Js;

let binding: Pkcs11Module | undefined;
/** pkcs11js is a native addon: loaded only by a partition that uses a token. */
function loadBinding(): Pkcs11Module {
  if (!binding) {
    try {
      binding = createRequire(import.meta.url)('pkcs11js') as Pkcs11Module;
    } catch (error) {
      throw new HsmError(
        'CKR_DEVICE_ERROR',
        'the PKCS#11 binding (pkcs11js) cannot be loaded: reinstall with its native build (npm ci)',
        { cause: error },
      );
    }
  }
  return binding;
}

const u = (n: number) => n;
const readUlong = (buffer: Buffer): number =>
  buffer.length >= 8 ? Number(buffer.readBigUInt64LE(0)) : buffer.readUInt32LE(0);
const readBool = (buffer: Buffer): boolean => buffer.length > 0 && buffer[0] !== 0;
const b64url = (buffer: Buffer) => buffer.toString('base64url');

/** CKA_EC_POINT is a DER OCTET STRING around the point (PKCS#11 v2.40 §2.3.3); some modules give the bare point. */
function unwrapPoint(value: Buffer, pointLength: number): Buffer {
  if (value.length === pointLength) return value;
  if (value[0] === 0x04) {
    const short = value[1]! < 0x80;
    const offset = short ? 2 : 2 + (value[1]! & 0x7f);
    const inner = value.subarray(offset);
    if (inner.length === pointLength) return inner;
  }
  throw new HsmError('CKR_DEVICE_ERROR', 'the token returned an EC point of an unexpected form');
}

function spkiOf(algorithm: KeyAlgorithm, attrs: Map<number, Buffer>): Buffer {
  let jwk: Record<string, string>;
  if (algorithm === 'ed25519') {
    jwk = { kty: 'OKP', crv: 'Ed25519', x: b64url(unwrapPoint(attrs.get(CKA.EC_POINT)!, 32)) };
  } else if (algorithm.startsWith('ecdsa')) {
    const size = algorithm === 'ecdsa-p256' ? 32 : 48;
    const point = unwrapPoint(attrs.get(CKA.EC_POINT)!, 1 + 2 * size);
    if (point[0] !== 0x04) throw new HsmError('CKR_DEVICE_ERROR', 'the token returned a compressed EC point');
    jwk = {
      kty: 'EC',
      crv: algorithm === 'ecdsa-p256' ? 'P-256' : 'P-384',
      x: b64url(point.subarray(1, 1 + size)),
      y: b64url(point.subarray(1 + size)),
    };
  } else {
    jwk = { kty: 'RSA', n: b64url(attrs.get(CKA.MODULUS)!), e: b64url(attrs.get(CKA.PUBLIC_EXPONENT)!) };
  }
  return createPublicKey({ key: jwk, format: 'jwk' }).export({ format: 'der', type: 'spki' });
}

function algorithmOf(keyType: number, attrs: Map<number, Buffer>): KeyAlgorithm | undefined {
  if (keyType === CKK_EC_EDWARDS) return 'ed25519';
  if (keyType === CKK_EC) {
    const params = attrs.get(CKA.EC_PARAMS);
    if (params?.equals(EC_PARAMS['ecdsa-p256'])) return 'ecdsa-p256';
    if (params?.equals(EC_PARAMS['ecdsa-p384'])) return 'ecdsa-p384';
    return undefined;
  }
  if (keyType === CKK_RSA) {
    const bits = (attrs.get(CKA.MODULUS)?.length ?? 0) * 8;
    return (['rsa-2048', 'rsa-3072', 'rsa-4096'] as const).find((a) => a === `rsa-${bits}`);
  }
  return undefined;
}

const spaces = (s: string) => s.replace(/\s+$/, '');

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
      const slots = call('C_GetSlotList', () => pkcs11.C_GetSlotList(true));
      let slot: Buffer | undefined;
      let slotLabel = '';
      const seen: string[] = [];
      for (const candidate of slots) {
        const info = call('C_GetTokenInfo', () => pkcs11.C_GetTokenInfo(candidate));
        const label = spaces(info.label);
        const id = slotNumber(candidate);
        seen.push(`${label} (slot ${id})`);
        const matches =
          this.options.tokenLabel !== undefined
            ? label === this.options.tokenLabel &&
              (this.options.slotId === undefined || id === this.options.slotId)
            : id === this.options.slotId;
        if (!matches) continue;
        if (slot) {
          throw new HsmError(
            'CKR_ARGUMENTS_BAD',
            `two tokens are labelled '${this.options.tokenLabel}': choose one with --slot-id`,
          );
        }
        slot = candidate;
        slotLabel = label;
      }
      if (!slot) {
        throw new HsmError(
          'CKR_DEVICE_REMOVED',
          `CKR_TOKEN_NOT_PRESENT: no token ${this.options.tokenLabel !== undefined ? `labelled '${this.options.tokenLabel}'` : `in slot ${this.options.slotId}`} in ${this.options.module} (tokens present: ${seen.join(', ') || 'none'}); check the label and that the HSM is reachable`,
        );
      }
      const mechanisms = new Set(call('C_GetMechanismList', () => pkcs11.C_GetMechanismList(slot!)));
      for (const m of this.options.excludeMechanisms ?? []) mechanisms.delete(m);
      const sessions: Buffer[] = [];
      const count = Math.max(1, Math.min(this.options.sessions ?? 4, 64));
      for (let i = 0; i < count; i++) {
        sessions.push(
          call('C_OpenSession', () => pkcs11.C_OpenSession(slot!, CKF_SERIAL_SESSION | CKF_RW_SESSION)),
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
      const found = this.find(pkcs11, session, [
        { type: CKA.CLASS, value: u(CKO_PRIVATE_KEY) },
        { type: CKA.TOKEN, value: true },
      ]);
      const entries: TokenKeyEntry[] = [];
      const handles = new Map<string, Handles>();
      for (const priv of found) {
        const entry = this.describeKey(pkcs11, session, priv);
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

  private find(pkcs11: Pkcs11Instance, session: Buffer, template: Pkcs11Js.Template): Buffer[] {
    pkcs11.C_FindObjectsInit(session, template);
    try {
      const all: Buffer[] = [];
      for (;;) {
        const batch = pkcs11.C_FindObjects(session, 64);
        all.push(...batch);
        if (batch.length < 64) return all;
      }
    } finally {
      pkcs11.C_FindObjectsFinal(session);
    }
  }

  private attributes(
    pkcs11: Pkcs11Instance,
    session: Buffer,
    object: Buffer,
    types: number[],
  ): Map<number, Buffer> {
    const result = new Map<number, Buffer>();
    // One call per attribute: a module answers CKR_ATTRIBUTE_TYPE_INVALID for a whole template
    // when one attribute does not apply to the object.
    for (const type of types) {
      try {
        const [attr] = pkcs11.C_GetAttributeValue(session, object, [{ type }]);
        if (attr?.value) result.set(type, attr.value as Buffer);
      } catch (error) {
        if (isTokenGone(error)) throw error;
      }
    }
    return result;
  }

  private describeKey(pkcs11: Pkcs11Instance, session: Buffer, priv: Buffer): TokenKeyEntry | undefined {
    const attrs = this.attributes(pkcs11, session, priv, [
      CKA.ID,
      CKA.LABEL,
      CKA.KEY_TYPE,
      CKA.SIGN,
      CKA.EXTRACTABLE,
      CKA.EC_PARAMS,
      CKA.MODULUS,
      CKA.PUBLIC_EXPONENT,
    ]);
    const id = attrs.get(CKA.ID);
    const keyType = attrs.get(CKA.KEY_TYPE);
    if (!id || id.length === 0 || id.length > 32 || !keyType) return undefined;
    // The public half gives the point (EC) or is the only place it is readable.
    const [pub] = this.find(pkcs11, session, [
      { type: CKA.CLASS, value: u(CKO_PUBLIC_KEY) },
      { type: CKA.ID, value: id },
    ]);
    if (pub) {
      for (const [type, value] of this.attributes(pkcs11, session, pub, [
        CKA.EC_PARAMS,
        CKA.EC_POINT,
        CKA.MODULUS,
        CKA.PUBLIC_EXPONENT,
      ]))
        attrs.set(type, value);
    }
    const algorithm = algorithmOf(readUlong(keyType), attrs);
    if (!algorithm) return undefined;
    if (algorithm !== 'ed25519' && !algorithm.startsWith('rsa') && !attrs.has(CKA.EC_POINT)) return undefined;
    if (algorithm === 'ed25519' && !attrs.has(CKA.EC_POINT)) return undefined;
    if (algorithm.startsWith('rsa') && !(attrs.has(CKA.MODULUS) && attrs.has(CKA.PUBLIC_EXPONENT)))
      return undefined;
    const sign = attrs.has(CKA.SIGN) && readBool(attrs.get(CKA.SIGN)!);
    return {
      id: id.toString('hex'),
      label: attrs.get(CKA.LABEL)?.toString('utf8') ?? '',
      algorithm,
      usages: sign ? ['sign', 'verify'] : ['verify'],
      extractable: attrs.has(CKA.EXTRACTABLE) && readBool(attrs.get(CKA.EXTRACTABLE)!),
      publicKey: spkiOf(algorithm, attrs),
    };
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
    const { id, label, algorithm, usages } = request;
    const generate = GENERATE_MECHANISM[algorithm];
    await this.ready();
    this.requireMechanism(generate, `${algorithm} keys`);
    return this.oneAtATime(() =>
      this.withSession(async (pkcs11, session) => {
        let existing: Buffer[];
        try {
          existing = this.find(pkcs11, session, [
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
        const idBytes = Buffer.from(id, 'hex');
        const common = [
          { type: CKA.TOKEN, value: true },
          { type: CKA.LABEL, value: label },
          { type: CKA.ID, value: idBytes },
        ];
        const publicTemplate: Pkcs11Js.Template = [
          ...common,
          { type: CKA.CLASS, value: u(CKO_PUBLIC_KEY) },
          { type: CKA.PRIVATE, value: false },
          { type: CKA.VERIFY, value: true },
          { type: CKA.ENCRYPT, value: false },
          { type: CKA.WRAP, value: false },
        ];
        const privateTemplate: Pkcs11Js.Template = [
          ...common,
          { type: CKA.CLASS, value: u(CKO_PRIVATE_KEY) },
          { type: CKA.PRIVATE, value: true },
          { type: CKA.SENSITIVE, value: true },
          { type: CKA.EXTRACTABLE, value: false },
          { type: CKA.SIGN, value: usages.includes('sign') },
          { type: CKA.DECRYPT, value: false },
          { type: CKA.UNWRAP, value: false },
        ];
        const spec = KEY_ALGORITHM_SPECS[algorithm].generate;
        if (spec.type === 'rsa') {
          publicTemplate.push(
            { type: CKA.MODULUS_BITS, value: u(spec.modulusLength) },
            { type: CKA.PUBLIC_EXPONENT, value: Buffer.from([1, 0, 1]) },
          );
        } else {
          publicTemplate.push({ type: CKA.EC_PARAMS, value: EC_PARAMS[algorithm as keyof typeof EC_PARAMS] });
          privateTemplate.push({ type: CKA.DERIVE, value: false });
        }
        let pair: Pkcs11Js.KeyPair;
        try {
          pair = await pkcs11.C_GenerateKeyPairAsync(
            session,
            { mechanism: generate },
            publicTemplate,
            privateTemplate,
          );
        } catch (error) {
          // Some modules name Edwards curves only by their PrintableString name (PKCS#11 3.0 §2.3.10).
          if (algorithm === 'ed25519' && !isTokenGone(error)) {
            publicTemplate[publicTemplate.length - 1] = { type: CKA.EC_PARAMS, value: ED25519_NAME };
            try {
              pair = await pkcs11.C_GenerateKeyPairAsync(
                session,
                { mechanism: generate },
                publicTemplate,
                privateTemplate,
              );
            } catch (second) {
              throw this.failed('C_GenerateKeyPair', second);
            }
          } else throw this.failed('C_GenerateKeyPair', error);
        }
        try {
          const entry = this.describeKey(pkcs11, session, pair.privateKey);
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
          const objects = this.find(pkcs11, session, [
            { type: CKA.ID, value: Buffer.from(id, 'hex') },
          ]).filter((object) => {
            const cls = this.attributes(pkcs11, session, object, [CKA.CLASS]).get(CKA.CLASS);
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
    const type = SIGN_MECHANISM[mechanism];
    this.requireMechanism(type, mechanism);
    const spec = MECHANISM_SPECS[mechanism];
    if (spec.padding !== 'pss') return { mechanism: type };
    const hash = spec.hash as 'sha256' | 'sha384' | 'sha512';
    return {
      mechanism: type,
      parameter: {
        type: CK_PARAMS_RSA_PSS,
        hashAlg: HASH_MECHANISM[hash],
        mgf: CKG_MGF1[hash],
        saltLen: saltLength ?? spec.hashLength,
      } as Pkcs11Js.RsaPSS,
    };
  }

  private static signatureLength(algorithm: KeyAlgorithm): number {
    const spec = KEY_ALGORITHM_SPECS[algorithm].generate;
    if (spec.type === 'rsa') return spec.modulusLength / 8;
    if (spec.type === 'ec') return spec.namedCurve === 'P-256' ? 64 : 96;
    return 64;
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
    const length = Pkcs11Token.signatureLength(algorithm);
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
    if (spec.family === 'ec') {
      const hash: Hash = createHash(spec.hash!);
      return {
        update: (chunk) => void hash.update(chunk),
        final: () => this.signPrepared(id, algorithm, mech, hash.digest()),
        cancel: () => {},
      };
    }
    if (spec.family === 'ed25519') {
      const parts: Buffer[] = [];
      return {
        update: (chunk) => void parts.push(Buffer.from(chunk)),
        final: () => this.signPrepared(id, algorithm, mech, Buffer.concat(parts)),
        cancel: () => {
          parts.length = 0;
        },
      };
    }
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
    const length = Pkcs11Token.signatureLength(algorithm);
    return {
      update: (chunk) => {
        try {
          pkcs11.C_SignUpdate(session, chunk);
        } catch (error) {
          end();
          throw this.failed('C_SignUpdate', error);
        }
      },
      final: async () => {
        try {
          return new Uint8Array(await pkcs11.C_SignFinalAsync(session, Buffer.alloc(length)));
        } catch (error) {
          throw this.failed('C_SignFinal', error);
        } finally {
          end();
        }
      },
      cancel: end,
    };
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

type Pkcs11Instance = InstanceType<Pkcs11Module['PKCS11']>;

/**
 * One loaded, initialised module per path for the whole process: PKCS#11 allows one
 * C_Initialize per application, and two tokens of one module (a root token and an issuing token)
 * share it. The last user's release finalises it, so a module that lost its device starts afresh.
 */
const modules = new Map<string, { pkcs11: Pkcs11Instance; users: number }>();

function acquireModule(path: string): Pkcs11Instance {
  const known = modules.get(path);
  if (known) {
    known.users++;
    return known.pkcs11;
  }
  const p = loadBinding();
  const pkcs11 = new p.PKCS11();
  try {
    pkcs11.load(path);
  } catch (error) {
    throw new HsmError(
      'CKR_DEVICE_ERROR',
      `cannot load the PKCS#11 module ${path}: check the path and that it matches this machine`,
      { cause: error },
    );
  }
  try {
    // CKF_OS_LOCKING_OK: the *Async calls run on libuv's threads, so the module must lock
    // (with NULL arguments a module may assume one thread, and SoftHSM then crashes).
    pkcs11.C_Initialize({ flags: CKF_OS_LOCKING_OK });
  } catch (error) {
    if (returnValueName(moduleReturnValue(error) ?? -1) !== 'CKR_CRYPTOKI_ALREADY_INITIALIZED') {
      try {
        pkcs11.close();
      } catch {}
      throw moduleError('C_Initialize', error);
    }
  }
  modules.set(path, { pkcs11, users: 1 });
  return pkcs11;
}

function releaseModule(path: string): void {
  const known = modules.get(path);
  if (!known || --known.users > 0) return;
  modules.delete(path);
  try {
    known.pkcs11.C_Finalize();
  } catch {}
  try {
    known.pkcs11.close();
  } catch {}
}

function call<T>(name: string, body: () => T): T {
  try {
    return body();
  } catch (error) {
    throw moduleError(name, error);
  }
}

/** A slot handle (CK_SLOT_ID as the binding's little-endian buffer) as a number. */
function slotNumber(slot: Buffer): number {
  return slot.length >= 8 ? Number(slot.readBigUInt64LE(0)) : slot.readUInt32LE(0);
}
