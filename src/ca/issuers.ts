import type { webcrypto } from 'node:crypto';
import type { IssuerRecord, IssuersRepository } from '../db/issuers.repository.ts';
import { partitionOfKeyUri, tokenPartitions } from '../hsm/key-uri.ts';
import { isPkcs11Uri } from '../hsm/pkcs11/uri.ts';
import type { KeyManager, SignPurpose } from '../hsm/types.ts';
import { createPartitionCrypto, getCryptoKey, type PartitionCryptoKey } from '../hsm/webcrypto.ts';
import type { Clock } from '../lib/clock.ts';
import { isSelfIssued } from '../x509/crl.ts';
import { equalBytes } from '../x509/der.ts';
import { createIssuerContext, type IssuerContext } from '../x509/issuer.ts';
import type { NameConstraintsInfo } from '../x509/name-constraints.ts';
import { PathValidationError, validateCertificatePath } from '../x509/path-validation.ts';
import { certificateToPem } from '../x509/pem.ts';

/**
 * An issuer the CA can sign with: its certificate checked against its key in the partition and
 * its chain validated up to a trusted root (issue #5: "An issuer is loaded only if its
 * certificate's public key equals its key's public key in the partition and its chain verifies";
 * issue #21: by RFC 5280 path validation, name constraints along the whole chain included).
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
  /** Delta CRLs are published (signet.yaml `crl.deltaInterval`): leaves carry a Freshest CRL. */
  deltaCrls?: boolean;
}

export interface VerifiedIssuerChain {
  /** The issuer records from this issuer up to and including its root. */
  chain: IssuerRecord[];
  /** The name constraints of every CA above the issuer (RFC 5280 §6.1.4 (g)), nearest first. */
  superiorNameConstraints: NameConstraintsInfo[];
}

/**
 * RFC 5280 §6.1 path validation of an issuer's recorded chain (issuer records up to a root) to the
 * trusted roots of signet.yaml at the clock's time: pkijs's chain validation engine plus the name
 * constraints of every CA along the chain (src/x509/path-validation.ts). The path that validates
 * must be the recorded chain, which GET /v1/issuers/{id}/chain serves.
 */
export async function verifyIssuerChain(
  record: IssuerRecord,
  issuers: IssuersRepository,
  trustedRoots: Uint8Array[],
  clock: Clock,
): Promise<VerifiedIssuerChain> {
  const chain = await issuers.chain(record.id);
  const root = chain[chain.length - 1]!;
  if (!trustedRoots.some((der) => equalBytes(der, root.certificateDer))) {
    throw new IssuerLoadError(
      `issuer ${record.id}: its chain ends at ${root.id}, which is not among the trusted roots of signet.yaml`,
    );
  }
  let validated: Awaited<ReturnType<typeof validateCertificatePath>>;
  try {
    validated = await validateCertificatePath({
      certificate: chain[0]!.certificateDer,
      intermediates: chain.slice(1, -1).map((r) => r.certificateDer),
      trustAnchors: [root.certificateDer],
      time: clock.now(),
      targetIsCa: true,
    });
  } catch (error) {
    if (!(error instanceof PathValidationError)) throw error;
    throw new IssuerLoadError(`issuer ${record.id}: its chain does not validate: ${error.message}`, {
      cause: error,
    });
  }
  const recorded = chain.map((r) => r.certificateDer);
  if (
    validated.path.length !== recorded.length ||
    !validated.path.every((der, i) => equalBytes(der, recorded[i]!))
  ) {
    throw new IssuerLoadError(
      `issuer ${record.id}: the path that validates is not its recorded chain ${chain.map((r) => r.id).join(' -> ')}`,
    );
  }
  return { chain, superiorNameConstraints: validated.superiorNameConstraints };
}

/** Loads every active issuer whose key lives in one of `partitions`; refuses the set if any check fails. */
export async function loadIssuers(options: LoadIssuersOptions): Promise<IssuerSet> {
  const loaded = new Map<string, LoadedIssuer>();
  const records = (await options.issuers.list()).filter((record) => record.status === 'active');
  // pkcs11: key URIs name a token; the partitions say which token they keep keys on (issue #25).
  const tokens = records.some((record) => record.keyUri.startsWith('pkcs11:'))
    ? await tokenPartitions(options.partitions)
    : new Map<string, string>();
  for (const record of records) {
    // A root (or any issuer) whose key sits in a partition this server does not open, such as the
    // offline root partition, is served read-only: its certificate and chain, not its signatures.
    const partition = partitionOfKeyUri(record.keyUri, tokens);
    if (partition === undefined || !options.partitions.has(partition)) continue;
    // A pkcs11: URI names a token, which the offline root's partition may share with the online
    // one: a root whose key this server's partition does not hold is served read-only as well.
    if (
      isPkcs11Uri(record.keyUri) &&
      isSelfIssued(record.certificateDer) &&
      !(await options.partitions
        .get(partition)!
        .findKey({ uri: record.keyUri })
        .catch(() => undefined))
    )
      continue;
    loaded.set(record.id, await loadIssuer(record, { ...options, tokens }));
  }
  return {
    get: (id) => loaded.get(id),
    list: () => [...loaded.values()],
  };
}

/**
 * Issuers that no longer issue (disabled, retired) but whose keys this server's partitions hold:
 * their CRLs are still signed until their last certificate expires (issue #28). An issuer that
 * cannot be loaded (its key elsewhere, its chain no longer valid) is reported and left out.
 */
export async function loadStoppedIssuers(
  options: LoadIssuersOptions,
  onSkipped: (id: string, error: unknown) => void,
): Promise<LoadedIssuer[]> {
  const records = (await options.issuers.list()).filter(
    (record) => record.status !== 'active' && !isSelfIssued(record.certificateDer),
  );
  const loaded: LoadedIssuer[] = [];
  for (const record of records) {
    try {
      loaded.push(await loadIssuer(record, options));
    } catch (error) {
      onSkipped(record.id, error);
    }
  }
  return loaded;
}

export async function loadIssuer(
  record: IssuerRecord,
  options: LoadIssuersOptions & { tokens?: ReadonlyMap<string, string> },
): Promise<LoadedIssuer> {
  const tokens =
    options.tokens ??
    (record.keyUri.startsWith('pkcs11:') ? await tokenPartitions(options.partitions) : new Map());
  const keyManager = options.partitions.get(partitionOfKeyUri(record.keyUri, tokens) ?? '');
  if (!keyManager) {
    throw new IssuerLoadError(
      `issuer ${record.id}: its key ${record.keyUri} is in no partition this server uses`,
    );
  }
  const { chain, superiorNameConstraints } = await verifyIssuerChain(
    record,
    options.issuers,
    options.trustedRoots,
    options.clock,
  );
  const context = createIssuerContext({
    id: record.id,
    certificate: record.certificateDer,
    superiorNameConstraints,
    ...(record.crlUrls[0] ? { crlUrl: record.crlUrls[0] } : {}),
    ...(record.ocspUrls[0] ? { ocspUrl: record.ocspUrls[0] } : {}),
    ...(record.caIssuersUrls[0] ? { caIssuersUrl: record.caIssuersUrls[0] } : {}),
    crlShards: record.crlShards,
    ...(options.deltaCrls ? { deltaCrls: true } : {}),
  });
  const keyInfo = await keyManager.findKey({ uri: record.keyUri });
  if (!keyInfo) throw new IssuerLoadError(`issuer ${record.id}: no key ${record.keyUri} in the partition`);
  if (!equalBytes(keyInfo.publicKey, context.publicKey)) {
    throw new IssuerLoadError(
      `issuer ${record.id}: the certificate's public key is not the public key of ${record.keyUri}`,
    );
  }
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
