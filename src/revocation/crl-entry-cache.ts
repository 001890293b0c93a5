/**
 * The encoded entries of the last complete CRL of each issuer shard, kept by the node that made
 * it, so that a revocation does not re-encode (nor re-read) every entry from scratch (issue #28):
 * the next CRL is the cached revokedCertificates with the changed entries spliced in at their
 * place by serial, each new entry encoded once. Only a complete CRL made at its half-life is built
 * from the database again, which also drops the entries past their certificate's expiry (RFC 5280
 * §3.3; keeping them a little longer in between is allowed).
 *
 * The cache belongs to one CRL number: a CRL saved by another node (or an imported one) has
 * another number, and the next CRL is built from the database.
 */
import { normalizeSerial } from '../lib/serial.ts';
import { type CrlEntry, encodeCrlEntry } from '../x509/crl-encoder.ts';
import { readChildrenOf, readTlvAt, TAG } from '../x509/der.ts';

export interface CachedEntries {
  /** The CRL these entries were read from. */
  crlNumber: bigint;
  /** The issuer certificate they were built under (a new certificate starts over). */
  certificate: Uint8Array;
  /** Entries read from the database no later than this: changes after it are spliced in. */
  readAt: Date;
  /** The revokedCertificates contents: DER entries, by serial as the database orders them. */
  region: Uint8Array;
  /** Where each entry starts in `region`. */
  offsets: Int32Array;
}

/** Pre-encoded entries for the CRL encoder, with the changed ones (for the linter). */
export interface SplicedEntries {
  parts: Uint8Array[];
  length: number;
  count: number;
  changed: CrlEntry[];
}

/** The revokedCertificates contents of a signed CRL (a view into `der`), empty if it lists none. */
export function revokedRegion(der: Uint8Array): Uint8Array {
  const crl = readTlvAt(der);
  const tbs = readTlvAt(der, crl.contentStart, crl.end);
  // version, signature, issuer, thisUpdate, nextUpdate?, revokedCertificates?, [0] extensions
  const fields = readChildrenOf(der, tbs);
  let index = 4;
  if (fields[index]?.tag === TAG.UTC_TIME || fields[index]?.tag === TAG.GENERALIZED_TIME) index += 1;
  const revoked = fields[index];
  if (!revoked || revoked.tag !== TAG.SEQUENCE) return new Uint8Array(0);
  return der.subarray(revoked.contentStart, revoked.end);
}

/** The offsets of the entries of a region (each a short-form SEQUENCE, as the encoder writes). */
function offsetsOf(region: Uint8Array): Int32Array | undefined {
  const offsets: number[] = [];
  for (let offset = 0; offset < region.byteLength; ) {
    // The encoder writes every entry with a one-octet length (at most 80 octets): anything else
    // was not written by it and is not cached.
    if (region[offset] !== TAG.SEQUENCE || region[offset + 1]! >= 0x80) return undefined;
    offsets.push(offset);
    offset += 2 + region[offset + 1]!;
  }
  return Int32Array.from(offsets);
}

/**
 * Whether the entries are in strictly increasing serial order (hex text order is the order of the
 * serial octets). The database lists them by serial under its collation, which for hex digits is
 * byte order in C and the usual locales; if it were not, splicing by binary search could list a
 * serial twice, so such a CRL is not cached.
 */
function sortedBySerial(region: Uint8Array, offsets: Int32Array): boolean {
  const bytes = Buffer.from(region.buffer, region.byteOffset, region.byteLength);
  let previousStart = -1;
  let previousEnd = -1;
  for (const offset of offsets) {
    // SEQUENCE header (2 octets), then INTEGER tag and short length: the serial's content.
    const start = offset + 4;
    const end = start + bytes[offset + 3]!;
    // compare() answers 1 when the previous serial sorts before this one.
    if (previousStart >= 0 && bytes.compare(bytes, previousStart, previousEnd, start, end) !== 1)
      return false;
    previousStart = start;
    previousEnd = end;
  }
  return true;
}

export function cacheEntries(crl: {
  crlNumber: bigint;
  certificate: Uint8Array;
  readAt: Date;
  der: Uint8Array;
}): CachedEntries | undefined {
  const region = revokedRegion(crl.der);
  const offsets = offsetsOf(region);
  if (!offsets || !sortedBySerial(region, offsets)) return undefined;
  return {
    crlNumber: crl.crlNumber,
    certificate: crl.certificate,
    readAt: crl.readAt,
    region,
    offsets,
  };
}

/** The serial (canonical hex) of the entry at `offset`. */
function serialAt(region: Uint8Array, offset: number): string {
  const entry = readTlvAt(region, offset);
  const serial = readTlvAt(region, entry.contentStart, entry.end);
  return Buffer.from(
    region.buffer,
    region.byteOffset + serial.contentStart,
    serial.end - serial.contentStart,
  ).toString('hex');
}

/** The index of the first cached entry whose serial is not below `serial` (database order). */
function lowerBound(cache: CachedEntries, serial: string): number {
  let low = 0;
  let high = cache.offsets.length;
  while (low < high) {
    const middle = (low + high) >>> 1;
    if (serialAt(cache.region, cache.offsets[middle]!) < serial) low = middle + 1;
    else high = middle;
  }
  return low;
}

/**
 * The cached entries with `changes` spliced in: a changed serial already listed is replaced (a
 * reason moved to keyCompromise), a new one inserted at its place. Nothing is copied: the parts
 * are views into the cache and the new entries' own encodings.
 */
export function spliceEntries(cache: CachedEntries, changes: readonly CrlEntry[]): SplicedEntries {
  const bySerial = new Map<string, CrlEntry>();
  for (const change of changes) bySerial.set(normalizeSerial(change.serial), change);
  const sorted = [...bySerial.keys()].sort();
  const parts: Uint8Array[] = [];
  let length = 0;
  let count = cache.offsets.length;
  let from = 0;
  const end = (index: number) =>
    index < cache.offsets.length ? cache.offsets[index]! : cache.region.byteLength;
  const push = (part: Uint8Array) => {
    if (part.byteLength === 0) return;
    parts.push(part);
    length += part.byteLength;
  };
  for (const serial of sorted) {
    const at = lowerBound(cache, serial);
    const replaces = at < cache.offsets.length && serialAt(cache.region, cache.offsets[at]!) === serial;
    push(cache.region.subarray(end(from), end(at)));
    push(encodeCrlEntry(bySerial.get(serial)!, serial));
    from = replaces ? at + 1 : at;
    if (!replaces) count += 1;
  }
  push(cache.region.subarray(end(from)));
  return { parts, length, count, changed: [...bySerial.values()] };
}
