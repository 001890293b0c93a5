import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { outputPaths, transcriptCmsPath, transcriptSignaturePath } from '../../ceremony/config-paths.ts';
import { CeremonyError, isConfigInvalid } from '../../ceremony/errors.ts';
import {
  checkTranscriptOutputs,
  verifyTranscript,
  verifyTranscriptCms,
} from '../../ceremony/transcript-signature.ts';
import { validateCeremony } from '../../ceremony/validate.ts';
import { CliError, EXIT, parseCommandArgs, runSubcommand, UsageError } from '../args.ts';

/**
 * `signet ceremony validate|run|verify-transcript`: the offline ceremonies (ceremonies/README.md).
 */
export const USAGE = `usage: signet ceremony <subcommand> [options]

subcommands:
  validate FILE [--output-dir DIR]
      check the configuration and its inputs and outputs without touching a partition
  run FILE [--output-dir DIR] [--allow-network]
           [--officer-pin-file FILE] [--pin-file FILE] [--share-file FILE ...] [--secret-file FILE]
           [--online-officer-pin-file FILE] [--online-pin-file FILE] [--online-secret-file FILE]
      run the ceremony; outputs are never overwritten
  verify-transcript FILE --anchor CERT_OR_PUBKEY [--signature FILE] [--cms FILE] [--outputs-dir DIR]
      check a transcript's detached signature against a key you already trust, and its CMS
      SignedData (FILE.p7s, or --cms) against the anchor certificate

Relative paths in FILE resolve against --output-dir (default: the current folder).
See ceremonies/README.md for every configuration key.`;

export async function run(argv: string[]): Promise<number> {
  try {
    return await runSubcommand(argv, USAGE, {
      validate: validateCommand,
      run: runCommand,
      'verify-transcript': verifyTranscriptCommand,
    });
  } catch (error) {
    // A secret the ceremony needs was not named (checked before any partition is touched): that
    // is a mistake in the command line, not a refusal (issue #33).
    if (
      error instanceof CeremonyError &&
      error.code === 'ceremony.secret_missing' &&
      Array.isArray(error.details?.missing)
    ) {
      throw new UsageError(error.message);
    }
    if (isConfigInvalid(error)) {
      console.error(error.message);
      console.error('signet ceremony: the configuration is refused; nothing was touched');
      return EXIT.failed;
    }
    if (error instanceof CeremonyError) {
      console.error(`signet ceremony: ${error.message} [${error.code}]`);
      return EXIT.failed;
    }
    throw error;
  }
}

function onePositional(positionals: string[], what: string): string {
  if (positionals.length !== 1) throw new UsageError(`expected one ${what}`);
  return positionals[0]!;
}

async function readConfigFile(file: string): Promise<Buffer> {
  try {
    return await readFile(file);
  } catch (error) {
    throw new CliError(`cannot read ${file}: ${(error as NodeJS.ErrnoException).code ?? 'error'}`);
  }
}

async function validateCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs(
    argv,
    { 'output-dir': { type: 'string' }, help: { type: 'boolean', short: 'h' } },
    { allowPositionals: true },
  );
  if (values.help) {
    console.log(USAGE);
    return EXIT.ok;
  }
  const file = onePositional(positionals, 'configuration FILE');
  const baseDir = resolve(values['output-dir'] ?? '.');
  const validated = await validateCeremony({ text: await readConfigFile(file), file, baseDir });
  const { config } = validated;
  console.log(`${file}: a valid ${config['ceremony-type']} ceremony (SHA-256 ${validated.configSha256})`);
  console.log(`authorised by ${config['policy-url']}`);
  console.log('it will write:');
  for (const { at, path } of outputPaths(config)) console.log(`  ${path}  (${at})`);
  return EXIT.ok;
}

async function runCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs(
    argv,
    {
      'output-dir': { type: 'string' },
      'allow-network': { type: 'boolean' },
      'officer-pin-file': { type: 'string' },
      'pin-file': { type: 'string' },
      'share-file': { type: 'string', multiple: true },
      'secret-file': { type: 'string' },
      'online-officer-pin-file': { type: 'string' },
      'online-pin-file': { type: 'string' },
      'online-secret-file': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    { allowPositionals: true },
  );
  if (values.help) {
    console.log(USAGE);
    return EXIT.ok;
  }
  const file = onePositional(positionals, 'configuration FILE');
  const baseDir = resolve(values['output-dir'] ?? '.');
  const text = await readConfigFile(file);
  // Everything is checked before any partition is touched.
  const validated = await validateCeremony({ text, file, baseDir });
  const { runCeremonyFromCli } = await import('../../ceremony/cli-run.ts');
  return runCeremonyFromCli(validated, values);
}

async function verifyTranscriptCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs(
    argv,
    {
      anchor: { type: 'string' },
      signature: { type: 'string' },
      cms: { type: 'string' },
      'outputs-dir': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    { allowPositionals: true },
  );
  if (values.help) {
    console.log(USAGE);
    return EXIT.ok;
  }
  const file = onePositional(positionals, 'transcript FILE');
  if (!values.anchor) throw new UsageError('--anchor CERT_OR_PUBKEY is required: the key you already trust');
  const read = async (path: string, what: string) => {
    try {
      return await readFile(path);
    } catch (error) {
      throw new CliError(`cannot read ${what} ${path}: ${(error as NodeJS.ErrnoException).code ?? 'error'}`);
    }
  };
  const signaturePath = values.signature ?? transcriptSignaturePath(file);
  const transcriptBytes = await read(file, 'transcript');
  const anchorBytes = await read(values.anchor, 'anchor');
  const { transcript, anchor } = verifyTranscript({
    transcript: transcriptBytes,
    signature: await read(signaturePath, 'signature'),
    anchor: anchorBytes,
  });
  console.log(
    `${file}: signature valid; ${transcript.ceremony.type} ceremony ${transcript.result} ` +
      `(${transcript.startedAt} to ${transcript.finishedAt}), configuration SHA-256 ${transcript.ceremony.configSha256}`,
  );
  // The CMS SignedData names its signer by certificate: it is checked when the anchor is one.
  const cmsPath = values.cms ?? transcriptCmsPath(file);
  if (values.cms !== undefined || (anchor.certificate && existsSync(cmsPath))) {
    if (!anchor.certificate) throw new UsageError('--cms needs --anchor to be a certificate (the root)');
    const { path } = await verifyTranscriptCms({
      transcript: transcriptBytes,
      cms: await read(cmsPath, 'CMS signature'),
      anchor: anchorBytes,
    });
    console.log(
      `${cmsPath}: CMS SignedData valid; signer's path to the anchor has ${path.length} certificate(s)`,
    );
  }
  if (values['outputs-dir'] !== undefined) {
    const results = await checkTranscriptOutputs(transcript, resolve(values['outputs-dir']));
    let different = 0;
    for (const r of results) {
      console.log(`  ${r.status.padEnd(9)} ${r.path}`);
      if (r.status === 'different') different++;
    }
    if (different > 0) {
      console.error(`signet ceremony: ${different} output(s) differ from the transcript`);
      return EXIT.failed;
    }
  }
  return EXIT.ok;
}
