/**
 * One ceremony run: its partitions, keys, outputs and the transcript's record of every step. The
 * ceremonies (ceremonies/, one file per ceremony type) are straight lines of steps over it.
 */

import type { webcrypto } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import {
  isHsmError,
  type KeyInfo,
  type KeyManager,
  type SignPurpose,
  type UnsealRequest,
} from '../hsm/types.ts';
import { createPartitionCrypto, getCryptoKey } from '../hsm/webcrypto.ts';
import { MisissuanceError, signCertificate } from '../issuance/token.ts';
import type { Clock } from '../lib/clock.ts';
import { createIssuerContext, type IssuerContext } from '../x509/issuer.ts';
import { spkiSha256 } from '../x509/keys.ts';
import { certificateToPem, crlToPem, PEM_LABEL, toPem } from '../x509/pem.ts';
import { buildCaTbs, serialFromPartition } from './certificates.ts';
import {
  type CertificateProfile,
  type CrlProfile,
  type CrossProfile,
  type IntermediateCeremony,
  type KeyConfig,
  keyAlgorithmOf,
  mechanismForKey,
  type OfflinePartitionConfig,
  type PartitionConfig,
} from './config.ts';
import { buildCrlTbs, signCrl } from './crl.ts';
import { CeremonyError } from './errors.ts';
import { hasKeyUsage, KeyUsageFlags, type LoadedCertificate } from './inputs.ts';
import { type CaLinter, defaultCaLinter, type LintOutcome } from './lint.ts';
import type { checkNetwork } from './network.ts';
import { resolvePath, sha256Hex, type WrittenOutput, writeOutputOnce } from './outputs.ts';
import {
  type CeremonyPartition,
  describeShare,
  type PartitionDriver,
  processPartitionDriver,
} from './partition.ts';
import { validateCeremonyPath } from './path-check.ts';
import type { RunCeremonyOptions } from './run.ts';
import { type TranscriptCustodians, type TranscriptKey, TranscriptRecorder } from './transcript.ts';
import type { ValidatedCeremony } from './validate.ts';

/** A key this ceremony created or uses, with the sessions that reach it. */
export interface CeremonyKey {
  role: string;
  info: KeyInfo;
  partition: CeremonyPartition;
  /** May sign transcripts: its profile (or certificate) carries digitalSignature. */
  mayAttest: boolean;
  /** Its certificate and the CA certificates above it, DER, once it has one: the CMS transcript carries them. */
  certificates?: Uint8Array[];
}

export class Run {
  readonly rec: TranscriptRecorder;
  readonly partitions: CeremonyPartition[] = [];
  readonly keys = new Map<string, CeremonyKey>();
  /** The key that signs the transcript unless the configuration names another, once it exists. */
  defaultSigner: string | undefined;
  private readonly driver: PartitionDriver;
  readonly linter: CaLinter;

  constructor(
    readonly validated: ValidatedCeremony,
    readonly options: RunCeremonyOptions,
    readonly clock: Clock,
    readonly log: (line: string) => void,
    network: ReturnType<typeof checkNetwork>,
  ) {
    const { config } = validated;
    this.driver = options.partitions ?? processPartitionDriver;
    this.linter = options.linter ?? defaultCaLinter;
    this.rec = new TranscriptRecorder(clock, log, {
      ceremony: {
        type: config['ceremony-type'],
        configFile: validated.configFile,
        configSha256: validated.configSha256,
        policyUrl: config['policy-url'],
        ...(config.description ? { description: config.description } : {}),
      },
      participants: config.participants,
      network,
    });
  }

  get baseDir() {
    return this.validated.baseDir;
  }

  async write(path: string, data: Uint8Array | string, kind: string, mode?: number): Promise<WrittenOutput> {
    const written = await writeOutputOnce(this.baseDir, path, data, { kind, ...(mode ? { mode } : {}) });
    this.rec.outputs.push(written);
    return written;
  }

  /** Creates a partition sealed under M-of-N custodian shares, each share written once to its custodian's file. */
  async createOfflinePartition(p: OfflinePartitionConfig): Promise<CeremonyPartition> {
    const create = p.create!;
    const officerPin = requireSecret(
      this.options.secrets.officerPin,
      '--officer-pin-file (the new partition officer PIN)',
    );
    const userPin = requireSecret(this.options.secrets.userPin, '--pin-file (the new partition user PIN)');
    const shares: string[] = [];
    const custodians: TranscriptCustodians = {
      partition: p.name,
      threshold: create.threshold,
      shares: create.custodians.length,
      created: [],
    };
    this.rec.custodians.push(custodians);
    await this.rec.step(
      `Create partition '${p.name}' in ${p.dir}, sealed under ${create.threshold}-of-${create.custodians.length} custodian shares` +
        (create.pkcs11
          ? `, its keys on PKCS#11 token ${create.pkcs11['token-label'] ?? `in slot ${create.pkcs11['slot-id']}`}`
          : ''),
      async (detail) => {
        const dir = resolvePath(this.baseDir, p.dir!);
        await mkdir(dirname(dir), { recursive: true });
        await this.driver.create({
          dir,
          name: p.name,
          threshold: create.threshold,
          shares: create.custodians.length,
          officerPin,
          userPin,
          ...(create.pkcs11
            ? {
                pkcs11: {
                  module: create.pkcs11.module,
                  ...(create.pkcs11['token-label'] !== undefined
                    ? { tokenLabel: create.pkcs11['token-label'] }
                    : {}),
                  ...(create.pkcs11['slot-id'] !== undefined ? { slotId: create.pkcs11['slot-id'] } : {}),
                },
              }
            : {}),
          saveShares: async (texts) => {
            // Each share goes to its own custodian's file, once, before the partition exists.
            for (const [i, custodian] of create.custodians.entries()) {
              const text = texts[i]!;
              const written = await this.write(custodian['share-path'], text, 'custodian-share', 0o600);
              custodians.created!.push({
                custodian: custodian.name,
                path: custodian['share-path'],
                sha256: written.sha256,
              });
              this.log(`    share ${i + 1} written to ${custodian['share-path']} for ${custodian.name}`);
              shares.push(text);
            }
          },
        });
        detail.partition = p.name;
      },
    );
    // Unseal with exactly the threshold, as a later ceremony will.
    const used = shares.slice(0, create.threshold).map((s) => Buffer.from(s, 'utf8'));
    custodians.used = used.map((bytes, i) => ({
      ...describeShare(bytes),
      custodian: create.custodians[i]!.name,
    }));
    return this.openPartition(p, 'offline', { shares: used }, { officer: officerPin, user: userPin });
  }

  async openPartition(
    p: PartitionConfig | OfflinePartitionConfig,
    role: string,
    unseal: UnsealRequest | undefined,
    pins: { officer?: string | undefined; user?: string | undefined },
  ): Promise<CeremonyPartition> {
    const where = p.dir ?? p.socket!;
    return this.rec.step(
      `Open ${role} partition '${p.name}' (${where})${unseal ? ' and unseal it' : ''}`,
      async (detail) => {
        const partition = await this.driver.open({
          ...(p.dir !== undefined ? { dir: resolvePath(this.baseDir, p.dir) } : {}),
          ...(p.socket !== undefined ? { socket: resolvePath(this.baseDir, p.socket) } : {}),
          name: p.name,
          ...(unseal ? { unseal } : {}),
          ...(pins.officer !== undefined ? { officer: { name: p.officer, pin: pins.officer } } : {}),
          ...(pins.user !== undefined ? { user: { name: p.user, pin: pins.user } } : {}),
        });
        this.partitions.push(partition);
        detail.officer = pins.officer !== undefined ? p.officer : 'not logged in';
        detail.user = pins.user !== undefined ? p.user : 'not logged in';
        return partition;
      },
    );
  }

  /** Opens an existing offline partition, unsealed with the custodians' --share-file. */
  async openOfflineWithShares(
    p: PartitionConfig | OfflinePartitionConfig,
    needOfficer: boolean,
  ): Promise<CeremonyPartition> {
    const { shares = [], secret } = this.options.secrets;
    let unseal: UnsealRequest | undefined;
    if (shares.length > 0) {
      const used = shares.map((s) => ({ ...describeShare(s.bytes) }));
      this.rec.custodians.push({ partition: p.name, threshold: 0, shares: 0, used });
      unseal = { shares: shares.map((s) => s.bytes) };
    } else if (secret) {
      unseal = { secret };
    }
    const partition = await this.openPartition(p, 'offline', unseal, {
      officer: needOfficer ? this.options.secrets.officerPin : undefined,
      user: requireSecret(this.options.secrets.userPin, '--pin-file (the partition user PIN)'),
    });
    const record = this.rec.custodians.find((c) => c.partition === p.name && c.threshold === 0);
    if (record) {
      const status = await partition.lookup.status();
      if (status.sealing?.kind === 'shares') {
        record.threshold = status.sealing.threshold;
        record.shares = status.sealing.shares;
      }
    }
    return partition;
  }

  async refuseExistingLabel(partition: CeremonyPartition, key: KeyConfig): Promise<void> {
    await this.rec.step(
      `Check that partition '${partition.name}' has no key labelled ${key.label}`,
      async () => {
        if (await partition.lookup.findKey({ label: key.label })) {
          throw new CeremonyError(
            'ceremony.key_exists',
            `refusing to go on: partition '${partition.name}' already has a key labelled ${key.label}`,
            { label: key.label },
          );
        }
      },
    );
  }

  async createKey(
    partition: CeremonyPartition,
    key: KeyConfig,
    role: string,
    purposes: SignPurpose[],
    mayAttest: boolean,
  ): Promise<CeremonyKey> {
    await this.refuseExistingLabel(partition, key);
    const algorithm = keyAlgorithmOf(key);
    const info = await this.rec.step(
      `Generate ${role} key ${key.label} (${algorithm}, non-extractable) in partition '${partition.name}'`,
      async (detail) => {
        if (!partition.officer) {
          throw new CeremonyError(
            'ceremony.secret_missing',
            `creating a key in partition '${partition.name}' needs the officer's PIN file`,
          );
        }
        let created: KeyInfo;
        try {
          created = await partition.officer.createKey({
            label: key.label,
            algorithm,
            extractable: false,
            usages: ['sign', 'verify'],
            purposes,
          });
        } catch (error) {
          if (isHsmError(error, 'CKR_OBJECT_EXISTS')) {
            throw new CeremonyError(
              'ceremony.key_exists',
              `partition '${partition.name}' already has a key labelled ${key.label}`,
            );
          }
          throw error;
        }
        if (created.extractable) {
          throw new CeremonyError(
            'ceremony.key_extractable',
            `the partition created ${key.label} extractable; refusing to use it`,
          );
        }
        detail.uri = created.uri;
        detail.publicKeySha256 = spkiSha256(created.publicKey);
        return created;
      },
    );
    const entry: CeremonyKey = { role, info, partition, mayAttest };
    this.keys.set(info.label, entry);
    this.rec.keys.push(transcriptKey(role, info, true));
    this.log(`    ${role} key URI: ${info.uri}`);
    this.log(`    public key SHA-256: ${spkiSha256(info.publicKey)}`);
    return entry;
  }

  /** An existing key (the issuer's), which must be the key its certificate certifies. */
  async useIssuerKey(
    partition: CeremonyPartition,
    label: string,
    certificateSpki: Uint8Array,
    mayAttest: boolean,
  ): Promise<CeremonyKey> {
    const info = await this.rec.step(
      `Find issuer key ${label} and match it with the issuer certificate`,
      async (detail) => {
        const found = await partition.lookup.findKey({ label });
        if (!found) {
          throw new CeremonyError(
            'ceremony.issuer_key_missing',
            `partition '${partition.name}' has no key labelled ${label}`,
          );
        }
        if (!Buffer.from(found.publicKey).equals(Buffer.from(certificateSpki))) {
          throw new CeremonyError(
            'ceremony.issuer_key_mismatch',
            `key ${label} is not the key the issuer certificate certifies`,
          );
        }
        detail.uri = found.uri;
        return found;
      },
    );
    const entry: CeremonyKey = { role: 'issuer', info, partition, mayAttest };
    this.keys.set(label, entry);
    this.rec.keys.push(transcriptKey('issuer', info, false));
    return entry;
  }

  async writePublicKey(path: string, spki: Uint8Array, what: string): Promise<void> {
    await this.rec.step(`Write the ${what} public key to ${path}`, async (detail) => {
      const written = await this.write(path, toPem(spki, PEM_LABEL.publicKey), 'public-key');
      detail.sha256 = written.sha256;
    });
  }

  async issueCertificate({
    what,
    lintProfile,
    profile,
    subject,
    publicKey,
    issuer,
    signer,
    path,
    trustAnchor,
  }: {
    what: string;
    lintProfile: 'root' | 'intermediate';
    profile: CertificateProfile | CrossProfile;
    subject: Uint8Array;
    publicKey: Uint8Array;
    issuer: IssuerContext;
    signer: CeremonyKey;
    path: string;
    /** The certificate the new one's path must validate to; absent for a root (its own anchor). */
    trustAnchor?: { der: Uint8Array; what: string };
  }): Promise<Uint8Array> {
    const user = requireUser(signer.partition);
    const serial = await this.rec.step(
      `Draw the ${what}'s serial number from partition '${signer.partition.name}'`,
      async (detail) => {
        const s = await serialFromPartition(user);
        detail.serial = Buffer.from(s).toString('hex');
        return s;
      },
    );
    const tbs = await this.rec.step(`Build and lint the ${what}`, async (detail) => {
      const built = buildCaTbs({ profile, subject, publicKey, issuer, serial });
      const outcome = this.linter.lintCertificate(built, { issuer, profile: lintProfile, expected: profile });
      this.recordLint(path, outcome);
      detail.findings = outcome.findings.length;
      if (!outcome.passed || !outcome.token) {
        throw new CeremonyError(
          'ceremony.lint_failed',
          `the ${what} fails lint: ${outcome.findings
            .filter((f) => f.severity === 'error')
            .map((f) => `${f.code}: ${f.message}`)
            .join('; ')}`,
          { findings: outcome.findings },
        );
      }
      return { der: built, token: outcome.token };
    });
    const der = await this.rec.step(
      `Sign the ${what} with ${signer.info.label}; check the signature and that the signed TBS is the linted one`,
      async (detail) => {
        detail.tbsSha256 = sha256Hex(tbs.der);
        const key = await getCryptoKey(user, { label: signer.info.label }, { purpose: 'certificate' });
        try {
          // A PartitionCryptoKey is CryptoKey-shaped (the facade's contract); WebCrypto's type is nominal.
          const cryptoKey = key as unknown as webcrypto.CryptoKey;
          return await signCertificate(tbs.token, { crypto: createPartitionCrypto(user), key: cryptoKey });
        } catch (error) {
          if (error instanceof MisissuanceError) {
            throw new CeremonyError('ceremony.misissuance', error.message, {}, { cause: error });
          }
          throw error;
        }
      },
    );
    await this.rec.step(
      `Validate the ${what}'s certification path to ${trustAnchor?.what ?? 'itself'} (RFC 5280 §6.1)`,
      async (detail) => {
        detail.pathLength = await validateCeremonyPath(der, trustAnchor?.der ?? der, this.clock);
      },
    );
    await this.rec.step(`Write the ${what} to ${path}`, async (detail) => {
      const written = await this.write(path, certificateToPem(der), 'certificate');
      detail.sha256 = written.sha256;
    });
    return der;
  }

  recordLint(subject: string, outcome: LintOutcome): void {
    this.rec.lint.push({ subject, passed: outcome.passed, findings: outcome.findings });
  }

  async issueCrl({
    profile,
    issuer,
    signer,
    path,
  }: {
    profile: CrlProfile;
    issuer: IssuerContext;
    signer: CeremonyKey;
    path: string;
  }): Promise<void> {
    const user = requireUser(signer.partition);
    const { revoked, crlNumber: number } = this.validated.inputs;
    if (number === undefined) throw new Error('validation left the CRL without a number');
    const tbs = await this.rec.step(
      `Build CRL number ${number} (${revoked.length} revoked, next update ${profile['next-update']}) and check it`,
      async (detail) => {
        const built = await buildCrlTbs({
          issuer,
          thisUpdate: new Date(profile['this-update']),
          nextUpdate: new Date(profile['next-update']),
          number,
          revoked,
        });
        const outcome = this.linter.lintCrl(built, { issuer, expected: profile, revoked, number });
        this.recordLint(path, outcome);
        const previous = this.validated.inputs.previousCrl;
        if (previous) {
          // RFC 5280 §5.2.3: the record shows which CRL this one succeeds.
          detail.previousCrl = previous.path;
          detail.previousCrlNumber = previous.number.toString();
          detail.previousCrlSha256 = previous.sha256;
        }
        detail.findings = outcome.findings.length;
        if (!outcome.passed) {
          throw new CeremonyError('ceremony.lint_failed', 'the CRL fails its checks', {
            findings: outcome.findings,
          });
        }
        return built;
      },
    );
    const der = await this.rec.step(
      `Sign the CRL with ${signer.info.label} and check the signature`,
      async () =>
        signCrl({
          tbs,
          keys: user,
          key: { label: signer.info.label },
          mechanism: mechanismForKey(signer.info.algorithm),
          issuer,
        }),
    );
    await this.rec.step(`Write the CRL to ${path}`, async (detail) => {
      const written = await this.write(path, crlToPem(der), 'crl');
      detail.sha256 = written.sha256;
    });
  }

  /** Resolves the transcript signer: the named key, else the default. */
  async transcriptSigner(defaultLabel: string): Promise<CeremonyKey> {
    const named = this.validated.config.transcript['signing-key'];
    const label = named ?? defaultLabel;
    const known = this.keys.get(label);
    if (known && !known.mayAttest) {
      throw new CeremonyError(
        'ceremony.transcript_signer_not_allowed',
        `key ${label} may not sign the transcript: its certificate omits digitalSignature (RFC 5280 §4.2.1.3)`,
      );
    }
    if (known) return known;
    // A key already in the signing partition (for instance one made for transcripts by a key ceremony).
    const home = this.partitions[0];
    if (!home) throw new CeremonyError('ceremony.transcript_signer_not_found', `no partition holds ${label}`);
    const info = await this.rec.step(`Find transcript signing key ${label}`, async () => {
      const found = await home.lookup.findKey({ label });
      if (!found) {
        throw new CeremonyError(
          'ceremony.transcript_signer_not_found',
          `partition '${home.name}' has no key labelled ${label} to sign the transcript`,
        );
      }
      return found;
    });
    const entry: CeremonyKey = { role: 'transcript', info, partition: home, mayAttest: true };
    this.keys.set(label, entry);
    this.rec.keys.push(transcriptKey('transcript', info, false));
    return entry;
  }

  async close(): Promise<void> {
    await Promise.allSettled(this.partitions.map((p) => p.close()));
  }
}

export function transcriptKey(role: string, info: KeyInfo, created: boolean): TranscriptKey {
  return {
    role,
    label: info.label,
    uri: info.uri,
    algorithm: info.algorithm,
    publicKeySha256: spkiSha256(info.publicKey),
    created,
  };
}

export function requireSecret(value: string | undefined, what: string): string {
  if (value === undefined) throw new CeremonyError('ceremony.secret_missing', `this ceremony needs ${what}`);
  return value;
}

export function requireUser(partition: CeremonyPartition): KeyManager {
  if (!partition.user) {
    throw new CeremonyError(
      'ceremony.secret_missing',
      `signing in partition '${partition.name}' needs the crypto user's --pin-file`,
    );
  }
  return partition.user;
}

export const hasDigitalSignature = (profile: { 'key-usages': string[] }) =>
  profile['key-usages'].includes('digitalSignature');

export const ROOT_PURPOSES: SignPurpose[] = ['certificate', 'crl', 'other'];

export const isoNow = (clock: Clock) =>
  new Date(Math.floor(clock.now().getTime() / 1000) * 1000).toISOString().replace('.000Z', 'Z');

/**
 * For the ceremonies that sign with an existing CA key (intermediate, cross-certificate, CRL):
 * opens the offline partition with the custodians' shares and finds the issuer's key, checked
 * against its certificate; that key also signs the transcript unless the configuration names one.
 */
export async function openIssuer(
  run: Run,
  config: Pick<IntermediateCeremony, 'offline-partition' | 'issuer'>,
): Promise<{ issuerCert: LoadedCertificate; issuerKey: CeremonyKey; issuer: IssuerContext }> {
  const issuerCert = run.validated.inputs.issuer!;
  const offline = await run.openOfflineWithShares(config['offline-partition'], false);
  const issuerKey = await run.useIssuerKey(
    offline,
    config.issuer['key-label'],
    issuerCert.spki,
    issuerCert.keyUsage === undefined || hasKeyUsage(issuerCert, KeyUsageFlags.digitalSignature),
  );
  run.defaultSigner = issuerKey.info.label;
  issuerKey.certificates = [issuerCert.der];
  const issuer = createIssuerContext({ id: issuerKey.info.label, certificate: issuerCert.der });
  return { issuerCert, issuerKey, issuer };
}
