import { createPublicKey, type KeyObject, sign, verify } from 'node:crypto';
import type { AuditEvent } from '../store.ts';
import { RAW_SIGN_MECHANISMS, SIGN_MECHANISMS, SIGN_PURPOSES } from '../types.ts';
import { canonicalJson, fromBase64, isRecord, sha256Hex, toBase64 } from './codec.ts';

/**
 * The audit log's record and head formats.
 *
 * audit.log is JSON lines, one record per line in canonical JSON (RFC 8785 style: sorted keys,
 * no whitespace). Each record carries `seq` (1, 2, ...), `prevHash` (the previous record's hash;
 * for seq 1 a genesis value bound to the partition id) and `hash` = SHA-256 over the canonical
 * record without `hash`. Editing, removing or reordering records breaks the chain.
 *
 * A chain alone can be recomputed by whoever edits it, and cut short without trace. So the log's
 * head (seq, hash, byte offset) is signed after each group commit by an Ed25519 key derived from
 * the master key, and written to audit.head; its public key is in partition.json, bound to the
 * sealed master key. `signet hsm audit verify` needs no secret.
 */
export const AUDIT_LOG_FILE = 'audit.log';
export const AUDIT_HEAD_FILE = 'audit.head';

export interface AuditRecord extends AuditEvent {
  seq: number;
  prevHash: string;
  hash: string;
}

export interface AuditHead {
  seq: number;
  hash: string;
  /** Byte offset in audit.log where the record `seq` starts. */
  offset: number;
  time: string;
}

const HASH = /^[0-9a-f]{64}$/;
const KNOWN_MECHANISMS = new Set<string>([...SIGN_MECHANISMS, ...RAW_SIGN_MECHANISMS]);
const OPTIONAL_FIELDS = [
  'user',
  'keyId',
  'keyLabel',
  'purpose',
  'digest',
  'mechanism',
  'length',
  'subject',
  'session',
  'detail',
] as const;

export function genesisHash(partitionId: string): string {
  return sha256Hex(`signet-hsm audit genesis v1:${partitionId}`);
}

/** Only the known fields, so the canonical form and hash are stable whatever the caller passed. */
export function pickEvent(event: AuditEvent): AuditEvent {
  const picked: Record<string, unknown> = { time: event.time, op: event.op, result: event.result };
  for (const field of OPTIONAL_FIELDS) {
    const value = event[field];
    if (value !== undefined) picked[field] = value;
  }
  return picked as unknown as AuditEvent;
}

function text(value: unknown, max: number): boolean {
  return typeof value === 'string' && value.length > 0 && value.length <= max;
}

/** Why an event cannot be recorded, or undefined when it can. */
export function eventProblem(event: AuditEvent): string | undefined {
  if (!isRecord(event)) return 'an audit event must be an object';
  if (!text(event.time, 64)) return 'an audit event needs a time';
  if (!text(event.op, 64)) return 'an audit event needs an op';
  if (!text(event.result, 128)) return 'an audit event needs a result';
  for (const field of ['user', 'keyId', 'keyLabel', 'subject', 'detail'] as const) {
    if (event[field] !== undefined && !text(event[field], 256))
      return `audit event field ${field} is malformed`;
  }
  for (const field of ['length', 'session'] as const) {
    const value = event[field];
    if (value !== undefined && !(Number.isSafeInteger(value) && (value as number) >= 0)) {
      return `audit event field ${field} must be a non-negative integer`;
    }
  }
  if (event.mechanism !== undefined && !KNOWN_MECHANISMS.has(event.mechanism)) {
    return 'audit event field mechanism is not a known mechanism';
  }
  if (event.purpose !== undefined && !(SIGN_PURPOSES as readonly string[]).includes(event.purpose)) {
    return 'audit event field purpose is not a known purpose';
  }
  if (event.digest !== undefined && !(typeof event.digest === 'string' && HASH.test(event.digest))) {
    return 'audit event field digest must be a SHA-256 in lowercase hex';
  }
  return undefined;
}

// Every field a record may carry, in canonical (sorted) order. Records are flat, so serialising
// them field by field in this order is the canonical JSON form (RFC 8785 §3.2.3 sorts members)
// without the cost of a generic serialiser on the signing path; a test holds the two equal.
const RECORD_FIELDS = [
  'detail',
  'digest',
  'hash',
  'keyId',
  'keyLabel',
  'length',
  'mechanism',
  'op',
  'prevHash',
  'purpose',
  'result',
  'seq',
  'session',
  'subject',
  'time',
  'user',
] as const;

function member(field: string, value: string | number): string {
  return `"${field}":${typeof value === 'number' ? String(value) : JSON.stringify(value)}`;
}

function canonicalRecord(record: Partial<AuditRecord>, withHash: boolean): string {
  const members: string[] = [];
  for (const field of RECORD_FIELDS) {
    if (field === 'hash' && !withHash) continue;
    const value = record[field];
    if (value !== undefined) members.push(member(field, value));
  }
  return `{${members.join(',')}}`;
}

export function recordHash(record: Omit<AuditRecord, 'hash'>): string {
  return sha256Hex(canonicalRecord(record, false));
}

/**
 * Chains an event on the signing path: assigns seq and prevHash, and builds in one straight pass
 * both the canonical body that is hashed and the line that is stored (the body with "hash",
 * which sorts after "detail" and "digest" and before every other member). The event must have
 * passed eventProblem. A test holds the result equal to canonicalJson of the record.
 */
export function chainLine(
  event: AuditEvent,
  seq: number,
  prevHash: string,
): { seq: number; hash: string; line: string } {
  const q = JSON.stringify;
  let pre = '';
  if (event.detail !== undefined) pre += `,"detail":${q(event.detail)}`;
  if (event.digest !== undefined) pre += `,"digest":${q(event.digest)}`;
  let post = '';
  if (event.keyId !== undefined) post += `,"keyId":${q(event.keyId)}`;
  if (event.keyLabel !== undefined) post += `,"keyLabel":${q(event.keyLabel)}`;
  if (event.length !== undefined) post += `,"length":${event.length}`;
  if (event.mechanism !== undefined) post += `,"mechanism":${q(event.mechanism)}`;
  post += `,"op":${q(event.op)},"prevHash":"${prevHash}"`;
  if (event.purpose !== undefined) post += `,"purpose":${q(event.purpose)}`;
  post += `,"result":${q(event.result)},"seq":${seq}`;
  if (event.session !== undefined) post += `,"session":${event.session}`;
  if (event.subject !== undefined) post += `,"subject":${q(event.subject)}`;
  post += `,"time":${q(event.time)}`;
  if (event.user !== undefined) post += `,"user":${q(event.user)}`;
  const hash = sha256Hex(`{${(pre + post).slice(1)}}`);
  return { seq, hash, line: `{${pre.slice(1)}${pre ? ',' : ''}"hash":"${hash}"${post}}\n` };
}

/** The chained record as an object (tests, tools); the log itself is written from chainLine. */
export function chainRecord(
  event: AuditEvent,
  seq: number,
  prevHash: string,
): { record: AuditRecord; line: string } {
  const { hash, line } = chainLine(event, seq, prevHash);
  return { record: { ...pickEvent(event), seq, prevHash, hash }, line };
}

export function serializeRecord(record: AuditRecord): string {
  return `${canonicalRecord(record, true)}\n`;
}

/** A parsed record, or why the line is not one. */
export function parseRecord(line: string): AuditRecord | string {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    return 'the line is not JSON';
  }
  if (!isRecord(value)) return 'the line is not a record';
  const allowed = new Set(['time', 'op', 'result', 'seq', 'prevHash', 'hash', ...OPTIONAL_FIELDS]);
  const unknown = Object.keys(value).find((key) => !allowed.has(key));
  if (unknown) return `the record has an unknown field ${unknown}`;
  const record = value as unknown as AuditRecord;
  if (!Number.isSafeInteger(record.seq) || record.seq < 1) return 'the record has no valid seq';
  if (typeof record.prevHash !== 'string' || !HASH.test(record.prevHash))
    return 'the record has no valid prevHash';
  if (typeof record.hash !== 'string' || !HASH.test(record.hash)) return 'the record has no valid hash';
  const problem = eventProblem(record);
  return problem ?? record;
}

// The head file holds two fixed-size slots written alternately in place, so a write torn by a
// crash spoils at most the slot being written; the other still holds the previous signed head.
export const HEAD_SLOT_BYTES = 512;

function headMessage(partitionId: string, head: AuditHead): Buffer {
  return Buffer.from(`signet-hsm audit head v1\n${canonicalJson({ partition: partitionId, ...head })}`);
}

export function encodeHeadSlot(partitionId: string, head: AuditHead, signingKey: KeyObject): Buffer {
  const sig = sign(null, headMessage(partitionId, head), signingKey);
  const text = JSON.stringify({ v: 1, partition: partitionId, ...head, sig: toBase64(sig) });
  const slot = Buffer.alloc(HEAD_SLOT_BYTES, 0x20);
  slot.write(text, 0, 'utf8');
  slot[HEAD_SLOT_BYTES - 1] = 0x0a;
  return slot;
}

export function auditVerifyKey(auditKeySpki: string): KeyObject {
  return createPublicKey({ key: fromBase64(auditKeySpki, 'auditKey'), format: 'der', type: 'spki' });
}

export interface HeadSlots {
  /** The correctly signed head with the highest seq, and the slot holding it. */
  newest?: { slot: number; head: AuditHead };
  /** A slot that holds something other than a correctly signed head (a torn write, or an edit). */
  unreadable?: number;
}

/** Reads audit.head's two slots, checking each signature against the partition's audit key. */
export function readSlots(bytes: Uint8Array, partitionId: string, auditKeySpki: string): HeadSlots {
  const verifyKey = auditVerifyKey(auditKeySpki);
  const result: HeadSlots = {};
  for (let slot = 0; slot < 2; slot++) {
    const raw = Buffer.from(bytes.subarray(slot * HEAD_SLOT_BYTES, (slot + 1) * HEAD_SLOT_BYTES));
    const text = raw.toString('utf8').trim();
    if (text.length === 0 && raw.length === HEAD_SLOT_BYTES) continue;
    const head = parseSlot(text, partitionId, verifyKey);
    if (!head) {
      result.unreadable ??= slot;
      continue;
    }
    if (!result.newest || head.seq > result.newest.head.seq) result.newest = { slot, head };
  }
  if (bytes.length !== 2 * HEAD_SLOT_BYTES && result.unreadable === undefined) result.unreadable = 1;
  return result;
}

function parseSlot(text: string, partitionId: string, verifyKey: KeyObject): AuditHead | undefined {
  try {
    const value: unknown = JSON.parse(text);
    if (!isRecord(value) || value.v !== 1 || value.partition !== partitionId) return undefined;
    const head: AuditHead = {
      seq: value.seq as number,
      hash: value.hash as string,
      offset: value.offset as number,
      time: value.time as string,
    };
    const valid =
      Number.isSafeInteger(head.seq) &&
      head.seq >= 1 &&
      Number.isSafeInteger(head.offset) &&
      head.offset >= 0 &&
      typeof head.hash === 'string' &&
      HASH.test(head.hash) &&
      typeof head.time === 'string';
    if (!valid) return undefined;
    return verify(null, headMessage(partitionId, head), verifyKey, fromBase64(value.sig, 'sig'))
      ? head
      : undefined;
  } catch {
    return undefined;
  }
}
