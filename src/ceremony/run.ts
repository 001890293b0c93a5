import type { webcrypto } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import {
  HsmError,
  isHsmError,
  type KeyInfo,
  type KeyManager,
  type SignPurpose,
  type UnsealRequest,
} from '../hsm/types.ts';
import { createPartitionCrypto, getCryptoKey } from '../hsm/webcrypto.ts';
import { type Clock, systemClock } from '../lib/clock.ts';
import { MisissuanceError, signCertificate } from '../lint/token.ts';
import { encoding } from '../x509/der.ts';
import {
  createIssuerContext,
  createSelfIssuerContext,
  type IssuerContext,
  readCertificateFields,
} from '../x509/issuer.ts';
import { spkiSha256 } from '../x509/keys.ts';
import { encodeName } from '../x509/names.ts';
import { certificateToPem, crlToPem, PEM_LABEL, toPem } from '../x509/pem.ts';
import { buildCaTbs, encodeSubject, serialFromPartition, subjectAttributes } from './certificates.ts';
import {
  type CeremonyConfig,
  type CertificateProfile,
  type CrlProfile,
  type CrossProfile,
  type KeyConfig,
  keyAlgorithmOf,
  mechanismForKey,
  type OfflinePartitionConfig,
  type PartitionConfig,
  transcriptCmsPath,
  transcriptMarkdownPath,
  transcriptSignaturePath,
} from './config.ts';
import { buildCrlTbs, signCrl } from './crl.ts';
import { CeremonyError } from './errors.ts';
import { hasKeyUsage, KeyUsageFlags } from './inputs.ts';
import { type CaLinter, defaultCaLinter, type LintOutcome } from './lint.ts';
import { checkNetwork, type InterfaceProbe } from './network.ts';
import { resolvePath, sha256Hex, type WrittenOutput, writeOutputOnce } from './outputs.ts';
import {
  type CeremonyPartition,
  describeShare,
  type PartitionDriver,
  processPartitionDriver,
} from './partition.ts';
import { validateCeremonyPath } from './path-check.ts';
import {
  renderTranscriptMarkdown,
  type Transcript,
  type TranscriptCustodians,
  type TranscriptKey,
  TranscriptRecorder,
  transcriptBytes,
} from './transcript.ts';
import { signTranscriptBytes, signTranscriptCms } from './transcript-signature.ts';
import type { ValidatedCeremony } from './validate.ts';

/**
 * `signet ceremony run`: a straight line of announced steps over a configuration that
 * validate.ts has already accepted. Nothing is overwritten; every key is generated inside a
 * partition and is non-extractable; every certificate and CRL is linted (or self-checked)
 * before it is signed and read back after; the transcript records it all and is signed last.
 */

export interface CeremonySecrets {
  /** The crypto officer's PIN (creates keys; chosen here when the ceremony creates the partition). */
  officerPin?: string;
  /** The crypto user's PIN (signs; chosen here when the ceremony creates the partition). */
  userPin?: string;
  /** Custodian shares that unseal an existing offline partition (`--share-file`). */
  shares?: { source: string; bytes: Uint8Array }[];
  /** The unseal secret of a partition sealed under one secret (`--secret-file`). */
  secret?: Uint8Array;
  /** The online partition's (hierarchy): officer PIN, user PIN, unseal secret. */
  onlineOfficerPin?: string;
  onlineUserPin?: string;
  onlineSecret?: Uint8Array;
}

export interface RunCeremonyOptions {
  secrets: CeremonySecrets;
  clock?: Clock;
  /** Each step as it starts and ends; defaults to stdout. */
  log?: (line: string) => void;
  allowNetwork?: boolean;
  networkProbe?: InterfaceProbe;
  partitions?: PartitionDriver;
  linter?: CaLinter;
}

export interface CeremonyResult {
  transcript: Transcript;
  transcriptPath: string;
  markdownPath: string;
  signaturePath: string;
  /** The detached CMS SignedData, when the signing key has a certificate. */
  cmsPath?: string;
  keys: TranscriptKey[];
  outputs: WrittenOutput[];
}

/** A key this ceremony created or uses, with the sessions that reach it. */
interface CeremonyKey {
  role: string;
  info: KeyInfo;
  partition: CeremonyPartition;
  /** May sign transcripts: its profile (or certificate) carries digitalSignature. */
  mayAttest: boolean;
  /** Its certificate and the CA certificates above it, DER, once it has one: the CMS transcript carries them. */
  certificates?: Uint8Array[];
}

class Run {
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
        const built = buildCrlTbs({
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

function transcriptKey(role: string, info: KeyInfo, created: boolean): TranscriptKey {
  return {
    role,
    label: info.label,
    uri: info.uri,
    algorithm: info.algorithm,
    publicKeySha256: spkiSha256(info.publicKey),
    created,
  };
}

function requireSecret(value: string | undefined, what: string): string {
  if (value === undefined) throw new CeremonyError('ceremony.secret_missing', `this ceremony needs ${what}`);
  return value;
}

function requireUser(partition: CeremonyPartition): KeyManager {
  if (!partition.user) {
    throw new CeremonyError(
      'ceremony.secret_missing',
      `signing in partition '${partition.name}' needs the crypto user's --pin-file`,
    );
  }
  return partition.user;
}

const hasDigitalSignature = (profile: { 'key-usages': string[] }) =>
  profile['key-usages'].includes('digitalSignature');

const ROOT_PURPOSES: SignPurpose[] = ['certificate', 'crl', 'other'];

// ---- The ceremonies -------------------------------------------------------------------------------

async function rootCeremony(
  run: Run,
  config: Extract<CeremonyConfig, { 'ceremony-type': 'root' }>,
): Promise<void> {
  const p = config['offline-partition'];
  const offline = p.create ? await run.createOfflinePartition(p) : await run.openOfflineWithShares(p, true);
  const profile = config['certificate-profile'];
  const root = await run.createKey(offline, config.key, 'root', ROOT_PURPOSES, hasDigitalSignature(profile));
  run.defaultSigner = root.info.label;
  await run.writePublicKey(config.outputs['public-key-path'], root.info.publicKey, 'root');
  await issueRoot(run, profile, root, config.outputs['certificate-path']);
}

async function issueRoot(
  run: Run,
  profile: CertificateProfile,
  root: CeremonyKey,
  path: string,
): Promise<IssuerContext> {
  const self = createSelfIssuerContext({
    id: root.info.label,
    subject: subjectAttributes(profile.subject),
    publicKey: root.info.publicKey,
    notBefore: new Date(profile['not-before']),
    notAfter: new Date(profile['not-after']),
    ...(profile['path-length'] !== undefined ? { pathLenConstraint: profile['path-length'] } : {}),
  });
  const der = await run.issueCertificate({
    what: 'root certificate',
    lintProfile: 'root',
    profile,
    subject: encodeName(subjectAttributes(profile.subject)),
    publicKey: root.info.publicKey,
    issuer: self,
    signer: root,
    path,
  });
  root.certificates = [der];
  return createIssuerContext({ id: root.info.label, certificate: der });
}

async function keyCeremony(
  run: Run,
  config: Extract<CeremonyConfig, { 'ceremony-type': 'key' }>,
): Promise<void> {
  const p = config.partition;
  const { shares = [], secret, officerPin, userPin } = run.options.secrets;
  let unseal: UnsealRequest | undefined;
  if (shares.length > 0) {
    run.rec.custodians.push({
      partition: p.name,
      threshold: 0,
      shares: 0,
      used: shares.map((s) => describeShare(s.bytes)),
    });
    unseal = { shares: shares.map((s) => s.bytes) };
  } else if (secret) {
    unseal = { secret };
  }
  const partition = await run.openPartition(p, 'key', unseal, {
    officer: requireSecret(officerPin, '--officer-pin-file (the partition officer PIN)'),
    // The new key signs this ceremony's transcript, which needs the crypto user.
    user: requireSecret(userPin, '--pin-file (the partition user PIN)'),
  });
  // The new key has no certificate yet; it proves possession by signing this transcript.
  const key = await run.createKey(
    partition,
    config.key,
    'new',
    ['certificate', 'crl', 'ocsp', 'other'],
    true,
  );
  run.defaultSigner = key.info.label;
  await run.writePublicKey(config.outputs['public-key-path'], key.info.publicKey, 'new');
  run.log(`KEY URI: ${key.info.uri}`);
  run.log(toPem(key.info.publicKey, PEM_LABEL.publicKey).trimEnd());
}

async function subordinateCeremony(
  run: Run,
  config: Extract<CeremonyConfig, { 'ceremony-type': 'intermediate' | 'cross-certificate' }>,
): Promise<void> {
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
  const profile = config['certificate-profile'];
  if (config['ceremony-type'] === 'intermediate') {
    const subject = run.validated.inputs.subjectKey!;
    await run.issueCertificate({
      what: 'intermediate certificate',
      lintProfile: 'intermediate',
      profile,
      subject: encodeSubject((profile as CertificateProfile).subject),
      publicKey: subject.spki,
      issuer,
      signer: issuerKey,
      path: config.outputs['certificate-path'],
      trustAnchor: { der: issuerCert.der, what: 'the issuer certificate' },
    });
  } else {
    const other = run.validated.inputs.subjectCertificate!;
    await run.issueCertificate({
      what: 'cross-certificate',
      lintProfile: 'intermediate',
      profile,
      // The other CA's subject Name byte for byte, so chains built by name still match (RFC 5280 §7.1).
      subject: encoding(readCertificateFields(other.der).subject),
      publicKey: other.spki,
      issuer,
      signer: issuerKey,
      path: config.outputs['certificate-path'],
      trustAnchor: { der: issuerCert.der, what: 'the issuer certificate' },
    });
  }
}

async function crlCeremony(
  run: Run,
  config: Extract<CeremonyConfig, { 'ceremony-type': 'crl' }>,
): Promise<void> {
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
  await run.issueCrl({
    profile: config['crl-profile'],
    issuer,
    signer: issuerKey,
    path: config.outputs['crl-path'],
  });
}

async function hierarchyCeremony(
  run: Run,
  config: Extract<CeremonyConfig, { 'ceremony-type': 'hierarchy' }>,
): Promise<void> {
  const { secrets } = run.options;
  // The online partition first: a label already taken there stops the ceremony before the root exists.
  let online: CeremonyPartition | undefined;
  const created = config.intermediates.filter((i) => i['subject-key'].key);
  if (created.length > 0) {
    const p = config['online-partition']!;
    online = await run.openPartition(
      p,
      'online',
      secrets.onlineSecret ? { secret: secrets.onlineSecret } : undefined,
      {
        officer: requireSecret(
          secrets.onlineOfficerPin,
          '--online-officer-pin-file (the online partition officer PIN)',
        ),
        user: secrets.onlineUserPin,
      },
    );
    for (const i of created) await run.refuseExistingLabel(online, i['subject-key'].key!);
  }
  const p = config['offline-partition'];
  const offline = p.create ? await run.createOfflinePartition(p) : await run.openOfflineWithShares(p, true);
  const rootProfile = config.root['certificate-profile'];
  const root = await run.createKey(
    offline,
    config.root.key,
    'root',
    ROOT_PURPOSES,
    hasDigitalSignature(rootProfile),
  );
  run.defaultSigner = root.info.label;
  await run.writePublicKey(config.root.outputs['public-key-path'], root.info.publicKey, 'root');
  const issuer = await issueRoot(run, rootProfile, root, config.root.outputs['certificate-path']);
  const rootAnchor = { der: issuer.certificate!, what: 'the root' };
  for (const [n, inter] of config.intermediates.entries()) {
    const profile = inter['certificate-profile'];
    let spki: Uint8Array;
    let made: CeremonyKey | undefined;
    const key = inter['subject-key'].key;
    if (key) {
      made = await run.createKey(
        online!,
        key,
        `intermediate-${n}`,
        ['certificate', 'crl', 'ocsp', 'other'],
        hasDigitalSignature(profile),
      );
      spki = made.info.publicKey;
      if (inter.outputs['public-key-path']) {
        await run.writePublicKey(inter.outputs['public-key-path'], spki, `intermediate ${n}`);
      }
    } else {
      spki = run.validated.inputs.intermediateKeys[n]!.spki;
    }
    const der = await run.issueCertificate({
      what: `intermediate certificate ${n} (${profile.subject['common-name']})`,
      lintProfile: 'intermediate',
      profile,
      subject: encodeSubject(profile.subject),
      publicKey: spki,
      issuer,
      signer: root,
      path: inter.outputs['certificate-path'],
      trustAnchor: rootAnchor,
    });
    if (made) made.certificates = [der, rootAnchor.der];
  }
  await run.issueCrl({
    profile: config.crl['crl-profile'],
    issuer,
    signer: root,
    path: config.crl.outputs['crl-path'],
  });
}

// ---- Running and the transcript -------------------------------------------------------------------

/** Refuses up front, before any partition is touched, when a secret the ceremony will need is missing. */
function checkSecretsGiven(config: CeremonyConfig, secrets: CeremonySecrets): void {
  const missing: string[] = [];
  const unsealable = (secrets.shares?.length ?? 0) > 0 || secrets.secret !== undefined;
  const type = config['ceremony-type'];
  const creates =
    (type === 'root' || type === 'hierarchy') && config['offline-partition'].create !== undefined;
  if ((type === 'root' || type === 'hierarchy' || type === 'key') && secrets.officerPin === undefined) {
    missing.push('--officer-pin-file');
  }
  if (secrets.userPin === undefined) missing.push('--pin-file');
  if (!creates && !unsealable && !(type === 'key' && config.partition.socket !== undefined)) {
    missing.push(type === 'key' ? '--secret-file or --share-file' : '--share-file (M of them)');
  }
  if (type === 'hierarchy' && config.intermediates.some((i) => i['subject-key'].key)) {
    if (secrets.onlineOfficerPin === undefined) missing.push('--online-officer-pin-file');
    const online = config['online-partition'];
    if (online?.dir !== undefined && secrets.onlineSecret === undefined) missing.push('--online-secret-file');
    const signer = config.transcript['signing-key'];
    if (
      signer &&
      config.intermediates.some((i) => i['subject-key'].key?.label === signer) &&
      !secrets.onlineUserPin
    ) {
      missing.push('--online-pin-file');
    }
  }
  if (missing.length > 0) {
    throw new CeremonyError(
      'ceremony.secret_missing',
      `this ${type} ceremony also needs ${missing.join(', ')}`,
      { missing },
    );
  }
}

export async function runCeremony(
  validated: ValidatedCeremony,
  options: RunCeremonyOptions,
): Promise<CeremonyResult> {
  const clock = options.clock ?? systemClock;
  const log = options.log ?? ((line: string) => console.log(line));
  const { config } = validated;
  log(
    `Ceremony: ${config['ceremony-type']} from ${validated.configFile} (SHA-256 ${validated.configSha256})`,
  );
  log(`Authorised by ${config['policy-url']}`);
  checkSecretsGiven(config, options.secrets);
  log('Checking network interfaces ...');
  const network = checkNetwork({
    allowNetwork: options.allowNetwork ?? false,
    ...(options.networkProbe ? { probe: options.networkProbe } : {}),
  });
  log(
    network.up.length === 0
      ? 'No network interface other than loopback is up.'
      : `WARNING: network interfaces up: ${network.up.join(', ')} (allowed by --allow-network; recorded in the transcript)`,
  );
  const run = new Run(validated, options, clock, log, network);
  let failure: unknown;
  try {
    switch (config['ceremony-type']) {
      case 'root':
        await rootCeremony(run, config);
        break;
      case 'key':
        await keyCeremony(run, config);
        break;
      case 'intermediate':
      case 'cross-certificate':
        await subordinateCeremony(run, config);
        break;
      case 'crl':
        await crlCeremony(run, config);
        break;
      case 'hierarchy':
        await hierarchyCeremony(run, config);
        break;
    }
  } catch (error) {
    failure = isHsmError(error)
      ? new CeremonyError(
          'ceremony.partition_failed',
          `the partition refused: ${error.message}`,
          { hsm: error.code },
          { cause: error },
        )
      : error instanceof CeremonyError
        ? error
        : new CeremonyError(
            'ceremony.failed',
            `the ceremony stopped: ${(error as Error).message}`,
            {},
            { cause: error },
          );
  }
  try {
    const result = await finishTranscript(run, run.defaultSigner, failure);
    if (failure) throw failure;
    return result;
  } finally {
    await run.close();
  }
}

async function finishTranscript(
  run: Run,
  defaultLabel: string | undefined,
  failure: unknown,
): Promise<CeremonyResult> {
  const { config, baseDir } = run.validated;
  // A failed run's record goes beside the configured path, which stays free for the retry.
  const jsonPath = failure
    ? config.transcript.path.replace(/\.json$/, `.failed-${isoNow(run.clock).replace(/[-:]/g, '')}.json`)
    : config.transcript.path;
  const markdownPath = transcriptMarkdownPath(jsonPath);
  const signaturePath = transcriptSignaturePath(jsonPath);
  const cmsPath = transcriptCmsPath(jsonPath);
  const error = failure
    ? {
        code:
          failure instanceof CeremonyError
            ? failure.code
            : failure instanceof HsmError
              ? failure.code
              : 'ceremony.failed',
        message: (failure as Error).message,
      }
    : undefined;

  let signer: CeremonyKey | undefined;
  let signerProblem: unknown;
  if (defaultLabel !== undefined || config.transcript['signing-key'] !== undefined) {
    try {
      signer = await run.transcriptSigner(config.transcript['signing-key'] ?? defaultLabel!);
      if (!signer.partition.user)
        throw new CeremonyError('ceremony.secret_missing', 'signing the transcript needs the user PIN');
    } catch (e) {
      signer = undefined;
      signerProblem = e;
    }
  }
  const mechanism = signer ? mechanismForKey(signer.info.algorithm) : undefined;
  // With a certificate, the signer also writes a CMS SignedData that openssl cms -verify checks.
  const withCms = signer?.certificates !== undefined;
  if (signer && mechanism) {
    run.rec.signer = {
      role: signer.role,
      label: signer.info.label,
      uri: signer.info.uri,
      publicKeySha256: spkiSha256(signer.info.publicKey),
      algorithm: mechanism,
    };
    run.rec.steps.push({
      n: run.rec.steps.length + 1,
      time: isoNow(run.clock),
      name: `Sign this transcript with ${signer.info.label} (${mechanism}); write ${jsonPath}, ${markdownPath}, ${signaturePath}${withCms ? `, ${cmsPath} (CMS)` : ''}`,
      result: 'ok',
    });
  }
  let transcript = run.rec.build(failure ? 'failed' : 'completed', error);
  let bytes = transcriptBytes(transcript);
  let signature: Uint8Array | undefined;
  let cms: Uint8Array | undefined;
  if (signer && mechanism) {
    try {
      const keys = requireUser(signer.partition);
      signature = await signTranscriptBytes(keys, { label: signer.info.label }, mechanism, bytes);
      if (signer.certificates) {
        cms = await signTranscriptCms(
          {
            keys,
            key: { label: signer.info.label },
            certificates: signer.certificates,
            signingTime: run.clock.now(),
          },
          bytes,
        );
      }
    } catch (e) {
      signature = undefined;
      cms = undefined;
      signerProblem = e;
      run.rec.signer = undefined;
      run.rec.steps.pop();
      transcript = run.rec.build(
        'failed',
        error ?? { code: 'ceremony.transcript_unsigned', message: (e as Error).message },
      );
      bytes = transcriptBytes(transcript);
    }
  }
  run.log(`Writing the transcript to ${jsonPath} ...`);
  await writeOutputOnce(baseDir, jsonPath, bytes, { kind: 'transcript' });
  await writeOutputOnce(
    baseDir,
    markdownPath,
    renderTranscriptMarkdown(transcript, {
      jsonFile: jsonPath,
      signatureFile: signaturePath,
      ...(cms ? { cmsFile: cmsPath } : {}),
    }),
    { kind: 'transcript-markdown' },
  );
  if (signature) {
    await writeOutputOnce(baseDir, signaturePath, signature, { kind: 'transcript-signature' });
    if (cms) await writeOutputOnce(baseDir, cmsPath, cms, { kind: 'transcript-cms' });
    run.log(
      `Transcript signed by ${signer!.info.uri}; signature in ${signaturePath}${cms ? `, CMS SignedData in ${cmsPath}` : ''}`,
    );
  } else {
    run.log(
      `WARNING: the transcript is not signed${signerProblem ? `: ${(signerProblem as Error).message}` : ''}`,
    );
    if (!failure && signerProblem) throw signerProblem;
  }
  return {
    transcript,
    transcriptPath: jsonPath,
    markdownPath,
    signaturePath,
    ...(cms ? { cmsPath } : {}),
    keys: transcript.keys,
    outputs: transcript.outputs,
  };
}

const isoNow = (clock: Clock) =>
  new Date(Math.floor(clock.now().getTime() / 1000) * 1000).toISOString().replace('.000Z', 'Z');
