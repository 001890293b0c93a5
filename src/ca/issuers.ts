import { type webcrypto, X509Certificate } from 'node:crypto';
import type { IssuerRecord, IssuersRepository } from '../db/issuers.repository.ts';
import { parseKeyUri } from '../hsm/key-uri.ts';
import type { KeyManager, SignPurpose } from '../hsm/types.ts';
import { createPartitionCrypto, getCryptoKey, type PartitionCryptoKey } from '../hsm/webcrypto.ts';
import type { Clock } from '../lib/clock.ts';
import { equalBytes } from '../x509/der.ts';
import { createIssuerContext, type IssuerContext } from '../x509/issuer.ts';
import { certificateToPem } from '../x509/pem.ts';

/**
 * An issuer the CA can sign with: its certificate checked against its key in the partition and
 * its chain verified up to a trusted root (issue #5: "An issuer is loaded only if its
 * certificate's public key equals its key's public key in the partition and its chain verifies").
 */
export interface LoadedIssuer {
  id: string;
  name: string;
  context: IssuerContext;
  /** The partition facade: signs through the partition, everything else is Node's WebCrypto. */
  crypto: webcrypto.Crypto;
  /** One non-extractable handle per purpose, so the partition's audit log says what each signature was for. */
  keys: Record<SignPurpose, PartitionCryptoKey>;
  keyManager: KeyManager;
  certificateDer: Uint8Array;
  certificatePem: string;
  /** From this issuer up to, not including, the root (the `chain` of an issuance response). */
  chainPem: string[];
  /** From this issuer up to and including the root (GET /v1/issuers/{id}/chain). */
  fullChainPem: string[];
}

export interface IssuerSet {
  get(id: string): LoadedIssuer | undefined;
  list(): LoadedIssuer[];
}

export class IssuerLoadError extends Error {
  override readonly name = 'IssuerLoadError';
}

export interface LoadIssuersOptions {
  issuers: IssuersRepository;
  /** Key managers by partition name (the `partition=` of an `hsm:` key URI). */
  partitions: ReadonlyMap<string, KeyManager>;
  /** DER certificates of the roots listed in signet.yaml. */
  trustedRoots: Uint8Array[];
  clock: Clock;
}

/** Checks that `der`'s chain (issuer records up to a root) ends in a trusted root, every signature valid. */
export async function verifyIssuerChain(
  record: IssuerRecord,
  issuers: IssuersRepository,
  trustedRoots: Uint8Array[],
  clock: Clock,
): Promise<IssuerRecord[]> {
  const chain = await issuers.chain(record.id);
  const now = clock.now();
  for (let i = 0; i < chain.length; i++) {
    const current = new X509Certificate(Buffer.from(chain[i]!.certificateDer));
    const parentRecord = chain[i + 1];
    const parent = parentRecord ? new X509Certificate(Buffer.from(parentRecord.certificateDer)) : current;
    if (!current.checkIssued(parent) || !current.verify(parent.publicKey)) {
      throw new IssuerLoadError(
        `issuer ${record.id}: the certificate of ${chain[i]!.id} is not signed by ${parentRecord?.id ?? 'itself'}`,
      );
    }
    if (new Date(current.validTo) < now) {
      throw new IssuerLoadError(`issuer ${record.id}: the certificate of ${chain[i]!.id} has expired`);
    }
  }
  const root = chain[chain.length - 1]!;
  if (!trustedRoots.some((der) => equalBytes(der, root.certificateDer))) {
    throw new IssuerLoadError(
      `issuer ${record.id}: its chain ends at ${root.id}, which is not among the trusted roots of signet.yaml`,
    );
  }
  return chain;
}

/** Loads every active issuer whose key lives in one of `partitions`; refuses the set if any check fails. */
export async function loadIssuers(options: LoadIssuersOptions): Promise<IssuerSet> {
  const loaded = new Map<string, LoadedIssuer>();
  for (const record of await options.issuers.list()) {
    if (record.status !== 'active') continue;
    // A root (or any issuer) whose key sits in a partition this server does not open, such as the
    // offline root partition, is served read-only: its certificate and chain, not its signatures.
    const partition = parseKeyUri(record.keyUri).partition;
    if (partition === undefined || !options.partitions.has(partition)) continue;
    loaded.set(record.id, await loadIssuer(record, options));
  }
  return {
    get: (id) => loaded.get(id),
    list: () => [...loaded.values()],
  };
}

export async function loadIssuer(record: IssuerRecord, options: LoadIssuersOptions): Promise<LoadedIssuer> {
  const uri = parseKeyUri(record.keyUri);
  const keyManager = options.partitions.get(uri.partition ?? '');
  if (!keyManager) {
    throw new IssuerLoadError(
      `issuer ${record.id}: its key ${record.keyUri} is in no partition this server uses`,
    );
  }
  const context = createIssuerContext({
    id: record.id,
    certificate: record.certificateDer,
    ...(record.crlUrls[0] ? { crlUrl: record.crlUrls[0] } : {}),
    ...(record.ocspUrls[0] ? { ocspUrl: record.ocspUrls[0] } : {}),
    ...(record.caIssuersUrls[0] ? { caIssuersUrl: record.caIssuersUrls[0] } : {}),
  });
  const keyInfo = await keyManager.findKey({ uri: record.keyUri });
  if (!keyInfo) throw new IssuerLoadError(`issuer ${record.id}: no key ${record.keyUri} in the partition`);
  if (!equalBytes(keyInfo.publicKey, context.publicKey)) {
    throw new IssuerLoadError(
      `issuer ${record.id}: the certificate's public key is not the public key of ${record.keyUri}`,
    );
  }
  const chain = await verifyIssuerChain(record, options.issuers, options.trustedRoots, options.clock);
  const pems = chain.map((r) => certificateToPem(r.certificateDer));
  const keyFor = (purpose: SignPurpose) => getCryptoKey(keyManager, { id: keyInfo.id }, { purpose });
  return {
    id: record.id,
    name: record.name,
    context,
    crypto: createPartitionCrypto(keyManager),
    keys: {
      certificate: await keyFor('certificate'),
      crl: await keyFor('crl'),
      ocsp: await keyFor('ocsp'),
      other: await keyFor('other'),
    },
    keyManager,
    certificateDer: record.certificateDer,
    certificatePem: pems[0]!,
    chainPem: pems.slice(0, -1),
    fullChainPem: pems,
  };
}
