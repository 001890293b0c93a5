import { createHash } from 'node:crypto';
import { parseKeyUri } from '../hsm/key-uri.ts';
import { isPkcs11Uri, parsePkcs11Uri } from '../hsm/pkcs11/uri.ts';
import type { Clock } from '../lib/clock.ts';
import { AppError } from '../lib/errors.ts';
import { CrlReadError, checkCrlSignature, isSelfIssued, type ReadCrl, readCrl } from '../x509/crl.ts';

/**
 * Publishing a CRL signed elsewhere (issue #18). A root is offline by design: its CRLs are made by
 * the `crl` ceremony (or, the first one, by `signet init` while the dev root partition is open) and
 * the online CA serves them as they are, at the URL its intermediates name, with the same caching
 * headers as its own CRLs. It never re-signs them.
 *
 * An import is refused, with a stable code, when the CRL is not a complete v2 CRL this CA can
 * serve (`crl.malformed`), is not signed by that issuer's certificate (`crl.signature_invalid`),
 * does not raise the CRL number served (`crl.number_not_increasing`, RFC 5280 §5.2.3), has
 * already passed its nextUpdate (`crl.expired`) or starts in the future (`crl.not_yet_valid`:
 * relying parties would refuse it), or is for an issuer whose CRLs this CA signs itself
 * (`crl.issuer_signs_online`: its scheduler would replace it).
 */

/** An issuer as an import needs it. */
export interface CrlImportIssuer {
  id: string;
  certificateDer: Uint8Array;
  /** The online CA signs this issuer's CRLs (crlsSignedOnline). */
  signsCrlsOnline: boolean;
}

/** Where imported CRLs go: the crls repository of src/db. */
export interface CrlImportStore {
  getLatestInfo(issuerId: string, shard: number, kind: 'full'): Promise<{ crlNumber: bigint } | null>;
  saveImported(crl: {
    issuerId: string;
    shard: number;
    crlNumber: bigint;
    thisUpdate: Date;
    nextUpdate: Date;
    der: Uint8Array;
    sha256: Uint8Array;
    generatedAt: Date;
    generatedBy?: string | null;
  }): Promise<'saved' | 'stale'>;
}

export interface CrlImportOptions {
  issuers: { get(id: string): Promise<CrlImportIssuer | null> };
  store: CrlImportStore;
  clock: Clock;
  /** How far thisUpdate may lie ahead of this clock (the offline machine's clock may run ahead). Default 5 min. */
  clockSkewMs?: number;
}

export interface ImportedCrl {
  issuerId: string;
  crlNumber: bigint;
  thisUpdate: Date;
  nextUpdate: Date;
  entries: number;
  sha256: Uint8Array;
}

export interface CrlImport {
  /** `der`: the CRL, DER. `source` is recorded as generatedBy (e.g. `import`, `signet init`). */
  importCrl(input: { issuerId: string; der: Uint8Array; source?: string }): Promise<ImportedCrl>;
}

/** The shard imported CRLs are served as: /crl/{id}.crl (DESIGN.md "Issuers"). */
const SHARD = 0;
/** The crls table keeps CRL numbers in a bigint column (src/db/schema/crls.table.ts). */
const MAX_STORED_NUMBER = (1n << 63n) - 1n;
/** Critical CRL extensions a relying party of ours understands (RFC 5280 §5.2: others make it unusable). */
const KNOWN_CRITICAL = new Set(['2.5.29.28' /* issuingDistributionPoint, §5.2.5 */]);

/**
 * Whether the online CA signs `issuer`'s CRLs itself: an active issuer whose key is in a
 * partition the server opens (src/ca/issuers.ts loads exactly those) and that is not a root.
 * A root's CRLs always come from the offline ceremony, even if its key were reachable online.
 */
export function crlsSignedOnline(
  issuer: { status: string; keyUri: string; certificateDer: Uint8Array },
  partitions: ReadonlySet<string>,
): boolean {
  if (issuer.status !== 'active') return false;
  let partition: string | undefined;
  try {
    if (isPkcs11Uri(issuer.keyUri)) {
      // A pkcs11: URI names a token, not a partition (issue #25): the online CA signs with it when
      // it opens any partition at all (a root is self-issued and stays offline whatever its URI).
      parsePkcs11Uri(issuer.keyUri);
      partition = [...partitions][0];
    } else partition = parseKeyUri(issuer.keyUri).partition;
  } catch {
    return false;
  }
  return partition !== undefined && partitions.has(partition) && !isSelfIssued(issuer.certificateDer);
}

export function createCrlImport({
  issuers,
  store,
  clock,
  clockSkewMs = 5 * 60_000,
}: CrlImportOptions): CrlImport {
  if (!issuers || !store || !clock) throw new Error('createCrlImport: issuers, store and clock are required');
  if (!Number.isFinite(clockSkewMs) || clockSkewMs < 0) throw new RangeError('clockSkewMs must be >= 0');

  return {
    async importCrl({ issuerId, der, source = 'import' }) {
      const issuer = await issuers.get(issuerId);
      if (!issuer) throw new AppError('issuer.not_found', 'not_found', `No issuer with id '${issuerId}'.`);
      const crl = readServable(der);
      if (issuer.signsCrlsOnline) {
        throw new AppError(
          'crl.issuer_signs_online',
          'conflict',
          `This CA signs the CRLs of ${issuer.id} itself; import CRLs only for issuers whose key is offline, such as a root.`,
        );
      }
      const signature = checkCrlSignature(crl, issuer.certificateDer);
      if (!signature.ok) {
        throw new AppError(
          'crl.signature_invalid',
          'invalid',
          `The CRL is not signed by ${issuer.id}: ${signature.reason}.`,
        );
      }
      const now = clock.now();
      if (crl.nextUpdate.getTime() <= now.getTime()) {
        throw new AppError(
          'crl.expired',
          'unprocessable',
          `The CRL's nextUpdate (${crl.nextUpdate.toISOString()}) has passed; run the crl ceremony for a new one.`,
        );
      }
      if (crl.thisUpdate.getTime() > now.getTime() + clockSkewMs) {
        throw new AppError(
          'crl.not_yet_valid',
          'unprocessable',
          `The CRL's thisUpdate (${crl.thisUpdate.toISOString()}) is in the future; relying parties would refuse it until then.`,
        );
      }
      const notIncreasing = (served: bigint) =>
        new AppError(
          'crl.number_not_increasing',
          'conflict',
          `The CRL's number ${crl.number} is not above ${served}, the number of the CRL served for ${issuer.id} (RFC 5280 §5.2.3).`,
        );
      const current = await store.getLatestInfo(issuer.id, SHARD, 'full');
      if (current && crl.number <= current.crlNumber) throw notIncreasing(current.crlNumber);
      const sha256 = new Uint8Array(createHash('sha256').update(der).digest());
      const outcome = await store.saveImported({
        issuerId: issuer.id,
        shard: SHARD,
        crlNumber: crl.number,
        thisUpdate: crl.thisUpdate,
        nextUpdate: crl.nextUpdate,
        der,
        sha256,
        generatedAt: now,
        generatedBy: source,
      });
      // Another import with a number at least as high committed between the read and the write.
      if (outcome === 'stale') {
        throw notIncreasing((await store.getLatestInfo(issuer.id, SHARD, 'full'))?.crlNumber ?? crl.number);
      }
      return {
        issuerId: issuer.id,
        crlNumber: crl.number,
        thisUpdate: crl.thisUpdate,
        nextUpdate: crl.nextUpdate,
        entries: crl.serials.length,
        sha256,
      };
    },
  };
}

/** Reads a complete v2 CRL this CA can serve as it is, or refuses it with `crl.malformed`. */
function readServable(der: Uint8Array): ReadCrl & { number: bigint; nextUpdate: Date } {
  const unusable = (reason: string) =>
    new AppError('crl.malformed', 'invalid', `Not a CRL this CA can serve: ${reason}.`);
  let crl: ReadCrl;
  try {
    crl = readCrl(der);
  } catch (error) {
    if (error instanceof CrlReadError) throw unusable(error.message);
    throw error;
  }
  if (crl.delta) throw unusable('it is a delta CRL (RFC 5280 §5.2.4); import complete CRLs');
  const unknown = crl.criticalExtensions.filter((oid) => !KNOWN_CRITICAL.has(oid));
  if (unknown.length > 0) {
    throw unusable(`it has critical extensions relying parties cannot process (${unknown.join(', ')})`);
  }
  // RFC 5280 §5.2.3 and §5.1.2.5: conforming CAs MUST include both.
  const { number, nextUpdate } = crl;
  if (number === undefined) throw unusable('it has no cRLNumber (RFC 5280 §5.2.3)');
  if (nextUpdate === undefined) throw unusable('it has no nextUpdate (RFC 5280 §5.1.2.5)');
  if (number > MAX_STORED_NUMBER) throw unusable('its cRLNumber is above 2^63 - 1');
  return { ...crl, number, nextUpdate };
}
