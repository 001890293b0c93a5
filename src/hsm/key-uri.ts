import { isPkcs11Uri, parsePkcs11Uri } from './pkcs11/uri.ts';
import { HsmError, type KeyManager, type KeyRef } from './types.ts';

/**
 * Names inside the emulated partition and its key URIs, `hsm:partition=NAME;label=LABEL` or
 * `hsm:partition=NAME;id=HEX` (DESIGN.md "Key and algorithm names"). The grammar is kept narrow
 * on purpose: attribute values are drawn from character sets that need no percent-encoding
 * (unlike RFC 7512 `pkcs11:` URIs), so one key has exactly one spelling.
 */
export const PARTITION_NAME = /^[a-z0-9][a-z0-9-]{0,31}$/;
/** PKCS#11 labels are free UTF-8 (CKA_LABEL); ours stay URI-safe and at most 64 characters. */
export const KEY_LABEL = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
/** CKA_ID as lowercase hexadecimal, 1 to 32 octets. */
export const KEY_ID = /^(?:[0-9a-f]{2}){1,32}$/;
export const USER_NAME = /^[a-z0-9][a-z0-9._-]{0,31}$/;

export interface ParsedKeyUri {
  partition: string;
  label?: string;
  id?: string;
}

const bad = (message: string) => new HsmError('CKR_ARGUMENTS_BAD', message);

/** Parses `hsm:partition=NAME;label=LABEL` (or `;id=HEX`, or both); anything else is CKR_ARGUMENTS_BAD. */
export function parseKeyUri(uri: string): ParsedKeyUri {
  if (typeof uri !== 'string' || !uri.startsWith('hsm:')) throw bad('a key URI starts with hsm:');
  if (uri.length > 256) throw bad('key URI is too long');
  const attributes = new Map<string, string>();
  for (const part of uri.slice(4).split(';')) {
    const eq = part.indexOf('=');
    if (eq <= 0) throw bad(`key URI attribute '${part}' is not name=value`);
    const name = part.slice(0, eq);
    const value = part.slice(eq + 1);
    if (attributes.has(name)) throw bad(`key URI repeats '${name}'`);
    attributes.set(name, value);
  }
  const result: ParsedKeyUri = { partition: '' };
  for (const [name, value] of attributes) {
    switch (name) {
      case 'partition':
        if (!PARTITION_NAME.test(value)) throw bad('key URI partition is not a partition name');
        result.partition = value;
        break;
      case 'label':
        if (!KEY_LABEL.test(value)) throw bad('key URI label is not a key label');
        result.label = value;
        break;
      case 'id':
        if (!KEY_ID.test(value)) throw bad('key URI id is not lowercase hexadecimal');
        result.id = value;
        break;
      default:
        throw bad(`key URI has unknown attribute '${name}'`);
    }
  }
  if (!result.partition) throw bad('key URI names no partition');
  if (result.label === undefined && result.id === undefined) throw bad('key URI names no label or id');
  return result;
}

export function formatKeyUri(partition: string, label: string): string {
  return `hsm:partition=${partition};label=${label}`;
}

/** Checks that a KeyRef names a key exactly one way, with well-formed values. */
export function checkKeyRef(ref: KeyRef): void {
  if (typeof ref !== 'object' || ref === null) throw bad('key reference must be an object');
  const given = [ref.uri, ref.label, ref.id].filter((v) => v !== undefined).length;
  if (given !== 1) throw bad('name a key by exactly one of uri, label or id');
  if (ref.label !== undefined && (typeof ref.label !== 'string' || !KEY_LABEL.test(ref.label))) {
    throw bad('label must match [A-Za-z0-9][A-Za-z0-9._-]{0,63}');
  }
  if (ref.id !== undefined && (typeof ref.id !== 'string' || !KEY_ID.test(ref.id))) {
    throw bad('id must be lowercase hexadecimal');
  }
  if (ref.uri !== undefined) {
    if (isPkcs11Uri(ref.uri)) parsePkcs11Uri(ref.uri);
    else parseKeyUri(ref.uri);
  }
}

/**
 * The partition a key URI belongs to. `hsm:` URIs name it; an RFC 7512 `pkcs11:` URI names a
 * token, which `tokens` maps to the partition that keeps its keys on it (see tokenPartitions).
 * A `pkcs11:` URI without `token=` belongs to the only PKCS#11 partition, if there is one.
 * Undefined when no partition matches; CKR_ARGUMENTS_BAD for a malformed URI.
 */
export function partitionOfKeyUri(uri: string, tokens: ReadonlyMap<string, string>): string | undefined {
  if (!isPkcs11Uri(uri)) return parseKeyUri(uri).partition;
  const { token } = parsePkcs11Uri(uri);
  if (token !== undefined) return tokens.get(token);
  return tokens.size === 1 ? [...tokens.values()][0] : undefined;
}

/** Token label -> partition name, for the partitions that keep their keys on a PKCS#11 token. */
export async function tokenPartitions(
  partitions: ReadonlyMap<string, Pick<KeyManager, 'status'>>,
): Promise<Map<string, string>> {
  const tokens = new Map<string, string>();
  for (const [name, partition] of partitions) {
    const status = await partition.status().catch(() => undefined);
    if (status?.token) tokens.set(status.token.label, name);
  }
  return tokens;
}
