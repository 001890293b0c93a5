/**
 * The one CRL encoder (RFC 5280 §5), pure: the online CRL writer (src/revocation) and the offline
 * ceremony both build their TBSCertList here and sign it their own way. Entries are written by
 * hand into large buffers as their pages arrive (a hundred thousand of them must encode in well
 * under a second, which the generic schema serializer cannot do: about 30 µs per entry); the IDP
 * and AKI values use @peculiar/asn1-x509.
 */

import { AsnConvert, OctetString } from '@peculiar/asn1-schema';
import {
  AuthorityKeyIdentifier,
  DistributionPoint,
  DistributionPointName,
  Extension,
  GeneralName,
  IssuingDistributionPoint,
  id_ce_authorityKeyIdentifier,
  id_ce_issuingDistributionPoint,
  KeyIdentifier,
} from '@peculiar/asn1-x509';
import { wholeSeconds } from '../lib/clock.ts';
import { REASON_CODES, type RevocationReason } from '../lib/revocation-reasons.ts';
import { normalizeSerial } from '../lib/serial.ts';
import { concat, contextTag, header, integerFromBigInt, TAG, time, tlv } from './der.ts';
import type { IssuerIdentity } from './issuer.ts';

/** RFC 5280 §5.2.3: a CRL number is at most 20 octets. */
export const CRL_NUMBER_MAX = (1n << 159n) - 1n;

/** One revoked certificate as a CRL lists it (RFC 5280 §5.1.2.6, §5.3). */
export interface CrlEntry {
  /** Canonical or user-written serial (normalized here). */
  serial: string;
  /** When the CA processed the revocation: the entry's revocationDate. */
  revokedAt: Date;
  reason: RevocationReason;
  /** When the key is known or suspected to have been compromised (RFC 5280 §5.3.2). */
  invalidityDate?: Date | null | undefined;
}

/**
 * Entries arrive one by one or in pages (a database cursor: the certificates repository's
 * `streamRevokedForCrl`), so a large CRL never holds its rows in memory at once, only their DER.
 */
export type CrlEntrySource =
  | AsyncIterable<CrlEntry | readonly CrlEntry[]>
  | Iterable<CrlEntry | readonly CrlEntry[]>;

/**
 * RFC 5280 §5.2.5, for partitioned CRLs (shards, CA-only CRLs). A CRL that carries it must be
 * found at one of these URIs, and the certificates it covers must name the same point.
 */
export interface IssuingDistributionPointOptions {
  uris?: string[];
  onlyContainsUserCerts?: boolean;
  onlyContainsCACerts?: boolean;
}

export interface CrlTbsInput {
  /** Whose CRL: its exact subject Name and key identifier (for the AKI, RFC 5280 §5.2.1). */
  issuer: Pick<IssuerIdentity, 'subject' | 'subjectKeyIdentifier'>;
  /** The AlgorithmIdentifier (DER) the signer will use, written into the TBS. */
  signatureAlgorithm: Uint8Array;
  number: bigint;
  thisUpdate: Date;
  nextUpdate: Date;
  entries?: CrlEntrySource;
  /**
   * Instead of `entries`: revokedCertificates elements already encoded (by this encoder, for an
   * earlier CRL: src/revocation/crl-entry-cache.ts), in pieces whose concatenation is the list.
   */
  encodedEntries?: { parts: Uint8Array[]; length: number; count: number };
  issuingDistributionPoint?: IssuingDistributionPointOptions;
  /**
   * Makes this a delta CRL (RFC 5280 §5.2.4): the critical Delta CRL Indicator names the number
   * of the complete CRL it updates (its BaseCRLNumber).
   */
  baseCrlNumber?: bigint;
  /** RFC 5280 §5.2.6 Freshest CRL: where the delta CRLs of this complete CRL are. */
  freshestCrlUris?: string[];
}

export interface CrlTbs {
  tbs: Uint8Array;
  /** Whole seconds, as encoded. */
  thisUpdate: Date;
  nextUpdate: Date;
  entryCount: number;
}

const OID_CRL_REASON = Uint8Array.of(0x06, 0x03, 0x55, 0x1d, 0x15);
const OID_INVALIDITY_DATE = Uint8Array.of(0x06, 0x03, 0x55, 0x1d, 0x18);
const OID_CRL_NUMBER = Uint8Array.of(0x06, 0x03, 0x55, 0x1d, 0x14);
const OID_DELTA_CRL_INDICATOR = Uint8Array.of(0x06, 0x03, 0x55, 0x1d, 0x1b);
const OID_FRESHEST_CRL = Uint8Array.of(0x06, 0x03, 0x55, 0x1d, 0x2e);
const CRITICAL = Uint8Array.of(TAG.BOOLEAN, 0x01, 0xff);
/** version v2 (RFC 5280 §5.1.2.1: required when extensions are present). */
const VERSION_V2 = Uint8Array.of(TAG.INTEGER, 0x01, 0x01);

/**
 * The reasonCode extension per reason. RFC 5280 §5.3.1: "the reason code CRL entry extension
 * SHOULD be absent instead of using the unspecified (0) reasonCode value", so unspecified has none.
 */
const REASON_EXTENSION = new Map<RevocationReason, Uint8Array | undefined>(
  (Object.entries(REASON_CODES) as [RevocationReason, number][]).map(([reason, code]) => [
    reason,
    code === 0
      ? undefined
      : tlv(TAG.SEQUENCE, OID_CRL_REASON, tlv(TAG.OCTET_STRING, Uint8Array.of(TAG.ENUMERATED, 1, code))),
  ]),
);

/** invalidityDate extension up to its GeneralizedTime digits: SEQUENCE { OID, OCTET STRING { GeneralizedTime } }. */
const INVALIDITY_PREFIX = Uint8Array.of(
  0x30,
  0x18,
  ...OID_INVALIDITY_DATE,
  0x04,
  0x11,
  TAG.GENERALIZED_TIME,
  0x0f,
);
const WRITER_CHUNK = 256 * 1024;

/**
 * Writes revokedCertificates elements straight into large buffers, by hand: this runs once per
 * revoked certificate, and building small arrays per field left a 100 000-entry CRL mostly in the
 * garbage collector (the schema serializer costs about 30 µs per entry). An entry never straddles
 * two buffers. A test holds the bytes to @peculiar/asn1-x509's RevokedCertificate encoding.
 */
class EntryWriter {
  readonly chunks: Buffer[] = [];
  private buffer = Buffer.allocUnsafe(WRITER_CHUNK);
  private offset = 0;
  length = 0;
  count = 0;

  write(entry: CrlEntry, serial: string): void {
    const revokedAt = entry.revokedAt;
    if (!(revokedAt instanceof Date) || Number.isNaN(revokedAt.getTime())) {
      throw new Error(`CRL entry ${serial}: invalid revocation date`);
    }
    if (!REASON_EXTENSION.has(entry.reason)) {
      throw new Error(`CRL entry ${serial}: unsupported reason ${String(entry.reason)}`);
    }
    const reasonExtension = REASON_EXTENSION.get(entry.reason);
    const invalidity = entry.invalidityDate ?? undefined;
    if (invalidity !== undefined && (!(invalidity instanceof Date) || Number.isNaN(invalidity.getTime()))) {
      throw new Error(`CRL entry ${serial}: invalid invalidity date`);
    }
    const serialLength = serial.length / 2;
    // RFC 5280 §5.1.2.6: revocationDate is a Time (UTCTime 1950 through 2049).
    const year = revokedAt.getUTCFullYear();
    const utc = year >= 1950 && year <= 2049;
    const timeLength = utc ? 13 : 15;
    const extensionsLength =
      (reasonExtension?.byteLength ?? 0) + (invalidity ? INVALIDITY_PREFIX.byteLength + 15 : 0);
    // At most 23 + 17 + 2 + 38 octets: every length here has the short form.
    const contentLength =
      2 + serialLength + 2 + timeLength + (extensionsLength > 0 ? 2 + extensionsLength : 0);
    this.room(2 + contentLength);
    const b = this.buffer;
    let o = this.offset;
    b[o++] = TAG.SEQUENCE;
    b[o++] = contentLength;
    b[o++] = TAG.INTEGER;
    b[o++] = serialLength;
    o += b.write(serial, o, 'hex');
    b[o++] = utc ? TAG.UTC_TIME : TAG.GENERALIZED_TIME;
    b[o++] = timeLength;
    o = writeTimeDigits(b, o, revokedAt, !utc);
    if (extensionsLength > 0) {
      b[o++] = TAG.SEQUENCE;
      b[o++] = extensionsLength;
      if (reasonExtension) {
        b.set(reasonExtension, o);
        o += reasonExtension.byteLength;
      }
      if (invalidity) {
        // RFC 5280 §5.3.2: GeneralizedTime, whatever the year.
        b.set(INVALIDITY_PREFIX, o);
        o = writeTimeDigits(b, o + INVALIDITY_PREFIX.byteLength, invalidity, true);
      }
    }
    this.length += o - this.offset;
    this.offset = o;
    this.count += 1;
  }

  private room(n: number): void {
    if (this.offset + n <= this.buffer.byteLength) return;
    if (this.offset > 0) this.chunks.push(this.buffer.subarray(0, this.offset));
    this.buffer = Buffer.allocUnsafe(Math.max(WRITER_CHUNK, n));
    this.offset = 0;
  }

  finish(): Buffer[] {
    if (this.offset > 0) this.chunks.push(this.buffer.subarray(0, this.offset));
    this.buffer = Buffer.alloc(0);
    this.offset = 0;
    return this.chunks;
  }

  /** The serials written so far, read back from the DER (only for sources that are not sorted). */
  serials(): Set<string> {
    const out = new Set<string>();
    for (const chunk of [...this.chunks, this.buffer.subarray(0, this.offset)]) {
      for (let o = 0; o < chunk.byteLength; o += 2 + chunk[o + 1]!) {
        out.add(chunk.toString('hex', o + 4, o + 4 + chunk[o + 3]!));
      }
    }
    return out;
  }
}

/** YYMMDDHHMMSSZ or YYYYMMDDHHMMSSZ of a date, whole seconds (milliseconds dropped). */
function writeTimeDigits(b: Buffer, offset: number, date: Date, fourDigitYear: boolean): number {
  const year = date.getUTCFullYear();
  if (year < 0 || year > 9999) throw new RangeError('a CRL time must fall in years 0 to 9999');
  let o = offset;
  const two = (n: number) => {
    b[o++] = 0x30 + Math.floor(n / 10);
    b[o++] = 0x30 + (n % 10);
  };
  if (fourDigitYear) two(Math.floor(year / 100));
  two(year % 100);
  two(date.getUTCMonth() + 1);
  two(date.getUTCDate());
  two(date.getUTCHours());
  two(date.getUTCMinutes());
  two(date.getUTCSeconds());
  b[o++] = 0x5a; // Z
  return o;
}

/** The DER of one revokedCertificates element (what buildCrl writes for `entry`). */
export function encodeCrlEntry(entry: CrlEntry, canonicalSerial = normalizeSerial(entry.serial)): Uint8Array {
  const writer = new EntryWriter();
  writer.write(entry, canonicalSerial);
  return new Uint8Array(Buffer.concat(writer.finish()));
}

/** CRLDistributionPoints ::= SEQUENCE OF DistributionPoint, one point with these fullName URIs. */
function distributionPoints(uris: string[]): Uint8Array {
  const value = new DistributionPoint({
    distributionPoint: new DistributionPointName({
      fullName: uris.map((uri) => new GeneralName({ uniformResourceIdentifier: uri })),
    }),
  });
  return tlv(TAG.SEQUENCE, new Uint8Array(AsnConvert.serialize(value)));
}

interface ExtensionInput {
  number: bigint;
  idp?: IssuingDistributionPointOptions | undefined;
  baseCrlNumber?: bigint | undefined;
  freshestCrlUris?: string[] | undefined;
}

function crlExtensions(keyIdentifier: Uint8Array, input: ExtensionInput): Uint8Array {
  const { number, idp } = input;
  const aki = new Extension({
    extnID: id_ce_authorityKeyIdentifier,
    critical: false,
    extnValue: new OctetString(
      AsnConvert.serialize(new AuthorityKeyIdentifier({ keyIdentifier: new KeyIdentifier(keyIdentifier) })),
    ),
  });
  const parts = [
    new Uint8Array(AsnConvert.serialize(aki)),
    // RFC 5280 §5.2.3: non-critical, a monotonically increasing INTEGER of at most 20 octets.
    tlv(TAG.SEQUENCE, OID_CRL_NUMBER, tlv(TAG.OCTET_STRING, integerFromBigInt(number))),
  ];
  if (idp) {
    if (idp.onlyContainsCACerts && idp.onlyContainsUserCerts) {
      throw new Error(
        'an issuing distribution point covers user or CA certificates, not both (RFC 5280 §5.2.5)',
      );
    }
    const value = new IssuingDistributionPoint({
      onlyContainsUserCerts: idp.onlyContainsUserCerts ?? false,
      onlyContainsCACerts: idp.onlyContainsCACerts ?? false,
    });
    if (idp.uris && idp.uris.length > 0) {
      value.distributionPoint = new DistributionPointName({
        fullName: idp.uris.map((uri) => new GeneralName({ uniformResourceIdentifier: uri })),
      });
    }
    // RFC 5280 §5.2.5: "this extension MUST be critical".
    const extension = new Extension({
      extnID: id_ce_issuingDistributionPoint,
      critical: true,
      extnValue: new OctetString(AsnConvert.serialize(value)),
    });
    parts.push(new Uint8Array(AsnConvert.serialize(extension)));
  }
  if (input.baseCrlNumber !== undefined) {
    if (input.baseCrlNumber < 0n || input.baseCrlNumber >= number) {
      throw new RangeError('a delta CRL updates a complete CRL with a lower number (RFC 5280 §5.2.4)');
    }
    if (input.freshestCrlUris?.length)
      throw new Error('a delta CRL carries no Freshest CRL (RFC 5280 §5.2.6)');
    // RFC 5280 §5.2.4: "This extension MUST be marked critical"; BaseCRLNumber ::= CRLNumber.
    parts.push(
      tlv(
        TAG.SEQUENCE,
        OID_DELTA_CRL_INDICATOR,
        CRITICAL,
        tlv(TAG.OCTET_STRING, integerFromBigInt(input.baseCrlNumber)),
      ),
    );
  }
  if (input.freshestCrlUris?.length) {
    // RFC 5280 §5.2.6: "MUST be marked as non-critical by conforming CRL issuers".
    parts.push(
      tlv(TAG.SEQUENCE, OID_FRESHEST_CRL, tlv(TAG.OCTET_STRING, distributionPoints(input.freshestCrlUris))),
    );
  }
  // crlExtensions [0] EXPLICIT Extensions.
  return tlv(contextTag(0, true), tlv(TAG.SEQUENCE, ...parts));
}

async function* pagesOf(entries: CrlEntrySource | undefined): AsyncIterable<readonly CrlEntry[]> {
  if (entries === undefined) return;
  for await (const item of entries)
    yield Array.isArray(item) ? (item as readonly CrlEntry[]) : [item as CrlEntry];
}

/**
 * A full CRL's TBSCertList (RFC 5280 §5.1): v2, the issuer's exact subject, thisUpdate and
 * nextUpdate in whole seconds, entries with reasonCode and invalidityDate (each serial once), AKI
 * and CRL Number, and optionally a critical issuing distribution point.
 */
export async function encodeCrlTbs(input: CrlTbsInput): Promise<CrlTbs> {
  const { parts, ...rest } = await encodeCrlTbsParts(input);
  return { tbs: concat(parts), ...rest };
}

export interface CrlTbsParts extends Omit<CrlTbs, 'tbs'> {
  /** The TBSCertList's DER in pieces (the entries as written, not copied): concatenated, the TBS. */
  parts: Uint8Array[];
  /** Their total length. */
  length: number;
}

/**
 * The TBSCertList as pieces, so that a large CRL is copied once, into the buffer that will hold
 * the signed CRL (crl-builder.ts), rather than concatenated and then wrapped again.
 */
export async function encodeCrlTbsParts(input: CrlTbsInput): Promise<CrlTbsParts> {
  const thisUpdate = wholeSeconds(input.thisUpdate);
  const nextUpdate = wholeSeconds(input.nextUpdate);
  if (!(nextUpdate.getTime() > thisUpdate.getTime()))
    throw new Error('nextUpdate must be later than thisUpdate');
  if (input.number < 0n || input.number > CRL_NUMBER_MAX) throw new RangeError('CRL number out of range');
  let entryChunks: Uint8Array[];
  let entriesLength: number;
  let entryCount: number;
  if (input.encodedEntries) {
    if (input.entries !== undefined) throw new Error('entries or encodedEntries, not both');
    ({ parts: entryChunks, length: entriesLength, count: entryCount } = input.encodedEntries);
  } else {
    const writer = await writeEntries(input.entries);
    entryChunks = writer.finish();
    entriesLength = writer.length;
    entryCount = writer.count;
  }
  const before = [
    VERSION_V2,
    input.signatureAlgorithm,
    input.issuer.subject,
    time(thisUpdate),
    time(nextUpdate),
  ];
  // RFC 5280 §5.1.2.6: with no revoked certificates the list MUST be absent, not empty.
  const revoked = entryCount > 0 ? [header(TAG.SEQUENCE, entriesLength), ...entryChunks] : [];
  const extensions = crlExtensions(input.issuer.subjectKeyIdentifier, {
    number: input.number,
    idp: input.issuingDistributionPoint,
    baseCrlNumber: input.baseCrlNumber,
    freshestCrlUris: input.freshestCrlUris,
  });
  const body = [...before, ...revoked, extensions];
  let bodyLength = 0;
  for (const part of body) bodyLength += part.byteLength;
  const head = header(TAG.SEQUENCE, bodyLength);
  return {
    parts: [head, ...body],
    length: head.byteLength + bodyLength,
    thisUpdate,
    nextUpdate,
    entryCount,
  };
}

async function writeEntries(entries: CrlEntrySource | undefined): Promise<EntryWriter> {
  const writer = new EntryWriter();
  // Each serial once: a duplicate means the source is wrong, and RFC 5280 readers may reject it.
  // The database streams entries in serial order, where comparing neighbours is enough; a source
  // out of order switches to a set of every serial (read back from what was written).
  let previous: string | undefined;
  let seen: Set<string> | undefined;
  for await (const page of pagesOf(entries)) {
    for (const entry of page) {
      const serial = normalizeSerial(entry.serial);
      if (seen === undefined && previous !== undefined && serial <= previous) {
        if (serial === previous) throw new Error(`CRL entry ${serial} appears twice`);
        seen = writer.serials();
      }
      if (seen) {
        if (seen.has(serial)) throw new Error(`CRL entry ${serial} appears twice`);
        seen.add(serial);
      }
      previous = serial;
      writer.write(entry, serial);
    }
  }
  return writer;
}
