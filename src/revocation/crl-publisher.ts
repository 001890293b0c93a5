/**
 * Makes one CRL of an issuer shard (the scheduler, crl-scheduler.ts, decides when): a complete
 * CRL of the shard's revoked certificates, or a delta CRL (RFC 5280 §5.2.4) of the revocations
 * since its base. A shard of a sharded issuer is a partitioned CRL: its critical Issuing
 * Distribution Point names the URLs its certificates point at (RFC 5280 §5.2.5,
 * src/x509/crl-urls.ts), and a delta carries the same IDP as its base, as RFC 5280 §5.2.4 and
 * OpenSSL require.
 */
import { wholeSeconds } from '../lib/clock.ts';
import { deltaCrlUrl, shardIdpUris } from '../x509/crl-urls.ts';
import { type BuiltCrl, buildCrl, type IssuingDistributionPointOptions } from './crl-builder.ts';
import { type CachedEntries, cacheEntries, type SplicedEntries, spliceEntries } from './crl-entry-cache.ts';
import { timeDerivedCrlNumber } from './crl-number.ts';
import type {
  CrlInfo,
  CrlIssuer,
  CrlKind,
  CrlShard,
  CrlStore,
  PublishedCrl,
  RevokedEntrySource,
} from './crl-ports.ts';
import type { IssuerFacts } from './issuer.ts';

export interface ScopeCrlRequest {
  issuer: CrlIssuer;
  facts: IssuerFacts;
  shard: number;
  kind: CrlKind;
  thisUpdate: Date;
  /** The current complete CRL: for a full CRL, the previous one; for a delta, its base. */
  current: CrlInfo | undefined;
  /** Delta CRLs are published (their URL goes into the complete CRL). */
  deltas: boolean;
  /**
   * A revocation, not the half-life, calls for this complete CRL: the entries of the current one,
   * if this node made it, are reused with the changes spliced in (crl-entry-cache.ts).
   */
  incremental?: boolean;
}

export interface ScopeCrlSettings {
  store: CrlStore;
  entries: RevokedEntrySource;
  validityMs: number;
  deltaValidityMs: number;
  removalMarginMs: number;
  pageSize: number;
  nodeId: string | undefined;
  now: () => Date;
  /** The encoded entries of the last complete CRL made here, per issuer shard. */
  cache?: Map<string, CachedEntries>;
}

/** The issuer's shards: shard 0 alone unless it was given its list (cli/revocation.ts). */
export function shardsOf(issuer: CrlIssuer): CrlShard[] {
  return (
    issuer.shards ?? [
      { shard: 0, issuing: issuer.issuing, lastCertificateExpiry: issuer.lastCertificateExpiry },
    ]
  );
}

/**
 * An issuer's shards: those new certificates land in (0 to count - 1, while it issues) and every
 * other shard that still holds certificates (issued under an earlier, larger count, or before the
 * issuer stopped), each published until its last certificate expires (RFC 5280 §3.3).
 */
export function crlShardsFor(
  count: number,
  known: readonly { shard: number; lastCertificateExpiry: Date }[],
  issuing: boolean,
): CrlShard[] {
  const byShard = new Map<number, CrlShard>();
  if (issuing) {
    for (let shard = 0; shard < count; shard++) {
      byShard.set(shard, { shard, issuing: true, lastCertificateExpiry: null });
    }
  }
  for (const { shard, lastCertificateExpiry } of known) {
    byShard.set(shard, { shard, issuing: issuing && shard < count, lastCertificateExpiry });
  }
  return [...byShard.values()].sort((a, b) => a.shard - b.shard);
}

/** The latest expiry over shards; null when none has certificates. */
export function lastExpiryOf(shards: readonly CrlShard[]): Date | null {
  let last: Date | null = null;
  for (const { lastCertificateExpiry: at } of shards) if (at && (!last || at > last)) last = at;
  return last;
}

/** Whether the issuer's CRLs are partitioned (several shards, or one other than 0). */
export function isSharded(issuer: CrlIssuer): boolean {
  const shards = shardsOf(issuer);
  return shards.length > 1 || shards.some((scope) => scope.shard !== 0);
}

/** The IDP of a shard's CRLs: the issuer's own (flags, URIs) plus the shard's URLs when sharded. */
export function idpFor(issuer: CrlIssuer, shard: number): IssuingDistributionPointOptions | undefined {
  const uris =
    issuer.crlUrl && isSharded(issuer) ? shardIdpUris(issuer.crlUrl, shard, true) : ([] as string[]);
  const own = issuer.issuingDistributionPoint;
  if (uris.length === 0) return own;
  return { ...own, uris: [...uris, ...(own?.uris ?? []).filter((uri) => !uris.includes(uri))] };
}

/** Builds, signs and returns (unsaved) one CRL of the shard. */
export async function makeScopeCrl(
  settings: ScopeCrlSettings,
  request: ScopeCrlRequest,
): Promise<PublishedCrl> {
  const { store, entries } = settings;
  const { issuer, shard, kind, current } = request;
  // Before any entry is read: changes after this are the next incremental CRL's.
  const readAt = settings.now();
  const thisUpdate = wholeSeconds(request.thisUpdate);
  const crlNumber = await store.allocateNumber(issuer.id, shard, {
    atLeast: timeDerivedCrlNumber(thisUpdate),
  });
  if (current && crlNumber <= current.crlNumber) {
    throw new Error(
      `the CRL number store answered ${crlNumber}, not above the current CRL's ${current.crlNumber}`,
    );
  }
  const idp = idpFor(issuer, shard);
  let built: BuiltCrl;
  if (kind === 'delta') {
    if (!current) throw new Error('a delta CRL needs a complete CRL to update');
    if (!entries.streamRevocationChangesSince) throw new Error('this entry source cannot list changes');
    // Every revocation committed after the base read its entries is listed: a margin before the
    // base's thisUpdate covers clock skew between nodes and transactions committing late. Entries
    // also on the base are harmless (RFC 5280 §5.2.4 lets a delta repeat them).
    // A clock stepped back since the base (issue #29) stamps new revocations before it: then
    // every change of the scope is listed, as the margin cannot say how far back to look.
    const since =
      readAt.getTime() < current.thisUpdate.getTime()
        ? new Date(0)
        : new Date(current.thisUpdate.getTime() - settings.removalMarginMs);
    built = await buildCrl({
      issuer: request.facts,
      signer: issuer.signer,
      number: crlNumber,
      thisUpdate,
      nextUpdate: new Date(thisUpdate.getTime() + settings.deltaValidityMs),
      entries: entries.streamRevocationChangesSince(issuer.id, since, { shard, pageSize: settings.pageSize }),
      baseCrlNumber: current.crlNumber,
      ...(idp ? { issuingDistributionPoint: idp } : {}),
    });
  } else {
    const expiredBefore = current
      ? new Date(current.thisUpdate.getTime() - settings.removalMarginMs)
      : undefined;
    const freshest =
      request.deltas && issuer.crlUrl ? [deltaCrlUrl(issuer.crlUrl, shard, isSharded(issuer) ? 2 : 1)] : [];
    const spliced = request.incremental ? await splicedFromCache(settings, request) : undefined;
    built = await buildCrl({
      issuer: request.facts,
      signer: issuer.signer,
      number: crlNumber,
      thisUpdate,
      nextUpdate: new Date(thisUpdate.getTime() + settings.validityMs),
      ...(spliced
        ? { spliced }
        : {
            entries: entries.streamRevokedForCrl(issuer.id, {
              shard,
              pageSize: settings.pageSize,
              ...(expiredBefore ? { expiredBefore } : {}),
            }),
          }),
      ...(idp ? { issuingDistributionPoint: idp } : {}),
      ...(freshest.length > 0 ? { freshestCrlUris: freshest } : {}),
    });
    // Kept whether or not the store takes it: a CRL saved by another node has another number,
    // and the next run then reads the database.
    const cached = cacheEntries({ crlNumber, certificate: issuer.certificate, readAt, der: built.der });
    if (cached) settings.cache?.set(cacheKey(issuer.id, shard), cached);
    else settings.cache?.delete(cacheKey(issuer.id, shard));
  }
  return {
    issuerId: issuer.id,
    shard,
    kind,
    crlNumber: built.number,
    ...(kind === 'delta' ? { baseCrlNumber: current!.crlNumber } : {}),
    thisUpdate: built.thisUpdate,
    nextUpdate: built.nextUpdate,
    der: built.der,
    sha256: built.sha256,
    generatedAt: settings.now(),
    generatedBy: settings.nodeId ?? null,
  };
}

const cacheKey = (issuerId: string, shard: number) => `${issuerId}/${shard}`;

/**
 * The current CRL's entries with the revocations since it spliced in, if this node made the
 * current CRL (same number, same issuer certificate); undefined otherwise (read the database).
 */
async function splicedFromCache(
  settings: ScopeCrlSettings,
  request: ScopeCrlRequest,
): Promise<SplicedEntries | undefined> {
  const { issuer, shard, current } = request;
  const cached = settings.cache?.get(cacheKey(issuer.id, shard));
  const changesSince = settings.entries.streamRevocationChangesSince;
  if (!cached || !current || cached.crlNumber !== current.crlNumber || !changesSince) return undefined;
  if (!Buffer.from(cached.certificate).equals(issuer.certificate)) return undefined;
  // The clock stepped back since the cache was read (issue #29): revocations made since carry
  // earlier times than the read and the changes below would miss them. Read the database.
  if (settings.now().getTime() < cached.readAt.getTime()) return undefined;
  // The same margin as for deltas: revocations committed late or on a node with a slower clock.
  // One millisecond more: a change at the very instant of the read may or may not be listed.
  const since = new Date(cached.readAt.getTime() - settings.removalMarginMs - 1);
  const changes = [];
  for await (const entry of changesSince.call(settings.entries, issuer.id, since, {
    shard,
    pageSize: settings.pageSize,
  })) {
    changes.push(entry);
  }
  return spliceEntries(cached, changes);
}
