import { X509Certificate } from 'node:crypto';

/**
 * Alternate chains (RFC 8555 §7.4.2): where one of Signet's issuers is cross-signed, the
 * certificate URL also offers the leaf with the cross-signed chain, at `{certificate}/{n}`, each
 * named by a `Link: rel="alternate"`. A chain (acme.alternateChains, one PEM file each) starts
 * with the cross-signed certificate of an issuer and goes up towards the other root; it applies
 * to a leaf whose signature verifies with that certificate's key under that subject.
 */

export interface AlternateChain {
  /** The cross-signed issuer certificate first, then what is above it; PEM each. */
  pems: string[];
  first: X509Certificate;
}

const PEM = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\r?\n?/g;

export const splitPems = (text: string): string[] =>
  (text.match(PEM) ?? []).map((pem) => (pem.endsWith('\n') ? pem : `${pem}\n`));

/** Reads one acme.alternateChains file's text; throws naming what is wrong. */
export function parseAlternateChain(text: string, where: string): AlternateChain {
  const pems = splitPems(text);
  if (pems.length === 0) throw new Error(`${where}: no PEM certificate`);
  let first: X509Certificate;
  try {
    first = new X509Certificate(pems[0]!);
    for (const pem of pems.slice(1)) new X509Certificate(pem);
  } catch (error) {
    throw new Error(`${where}: not a certificate chain in PEM`, { cause: error });
  }
  if (!first.ca) throw new Error(`${where}: the first certificate is not a CA certificate`);
  return { pems, first };
}

/** The alternate chains (as served: the leaf, then the chain) that apply to a stored chain. */
export function alternatesOf(storedChain: string, chains: readonly AlternateChain[]): string[] {
  if (chains.length === 0) return [];
  const [leafPem] = splitPems(storedChain);
  if (!leafPem) return [];
  const leaf = new X509Certificate(leafPem);
  return chains
    .filter((chain) => leaf.checkIssued(chain.first) && leaf.verify(chain.first.publicKey))
    .map((chain) => `${leafPem}${chain.pems.join('')}`);
}
