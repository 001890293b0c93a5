import { createHash } from 'node:crypto';
import type { EmulatedPartition, PartitionSession } from '../partition.ts';
import type { StoredCertificate } from '../store.ts';
import {
  type HsmError,
  isHsmError,
  type KeyInfo,
  type RawSignRequest,
  type SignMechanism,
} from '../types.ts';
import { listCertificates } from './certificates.ts';
import { P11Error } from './errors.ts';
import {
  HandleTable,
  isExposed,
  isSensitive,
  matches,
  type ObjectKind,
  type ObjectRef,
  objectAttributes,
} from './objects.ts';
import { CKF, CKR, CKS, CKU } from './pkcs11.ts';
import type { Attribute, AttributeRequest, RpcWriter } from './wire.ts';

/**
 * One p11-kit client (one connection, one application in PKCS#11's terms) and what it sees: one
 * slot holding one token, the partition. Its PKCS#11 sessions share one partition session, so
 * logging in on one logs in all (PKCS#11 v2.40 §5.5), with the partition's own roles, lockout
 * and audit: C_Login(CKU_USER) is the partition user named by `--p11-user`, C_Login(CKU_SO) the
 * officer.
 */

export interface P11TokenOptions {
  partition: EmulatedPartition;
  /** The partition user C_Login(CKU_USER) logs in as. Default 'ca'. */
  user?: string;
  /** The partition user C_Login(CKU_SO) logs in as. Default 'officer'. */
  officer?: string;
}

/** The one slot's id. */
export const SLOT_ID = 1;
/** PKCS#11 sessions one connection may hold open. */
const MAX_SESSIONS = 64;

/** What the partition is asked for when a signature operation finishes (signing.ts). */
export type Plan =
  | { kind: 'hashed'; mechanism: SignMechanism }
  | { kind: 'raw'; mechanism: RawSignRequest['mechanism']; pss?: RawSignRequest['pss'] };

export interface SignOperation {
  keyId: string;
  plan: Plan;
  /** Octets of the signature, reported to a caller that asks for the size first. */
  signatureLength: number;
  /** Set once C_SignUpdate is used: the operation then ends with C_SignFinal. */
  parts?: Buffer[];
  length: number;
}

export interface Session {
  handle: number;
  rw: boolean;
  /** Handles C_FindObjects has yet to return, while a search is active. */
  found?: number[];
  sign?: SignOperation;
}

/** An object the caller may see, with what it is made of. */
export interface VisibleObject extends ObjectRef {
  info: KeyInfo;
  certificate: StoredCertificate | undefined;
}

export class P11Token {
  readonly partition: EmulatedPartition;
  readonly session: PartitionSession;
  readonly handles = new HandleTable();
  readonly userName: string;
  readonly officerName: string;
  private initialized = false;
  private readonly sessions = new Map<number, Session>();
  private nextSession = 1;
  /** Who the connection is logged in as, in PKCS#11 terms. */
  loginType: 'user' | 'so' | undefined;

  constructor(options: P11TokenOptions) {
    this.partition = options.partition;
    this.userName = options.user ?? 'ca';
    this.officerName = options.officer ?? 'officer';
    this.session = options.partition.openSession();
  }

  async close(): Promise<void> {
    await this.session.close();
  }

  // --- library, slot, token ----------------------------------------------------------------

  initialize(): void {
    if (this.initialized) throw new P11Error(CKR.CRYPTOKI_ALREADY_INITIALIZED);
    this.initialized = true;
  }

  async finalize(): Promise<void> {
    this.requireInitialized();
    await this.closeAllSessions();
    this.initialized = false;
  }

  requireInitialized(): void {
    if (!this.initialized) throw new P11Error(CKR.CRYPTOKI_NOT_INITIALIZED);
  }

  get present(): boolean {
    return this.partition.state === 'unsealed';
  }

  requireSlot(slot: number): void {
    this.requireInitialized();
    if (slot !== SLOT_ID) throw new P11Error(CKR.SLOT_ID_INVALID);
  }

  requireToken(slot: number): void {
    this.requireSlot(slot);
    if (!this.present) throw new P11Error(CKR.TOKEN_NOT_PRESENT, 'the partition is sealed');
  }

  writeInfo(w: RpcWriter): void {
    w.version(2, 40)
      .spaceString('Signet', 32)
      .ulong(0)
      .spaceString('Signet partition (p11-kit RPC)', 32)
      .version(1, 0);
  }

  writeSlotInfo(w: RpcWriter): void {
    w.spaceString(`Signet partition ${this.partition.name}`, 64)
      .spaceString('Signet', 32)
      .ulong((this.present ? CKF.TOKEN_PRESENT : 0) | CKF.HW_SLOT)
      .version(1, 0)
      .version(1, 0);
  }

  async writeTokenInfo(w: RpcWriter): Promise<void> {
    const record = await this.partition
      .requireStore()
      .getUser(this.userName)
      .catch(() => undefined);
    const flags =
      CKF.RNG |
      CKF.LOGIN_REQUIRED |
      CKF.USER_PIN_INITIALIZED |
      CKF.TOKEN_INITIALIZED |
      (record?.locked ? CKF.USER_PIN_LOCKED : 0);
    const serial = createHash('sha256').update(this.partition.name).digest('hex').slice(0, 16);
    const unavailable = 0xffff_ffff_ffff_ffffn;
    w.spaceString(this.partition.name, 32)
      .spaceString('Signet', 32)
      .spaceString('emulated', 16)
      .spaceString(serial, 16)
      .ulong(flags)
      .ulong(0) // ulMaxSessionCount: CK_EFFECTIVELY_INFINITE
      .ulong(unavailable)
      .ulong(0)
      .ulong(unavailable)
      .ulong(256) // ulMaxPinLen: the partition's own limit, in octets
      .ulong(this.partition.options.minPinLength ?? 8)
      .ulong(unavailable)
      .ulong(unavailable)
      .ulong(unavailable)
      .ulong(unavailable)
      .version(1, 0)
      .version(1, 0)
      .spaceString('', 16); // utcTime: no CKF_CLOCK_ON_TOKEN
  }

  // --- sessions ------------------------------------------------------------------------------

  openSession(slot: number, flags: number): number {
    this.requireToken(slot);
    if (!(flags & CKF.SERIAL_SESSION)) throw new P11Error(CKR.SESSION_PARALLEL_NOT_SUPPORTED);
    const rw = (flags & CKF.RW_SESSION) !== 0;
    if (!rw && this.loginType === 'so') throw new P11Error(CKR.SESSION_READ_WRITE_SO_EXISTS);
    if (this.sessions.size >= MAX_SESSIONS) throw new P11Error(CKR.SESSION_COUNT);
    const handle = this.nextSession++;
    this.sessions.set(handle, { handle, rw });
    return handle;
  }

  sessionOf(handle: number): Session {
    this.requireInitialized();
    const session = this.sessions.get(handle);
    if (!session) throw new P11Error(CKR.SESSION_HANDLE_INVALID);
    return session;
  }

  async closeSession(handle: number): Promise<void> {
    this.sessionOf(handle);
    this.sessions.delete(handle);
    // Closing the application's last session logs it out (PKCS#11 v2.40 §5.6, C_CloseSession).
    if (this.sessions.size === 0) await this.dropLogin();
  }

  async closeAllSessions(): Promise<void> {
    this.sessions.clear();
    await this.dropLogin();
  }

  sessionState(session: Session): number {
    if (this.loginType === 'so') return CKS.RW_SO_FUNCTIONS;
    if (this.loginType === 'user') return session.rw ? CKS.RW_USER_FUNCTIONS : CKS.RO_USER_FUNCTIONS;
    return session.rw ? CKS.RW_PUBLIC_SESSION : CKS.RO_PUBLIC_SESSION;
  }

  // --- login ---------------------------------------------------------------------------------

  async login(userType: number, pin: Buffer | undefined): Promise<void> {
    const wanted = userType === CKU.SO ? 'so' : userType === CKU.USER ? 'user' : undefined;
    if (userType === CKU.CONTEXT_SPECIFIC) throw new P11Error(CKR.OPERATION_NOT_INITIALIZED);
    if (!wanted) throw new P11Error(CKR.USER_TYPE_INVALID);
    if (this.loginType) {
      throw new P11Error(
        this.loginType === wanted ? CKR.USER_ALREADY_LOGGED_IN : CKR.USER_ANOTHER_ALREADY_LOGGED_IN,
      );
    }
    if (wanted === 'so' && [...this.sessions.values()].some((s) => !s.rw)) {
      throw new P11Error(CKR.SESSION_READ_ONLY_EXISTS);
    }
    // No protected authentication path: a PIN must come with the call.
    if (!pin) throw new P11Error(CKR.ARGUMENTS_BAD, 'no PIN');
    if (pin.length > 256) throw new P11Error(CKR.PIN_LEN_RANGE);
    const name = wanted === 'so' ? this.officerName : this.userName;
    // A PIN that is not UTF-8 is decoded lossily: it can never match, and it counts as a failure.
    // One line end is dropped, as Signet's own PIN files are read: libp11 reads `pin-source`
    // files with BIO_gets, line end included, and a PIN file written with echo would otherwise
    // lock the user out one nginx start at a time.
    const text = pin.toString('utf8').replace(/\r?\n$/, '');
    const { role } = await this.session.login({ user: name, pin: text });
    if (role !== (wanted === 'so' ? 'officer' : 'user')) {
      await this.session.logout();
      throw new P11Error(CKR.USER_TYPE_INVALID, `partition user ${name} is not a crypto ${wanted}`);
    }
    this.loginType = wanted;
  }

  async logout(): Promise<void> {
    if (!this.loginType) throw new P11Error(CKR.USER_NOT_LOGGED_IN);
    await this.dropLogin();
  }

  private async dropLogin(): Promise<void> {
    for (const session of this.sessions.values()) {
      session.sign = undefined;
      session.found = undefined;
    }
    if (!this.loginType) return;
    this.loginType = undefined;
    await this.session.logout().catch(() => {});
  }

  // --- objects -------------------------------------------------------------------------------

  private async certificates(): Promise<Map<string, StoredCertificate>> {
    return new Map((await listCertificates(this.partition)).map((c) => [c.keyId, c]));
  }

  /** The object behind a handle if the caller may see it (private keys only once logged in as the user). */
  async visible(handle: number): Promise<VisibleObject | undefined> {
    const ref = this.handles.resolve(handle);
    if (!ref) return undefined;
    return this.visibleRef(ref, undefined);
  }

  private async visibleRef(
    ref: ObjectRef,
    certificates: Map<string, StoredCertificate> | undefined,
  ): Promise<VisibleObject | undefined> {
    const key = this.partition.lookup({ id: ref.keyId });
    if (!key || !isExposed(key.info)) return undefined;
    if (ref.kind === 'private' && this.loginType !== 'user') return undefined;
    const certificate = (certificates ?? (await this.certificates())).get(ref.keyId);
    if (ref.kind === 'certificate' && !certificate) return undefined;
    return { ...ref, info: key.info, certificate };
  }

  /** Gives every object of the partition its handle, exposed or not, in the partition's order. */
  private async allObjects(): Promise<{
    refs: { handle: number; ref: ObjectRef }[];
    certificates: Map<string, StoredCertificate>;
  }> {
    const certificates = await this.certificates();
    const refs: { handle: number; ref: ObjectRef }[] = [];
    for (const info of this.partition.listKeys()) {
      const kinds: ObjectKind[] = [
        'private',
        'public',
        ...(certificates.has(info.id) ? ['certificate' as const] : []),
      ];
      for (const kind of kinds)
        refs.push({ handle: this.handles.handleOf(info.id, kind), ref: { keyId: info.id, kind } });
    }
    return { refs, certificates };
  }

  /** A handle the caller names, looking at the partition again when it is not known yet. */
  async resolve(handle: number): Promise<ObjectRef | undefined> {
    if (!this.handles.resolve(handle)) await this.allObjects();
    return this.handles.resolve(handle);
  }

  async findInit(session: Session, template: readonly Attribute[]): Promise<void> {
    if (session.found) throw new P11Error(CKR.OPERATION_ACTIVE);
    const { refs, certificates } = await this.allObjects();
    const found: number[] = [];
    for (const { handle, ref } of refs) {
      const object = await this.visibleRef(ref, certificates);
      if (object && matches(objectAttributes(ref.kind, object.info, object.certificate), template)) {
        found.push(handle);
      }
    }
    session.found = found;
  }

  find(session: Session, max: number): number[] {
    if (!session.found) throw new P11Error(CKR.OPERATION_NOT_INITIALIZED);
    return session.found.splice(0, max);
  }

  findFinal(session: Session): void {
    if (!session.found) throw new P11Error(CKR.OPERATION_NOT_INITIALIZED);
    session.found = undefined;
  }

  /**
   * C_GetAttributeValue (§5.7): each attribute answered with its value, its size (the caller gave
   * no room) or as unavailable, and one return value for the whole call. Asking a private key for
   * its secret parts is refused (CKR_ATTRIBUTE_SENSITIVE) and recorded in the audit log.
   */
  async writeAttributes(handle: number, requests: readonly AttributeRequest[], w: RpcWriter): Promise<void> {
    const object = await this.visible(handle);
    if (!object) throw new P11Error(CKR.OBJECT_HANDLE_INVALID);
    const attributes = objectAttributes(object.kind, object.info, object.certificate);
    let sensitive = false;
    let invalid = false;
    let small = false;
    w.u32(requests.length);
    for (const { type, length } of requests) {
      const value = attributes.get(type);
      if (value === undefined) {
        if (isSensitive(object.kind, type)) sensitive = true;
        else invalid = true;
        w.attribute(type, undefined);
      } else if (length === 0) {
        w.attribute(type, value, true);
      } else if (length < value.length) {
        small = true;
        w.attribute(type, undefined);
      } else {
        w.attribute(type, value);
      }
    }
    if (sensitive) await this.recordSensitiveRead(object);
    w.ulong(
      sensitive
        ? CKR.ATTRIBUTE_SENSITIVE
        : invalid
          ? CKR.ATTRIBUTE_TYPE_INVALID
          : small
            ? CKR.BUFFER_TOO_SMALL
            : CKR.OK,
    );
  }

  /** The partition's own refusal to release a key (exportKey), so the attempt is audited. */
  private async recordSensitiveRead(object: VisibleObject): Promise<void> {
    try {
      await this.session.exportKey({ id: object.keyId });
    } catch (error) {
      if (!isHsmError(error)) throw error;
    }
  }

  /** Records a refusal in the partition's audit log under `op`, naming the key, and throws it. */
  async refuse(op: string, keyId: string | undefined, error: HsmError): Promise<never> {
    return this.session.perform(
      op,
      'public',
      (event) => {
        if (keyId) {
          event.keyId = keyId;
          const key = this.partition.lookup({ id: keyId });
          if (key) event.keyLabel = key.info.label;
        }
        throw error;
      },
      { whenSealed: true },
    );
  }
}
