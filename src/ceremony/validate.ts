import { generateKeyPairSync } from 'node:crypto';
import { stat } from 'node:fs/promises';
import { checkCrlSignature, type ReadCrl } from '../x509/crl.ts';
import { SignetCryptoEngine } from '../x509/crypto-engine.ts';
import { createSelfIssuerContext } from '../x509/issuer.ts';
import { buildCaTbs, encodeSubject } from './certificates.ts';
import {
  type CeremonyConfig,
  type CertificateProfile,
  type CrlProfile,
  type CrossProfile,
  parseCeremonyConfig,
} from './config.ts';
import { pathLengthProblems, validityInsideProblems } from './config-checks.ts';
import { outputPaths } from './config-paths.ts';
import { type ConfigProblem, configInvalid } from './errors.ts';
import {
  hasKeyUsage,
  InputProblem,
  KeyUsageFlags,
  type LoadedCertificate,
  type LoadedPublicKey,
  loadCertificate,
  loadCrl,
  loadCsr,
  loadPublicKey,
} from './inputs.ts';
import { pathExists, resolvePath, sha256Hex } from './outputs.ts';
import { isoSeconds } from './transcript.ts';

/**
 * `signet ceremony validate`: everything that can be checked without touching a partition.
 * The schema and cross-field checks (config.ts), then the file system: every output path must be
 * free, every input must load and fit (an intermediate's validity inside its issuer's, the
 * issuer a CA allowed to sign what is asked, CSRs verified). All problems are gathered and thrown
 * together as `ceremony.config_invalid`.
 */

export interface RevocationEntry {
  serial: string;
  revocationDate: string;
  reason?: string;
}

export interface CeremonyInputs {
  /** intermediate, cross-certificate, crl: the issuer's certificate. */
  issuer?: LoadedCertificate;
  /** intermediate: the key to certify. */
  subjectKey?: LoadedPublicKey;
  /** cross-certificate: the other CA's certificate. */
  subjectCertificate?: LoadedCertificate;
  /** hierarchy: each intermediate's key when given as a file (undefined when the ceremony creates it). */
  intermediateKeys: (LoadedPublicKey | undefined)[];
  /** crl, hierarchy: the entries of the CRL. */
  revoked: RevocationEntry[];
  /** crl, hierarchy: the CRL's number, from `number`, else the previous CRL's + 1, else 1 (hierarchy). */
  crlNumber?: bigint;
  /** crl: the CRL it follows (previous-crl-path), recorded in the transcript with the SHA-256 of its file. */
  previousCrl?: { path: string; number: bigint; sha256: string };
}

export interface ValidatedCeremony {
  config: CeremonyConfig;
  /** The configuration file as named on the command line. */
  configFile: string;
  /** SHA-256 of the configuration file's bytes, hex. */
  configSha256: string;
  baseDir: string;
  inputs: CeremonyInputs;
}

// biome-ignore lint/complexity/noExcessiveLinesPerFunction: the validation steps in the order the ceremony will meet them, each announced
export async function validateCeremony({
  text,
  file,
  baseDir,
}: {
  text: string | Uint8Array;
  file: string;
  baseDir: string;
}): Promise<ValidatedCeremony> {
  const bytes = typeof text === 'string' ? Buffer.from(text, 'utf8') : Buffer.from(text);
  const config = parseCeremonyConfig(bytes.toString('utf8'), file);
  const problems: ConfigProblem[] = [];
  const inputs: CeremonyInputs = { intermediateKeys: [], revoked: [] };

  const attempt = async <T>(load: () => Promise<T>): Promise<T | undefined> => {
    try {
      return await load();
    } catch (error) {
      if (error instanceof InputProblem) {
        problems.push(error.problem);
        return undefined;
      }
      throw error;
    }
  };

  // Outputs are written once: any that exists now is refused before anything starts.
  for (const { at, path } of outputPaths(config)) {
    if (await pathExists(resolvePath(baseDir, path))) {
      problems.push({
        path: at,
        code: 'ceremony.config.output_exists',
        message: `${path} exists; outputs are never overwritten`,
      });
    }
  }

  const partitionAt = config['ceremony-type'] === 'key' ? 'partition' : 'offline-partition';
  const partition = config['ceremony-type'] === 'key' ? config.partition : config['offline-partition'];
  if (!('create' in partition && partition.create))
    problems.push(...(await partitionExists(partition, partitionAt, baseDir)));
  if (config['ceremony-type'] === 'hierarchy' && config['online-partition']) {
    problems.push(...(await partitionExists(config['online-partition'], 'online-partition', baseDir)));
  }

  switch (config['ceremony-type']) {
    case 'root':
    case 'key':
      break;
    case 'intermediate':
    case 'cross-certificate': {
      const issuer = await attempt(() =>
        loadCertificate(baseDir, config.issuer['certificate-path'], 'issuer.certificate-path'),
      );
      if (issuer) {
        inputs.issuer = issuer;
        problems.push(...issuerProblems(issuer, 'certificate', 'issuer.certificate-path'));
        const profile = config['certificate-profile'];
        problems.push(
          ...validityInsideProblems(
            profile,
            'certificate-profile',
            { 'not-before': issuer.notBefore, 'not-after': issuer.notAfter },
            'the issuer certificate',
          ),
        );
        problems.push(...pathLengthProblems(profile, 'certificate-profile', issuer.pathLength));
        problems.push(...issuerSignsTranscriptProblems(config, issuer));
      }
      let subject: LoadedPublicKey | undefined;
      if (config['ceremony-type'] === 'intermediate') {
        const key = config['subject-key'];
        if (key['public-key-path'] !== undefined) {
          subject = await attempt(() =>
            loadPublicKey(baseDir, key['public-key-path']!, 'subject-key.public-key-path'),
          );
        } else if (key['csr-path'] !== undefined) {
          subject = await attempt(() => loadCsr(baseDir, key['csr-path']!, 'subject-key.csr-path'));
        }
        if (subject) inputs.subjectKey = subject;
      } else {
        const other = await attempt(() =>
          loadCertificate(baseDir, config['subject-certificate-path'], 'subject-certificate-path'),
        );
        if (other) {
          inputs.subjectCertificate = other;
          subject = { path: other.path, spki: other.spki, keyAlgorithm: other.keyAlgorithm };
          if (!other.isCa) {
            problems.push({
              path: 'subject-certificate-path',
              code: 'ceremony.config.subject_not_ca',
              message: 'must be a CA certificate: a cross-certificate certifies another CA',
            });
          }
        }
      }
      if (issuer && subject && Buffer.compare(Buffer.from(issuer.spki), Buffer.from(subject.spki)) === 0) {
        problems.push({
          path: config['ceremony-type'] === 'intermediate' ? 'subject-key' : 'subject-certificate-path',
          code: 'ceremony.config.subject_is_issuer',
          message: "is the issuer's own key; a root certifies itself in a root ceremony",
        });
      }
      break;
    }
    case 'crl': {
      const issuer = await attempt(() =>
        loadCertificate(baseDir, config.issuer['certificate-path'], 'issuer.certificate-path'),
      );
      if (issuer) {
        inputs.issuer = issuer;
        problems.push(...issuerProblems(issuer, 'crl', 'issuer.certificate-path'));
        problems.push(...issuerSignsTranscriptProblems(config, issuer));
        const profile = config['crl-profile'];
        if (Date.parse(profile['this-update']) < Date.parse(issuer.notBefore)) {
          problems.push({
            path: 'crl-profile.this-update',
            code: 'ceremony.config.crl_before_issuer',
            message: `must not be before the issuer's not-before (${issuer.notBefore})`,
          });
        }
        if (Date.parse(profile['this-update']) > Date.parse(issuer.notAfter)) {
          problems.push({
            path: 'crl-profile.this-update',
            code: 'ceremony.config.crl_after_issuer',
            message: `must not be after the issuer's not-after (${issuer.notAfter})`,
          });
        }
        inputs.revoked = await revokedEntries(profile, 'crl-profile', baseDir, issuer, attempt, problems);
        const previousPath = profile['previous-crl-path'];
        const previous =
          previousPath === undefined
            ? undefined
            : await attempt(() => loadCrl(baseDir, previousPath, 'crl-profile.previous-crl-path'));
        if (previous) {
          problems.push(...previousCrlProblems(previous, issuer, profile));
          if (previous.number !== undefined) {
            inputs.previousCrl = {
              path: previousPath!,
              number: previous.number,
              sha256: previous.fileSha256,
            };
          }
        }
        if (profile.number !== undefined) inputs.crlNumber = BigInt(profile.number);
        else if (previous?.number !== undefined) inputs.crlNumber = previous.number + 1n;
      }
      break;
    }
    case 'hierarchy': {
      for (const [i, inter] of config.intermediates.entries()) {
        const key = inter['subject-key'];
        const at = `intermediates.${i}.subject-key`;
        let loaded: LoadedPublicKey | undefined;
        if (key['public-key-path'] !== undefined) {
          loaded = await attempt(() =>
            loadPublicKey(baseDir, key['public-key-path']!, `${at}.public-key-path`),
          );
        } else if (key['csr-path'] !== undefined) {
          loaded = await attempt(() => loadCsr(baseDir, key['csr-path']!, `${at}.csr-path`));
        }
        inputs.intermediateKeys.push(loaded);
      }
      inputs.crlNumber = BigInt(config.crl['crl-profile'].number ?? 1);
      inputs.revoked = await revokedEntries(
        config.crl['crl-profile'],
        'crl.crl-profile',
        baseDir,
        undefined,
        attempt,
        problems,
      );
      break;
    }
  }

  for (const { at, profile } of certificateProfiles(config)) problems.push(...dryBuildProblems(profile, at));

  if (problems.length > 0) throw configInvalid(problems, file);
  return { config, configFile: file, configSha256: sha256Hex(bytes), baseDir, inputs };
}

function certificateProfiles(
  config: CeremonyConfig,
): { at: string; profile: CertificateProfile | CrossProfile }[] {
  switch (config['ceremony-type']) {
    case 'root':
    case 'intermediate':
    case 'cross-certificate':
      return [{ at: 'certificate-profile', profile: config['certificate-profile'] }];
    case 'hierarchy':
      return [
        { at: 'root.certificate-profile', profile: config.root['certificate-profile'] },
        ...config.intermediates.map((i, n) => ({
          at: `intermediates.${n}.certificate-profile`,
          profile: i['certificate-profile'],
        })),
      ];
    default:
      return [];
  }
}

let dryRunKey: Uint8Array | undefined;

/**
 * Builds each certificate's TBS once with a throwaway key, so that a value the encoders refuse
 * (a name too long for its attribute, a constraint they cannot write) stops the ceremony here
 * rather than halfway through it.
 */
function dryBuildProblems(profile: CertificateProfile | CrossProfile, at: string): ConfigProblem[] {
  dryRunKey ??= new Uint8Array(
    generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ type: 'spki', format: 'der' }),
  );
  try {
    const issuer = createSelfIssuerContext({
      id: 'dry-run',
      subject: [{ type: 'CN', value: 'dry run' }],
      publicKey: dryRunKey,
      notBefore: new Date(profile['not-before']),
      notAfter: new Date(profile['not-after']),
    });
    const subject = 'subject' in profile ? encodeSubject(profile.subject) : issuer.subject;
    buildCaTbs({
      profile,
      subject,
      publicKey: dryRunKey,
      issuer,
      serial: new Uint8Array([0x40, 1, 2, 3, 4, 5, 6, 7, 8]),
    });
    return [];
  } catch (error) {
    return [
      {
        path: at,
        code: 'ceremony.config.profile_unencodable',
        message: `cannot be encoded: ${(error as Error).message}`,
      },
    ];
  }
}

async function partitionExists(
  partition: { dir?: string | undefined; socket?: string | undefined },
  at: string,
  baseDir: string,
): Promise<ConfigProblem[]> {
  const path = partition.dir ?? partition.socket;
  if (path === undefined) return [];
  try {
    const info = await stat(resolvePath(baseDir, path));
    if (partition.dir !== undefined && !info.isDirectory()) {
      return [
        { path: `${at}.dir`, code: 'ceremony.config.input_invalid', message: `${path} is not a folder` },
      ];
    }
    if (partition.socket !== undefined && !info.isSocket()) {
      return [
        { path: `${at}.socket`, code: 'ceremony.config.input_invalid', message: `${path} is not a socket` },
      ];
    }
    return [];
  } catch {
    return [
      {
        path: `${at}.${partition.dir !== undefined ? 'dir' : 'socket'}`,
        code: 'ceremony.config.input_missing',
        message: `${path} does not exist`,
      },
    ];
  }
}

/** RFC 5280 §4.2.1.9 and §4.2.1.3: only a CA with keyCertSign issues certificates, only cRLSign signs CRLs. */
function issuerProblems(
  issuer: LoadedCertificate,
  signs: 'certificate' | 'crl',
  at: string,
): ConfigProblem[] {
  if (!issuer.isCa) {
    return [
      {
        path: at,
        code: 'ceremony.config.issuer_not_ca',
        message: 'is not a CA certificate (basicConstraints cA)',
      },
    ];
  }
  const flag = signs === 'certificate' ? KeyUsageFlags.keyCertSign : KeyUsageFlags.cRLSign;
  if (issuer.keyUsage !== undefined && !hasKeyUsage(issuer, flag)) {
    return [
      {
        path: at,
        code:
          signs === 'certificate'
            ? 'ceremony.config.issuer_without_key_cert_sign'
            : 'ceremony.config.issuer_without_crl_sign',
        message: `has no ${signs === 'certificate' ? 'keyCertSign' : 'cRLSign'} key usage (RFC 5280 §4.2.1.3)`,
      },
    ];
  }
  return [];
}

/** The issuer key signs the transcript unless another key is named; it must be allowed to (RFC 5280 §4.2.1.3). */
function issuerSignsTranscriptProblems(config: CeremonyConfig, issuer: LoadedCertificate): ConfigProblem[] {
  if (!('issuer' in config)) return [];
  const named = config.transcript['signing-key'];
  const issuerSigns = named === undefined || named === config.issuer['key-label'];
  if (!issuerSigns || issuer.keyUsage === undefined || hasKeyUsage(issuer, KeyUsageFlags.digitalSignature))
    return [];
  return [
    {
      path: 'transcript.signing-key',
      code:
        named === undefined
          ? 'ceremony.config.transcript_signer_missing'
          : 'ceremony.config.transcript_signer_not_allowed',
      message:
        named === undefined
          ? "is required: the issuer certificate's key usage omits digitalSignature, so the issuer key may not sign the transcript (RFC 5280 §4.2.1.3)"
          : "names the issuer key, whose certificate's key usage omits digitalSignature (RFC 5280 §4.2.1.3)",
    },
  ];
}

/**
 * RFC 5280 §5.2.3: CRL numbers of one issuer increase. The CRL named by previous-crl-path must be
 * that issuer's (its signature verifies with the issuer certificate's key), and the new one must
 * come after it in number and in time.
 */
function previousCrlProblems(
  previous: ReadCrl,
  issuer: LoadedCertificate,
  profile: CrlProfile,
): ConfigProblem[] {
  const at = 'crl-profile.previous-crl-path';
  const path = profile['previous-crl-path'];
  const signed = checkCrlSignature(previous, issuer.der);
  if (!signed.ok) {
    return [
      {
        path: at,
        code: 'ceremony.config.previous_crl_not_from_issuer',
        message: `${path} is not a CRL of the issuer: ${signed.reason}`,
      },
    ];
  }
  if (previous.number === undefined || previous.delta) {
    return [
      {
        path: at,
        code: 'ceremony.config.input_invalid',
        message: `${path} is ${previous.delta ? 'a delta CRL' : 'a CRL without a cRLNumber'}: nothing to number after`,
      },
    ];
  }
  const problems: ConfigProblem[] = [];
  if (profile.number !== undefined && BigInt(profile.number) <= previous.number) {
    problems.push({
      path: 'crl-profile.number',
      code: 'ceremony.config.crl_number_not_increasing',
      message: `must be above ${previous.number}, the number of ${path} (RFC 5280 §5.2.3)`,
    });
  }
  if (Date.parse(profile['this-update']) <= previous.thisUpdate.getTime()) {
    problems.push({
      path: 'crl-profile.this-update',
      code: 'ceremony.config.crl_before_previous',
      message: `must be after the thisUpdate of ${path} (${isoSeconds(previous.thisUpdate)})`,
    });
  }
  return problems;
}

async function revokedEntries(
  profile: CrlProfile,
  at: string,
  baseDir: string,
  issuer: LoadedCertificate | undefined,
  attempt: <T>(load: () => Promise<T>) => Promise<T | undefined>,
  problems: ConfigProblem[],
): Promise<RevocationEntry[]> {
  const entries: RevocationEntry[] = [];
  const seen = new Map<string, string>();
  for (const [i, entry] of profile['revoked-certificates'].entries()) {
    const here = `${at}.revoked-certificates.${i}`;
    let serial: string | undefined;
    if (entry.serial !== undefined) {
      serial = entry.serial
        .replace(/:/g, '')
        .toLowerCase()
        .replace(/^(00)+(?=.)/, '');
    } else if (entry['certificate-path'] !== undefined) {
      const cert = await attempt(() =>
        loadCertificate(baseDir, entry['certificate-path']!, `${here}.certificate-path`),
      );
      if (cert && issuer) {
        // RFC 5280 §5.1: a CRL lists only certificates its issuer issued.
        const sameIssuer = cert.certificate.issuer.isEqual(issuer.certificate.subject);
        let signed = false;
        try {
          signed =
            sameIssuer && (await cert.certificate.verify(issuer.certificate, new SignetCryptoEngine()));
        } catch {
          signed = false;
        }
        if (!signed) {
          problems.push({
            path: `${here}.certificate-path`,
            code: 'ceremony.config.not_issued_by_issuer',
            message: `${entry['certificate-path']} was not issued by the CRL's issuer`,
          });
        }
      }
      serial = cert?.serial;
    }
    if (serial === undefined) continue;
    const first = seen.get(serial);
    if (first) {
      problems.push({
        path: here,
        code: 'ceremony.config.duplicate',
        message: `revokes serial ${serial} again (see ${first})`,
      });
    }
    seen.set(serial, here);
    entries.push({
      serial,
      revocationDate: entry['revocation-date'],
      ...(entry.reason ? { reason: entry.reason } : {}),
    });
  }
  return entries;
}
