import { HsmError, isHsmError } from '../hsm/types.ts';
import { type Clock, systemClock } from '../lib/clock.ts';
import { spkiSha256 } from '../x509/keys.ts';
import { crlCeremony } from './ceremonies/crl.ts';
import { hierarchyCeremony } from './ceremonies/hierarchy.ts';
import { keyCeremony } from './ceremonies/key.ts';
import { rootCeremony } from './ceremonies/root.ts';
import { subordinateCeremony } from './ceremonies/subordinate.ts';
import { type CeremonyKey, isoNow, Run, requireUser } from './ceremony-run.ts';
import { type CeremonyConfig, mechanismForKey } from './config.ts';
import { transcriptCmsPath, transcriptMarkdownPath, transcriptSignaturePath } from './config-paths.ts';
import { CeremonyError } from './errors.ts';
import type { CaLinter } from './lint.ts';
import { checkNetwork, type InterfaceProbe } from './network.ts';
import { type WrittenOutput, writeOutputOnce } from './outputs.ts';
import type { PartitionDriver } from './partition.ts';
import {
  renderTranscriptMarkdown,
  type Transcript,
  type TranscriptKey,
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

// biome-ignore lint/complexity/noExcessiveLinesPerFunction: the transcript's closing steps in their one order (sign, write JSON, Markdown, signatures)
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
