/**
 * Where an issuer's CRLs are published (DESIGN.md "Issuers"): `/crl/{id}.crl` for an issuer with
 * one shard, `/crl/{id}/{shard}.crl` for each shard of a sharded issuer, and the delta CRLs beside
 * them at `/crl/{id}/delta.crl` and `/crl/{id}/{shard}/delta.crl`. Every URL is derived from the
 * issuer's recorded CRL URL (`.../crl/{id}.crl`), so a certificate, the CRL that covers it and the
 * routes that serve it always agree.
 */

/** The most shards an issuer may have (the issuers table's check). */
export const MAX_CRL_SHARDS = 65_536;

/** The URL prefix the shard and delta URLs hang off: the CRL URL without its `.crl`. */
function stem(crlUrl: string): string {
  return crlUrl.endsWith('.crl') ? crlUrl.slice(0, -4) : crlUrl;
}

/**
 * A certificate's shard, fixed at issuance from its serial (random, RFC 5280 §4.1.2.2 / BR: at
 * least 64 bits of CSPRNG output): the last four octets modulo the shard count, which spreads
 * certificates evenly and needs no state. Changing the count later changes only new certificates'.
 */
export function crlShardOf(serial: Uint8Array, shards: number): number {
  if (!Number.isInteger(shards) || shards < 1 || shards > MAX_CRL_SHARDS) {
    throw new RangeError(`a CRL shard count is an integer from 1 to ${MAX_CRL_SHARDS}`);
  }
  if (shards === 1) return 0;
  let value = 0;
  for (let i = Math.max(0, serial.byteLength - 4); i < serial.byteLength; i++) {
    value = value * 256 + serial[i]!;
  }
  return value % shards;
}

/**
 * The CRL distribution point a certificate of `shard` names: the issuer's own CRL URL when it has
 * one shard, else `/crl/{id}/{shard}.crl`.
 */
export function shardCrlUrl(crlUrl: string, shard: number, shards: number): string {
  return shards <= 1 && shard === 0 ? crlUrl : `${stem(crlUrl)}/${shard}.crl`;
}

/** RFC 5280 §5.2.6: where the delta CRLs for a certificate of `shard` are (its Freshest CRL). */
export function deltaCrlUrl(crlUrl: string, shard: number, shards: number): string {
  return shards <= 1 && shard === 0 ? `${stem(crlUrl)}/delta.crl` : `${stem(crlUrl)}/${shard}/delta.crl`;
}

/**
 * The URIs a shard's CRL names in its Issuing Distribution Point (RFC 5280 §5.2.5), or none for
 * an issuer that has only ever had one shard (its CRL is complete). Shard 0 of a sharded issuer is
 * also served at the unsharded URL: certificates issued while the issuer had one shard name that,
 * those issued while it had several name `/0.crl`, and both are covered by the same CRL.
 */
export function shardIdpUris(crlUrl: string, shard: number, sharded: boolean): string[] {
  if (!sharded) return [];
  const own = `${stem(crlUrl)}/${shard}.crl`;
  return shard === 0 ? [own, crlUrl] : [own];
}

/** Every URL a certificate of this issuer may name as its CRL distribution point. */
export function isIssuerCrlUrl(crlUrl: string, url: string, shards: number): boolean {
  if (url === crlUrl) return true;
  const prefix = `${stem(crlUrl)}/`;
  if (!url.startsWith(prefix)) return false;
  const match = /^(0|[1-9][0-9]{0,4})\.crl$/.exec(url.slice(prefix.length));
  return match !== null && Number(match[1]) < Math.max(shards, 1);
}
