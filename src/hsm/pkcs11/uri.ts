import { HsmError } from '../types.ts';

/**
 * RFC 7512 PKCS#11 URIs naming a key on a token: `pkcs11:token=L;object=LABEL;id=%01%02`.
 * Path attributes are separated by `;` (§2.3); values are percent-encoded UTF-8 (labels) or
 * octets (`id`, CKA_ID). A key store accepts `token`, `object`, `id` and `type` (which must be
 * `private`, the signing half); library, slot and manufacturer attributes are accepted when the
 * config spells them, and must match nothing here: the partition is bound to one token already.
 * Query attributes (`?pin-value=...`) are refused: a secret never travels in a key's name.
 */
export interface Pkcs11Uri {
  token?: string;
  object?: string;
  /** CKA_ID as lowercase hexadecimal. */
  id?: string;
}

const bad = (message: string) => new HsmError('CKR_ARGUMENTS_BAD', message);

/** RFC 7512 §2.3: pchar minus ';', plus percent-encoded octets. */
const ALLOWED_PATH = new Set(['token', 'object', 'id', 'type', 'manufacturer', 'model', 'serial']);
const IGNORED = new Set([
  'manufacturer',
  'model',
  'serial',
  'library-manufacturer',
  'library-description',
  'library-version',
  'slot-manufacturer',
  'slot-description',
  'slot-id',
]);

function decode(value: string, what: string): Buffer {
  if (!/^(?:[A-Za-z0-9\-._~!$&'()*+,=:@]|%[0-9A-Fa-f]{2})*$/.test(value)) {
    throw bad(`pkcs11 URI ${what} has characters that must be percent-encoded (RFC 7512 §2.3)`);
  }
  const bytes: number[] = [];
  for (let i = 0; i < value.length; i++) {
    if (value[i] === '%') {
      bytes.push(Number.parseInt(value.slice(i + 1, i + 3), 16));
      i += 2;
    } else bytes.push(value.charCodeAt(i));
  }
  return Buffer.from(bytes);
}

export function isPkcs11Uri(uri: unknown): uri is string {
  return typeof uri === 'string' && uri.slice(0, 7).toLowerCase() === 'pkcs11:';
}

/** Parses a `pkcs11:` key URI; anything malformed or ambiguous is CKR_ARGUMENTS_BAD. */
export function parsePkcs11Uri(uri: string): Pkcs11Uri {
  if (!isPkcs11Uri(uri)) throw bad('a PKCS#11 key URI starts with pkcs11:');
  if (uri.length > 1024) throw bad('key URI is too long');
  const rest = uri.slice(7);
  if (rest.includes('?'))
    throw bad('pkcs11 URI query attributes (pin-value, module-path...) are not accepted');
  const result: Pkcs11Uri = {};
  const seen = new Set<string>();
  for (const part of rest.split(';')) {
    if (part === '') continue;
    const eq = part.indexOf('=');
    if (eq <= 0) throw bad(`pkcs11 URI attribute '${part}' is not name=value`);
    const name = part.slice(0, eq).toLowerCase();
    const value = part.slice(eq + 1);
    if (seen.has(name)) throw bad(`pkcs11 URI repeats '${name}'`);
    seen.add(name);
    if (IGNORED.has(name)) {
      decode(value, name);
      continue;
    }
    if (!ALLOWED_PATH.has(name)) throw bad(`pkcs11 URI has unknown attribute '${name}'`);
    const bytes = decode(value, name);
    switch (name) {
      case 'token':
        result.token = bytes.toString('utf8');
        break;
      case 'object':
        result.object = bytes.toString('utf8');
        break;
      case 'id':
        if (bytes.length === 0 || bytes.length > 32) throw bad('pkcs11 URI id is 1 to 32 octets');
        result.id = bytes.toString('hex');
        break;
      case 'type':
        if (value !== 'private') throw bad("pkcs11 URI type of a signing key is 'private'");
        break;
    }
  }
  if (result.object === undefined && result.id === undefined) throw bad('pkcs11 URI names no object or id');
  return result;
}

/** RFC 7512 percent-encoding of a label: unreserved characters stay, everything else is %XX. */
function encodeLabel(value: string): string {
  return [...Buffer.from(value, 'utf8')]
    .map((b) => {
      const c = String.fromCharCode(b);
      return /[A-Za-z0-9\-._~]/.test(c) ? c : `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
    })
    .join('');
}

/** The URI of a key: `pkcs11:token=TOKEN;object=LABEL` (labels are unique in a partition). */
export function formatPkcs11Uri(token: string, label: string, id?: string): string {
  const idPart = id === undefined ? '' : `;id=${id.replace(/(..)/g, '%$1')}`;
  return `pkcs11:token=${encodeLabel(token)};object=${encodeLabel(label)}${idPart}`;
}
