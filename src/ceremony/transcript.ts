import { canonicalJson } from '../lib/canonical-json.ts';
import type { Clock } from '../lib/clock.ts';
import type { NetworkObservation } from './network.ts';
import type { WrittenOutput } from './outputs.ts';

/**
 * The ceremony transcript: a JSON record of every step (time, participants, the configuration's
 * SHA-256, each key's URI and public-key fingerprint, each output's path and SHA-256, lint
 * results, the custodian shares created or used) and a markdown rendering of it. The JSON file
 * holds exactly the canonical bytes (canonical-json.ts) that the detached signature covers.
 */

export const TRANSCRIPT_FORMAT = 'signet-ceremony-transcript/1';

export interface TranscriptStep {
  n: number;
  /** RFC 3339, when the step started. */
  time: string;
  name: string;
  result: 'ok' | 'failed';
  detail?: Record<string, string | number | boolean>;
}

export interface TranscriptKey {
  /** What the key is in this ceremony: root, intermediate-0, key, issuer, ... */
  role: string;
  label: string;
  uri: string;
  algorithm: string;
  /** SHA-256 of the SubjectPublicKeyInfo DER, lowercase hex. */
  publicKeySha256: string;
  /** True when this ceremony generated the key. */
  created: boolean;
}

export interface TranscriptLint {
  /** Which certificate or CRL was linted (its output path). */
  subject: string;
  passed: boolean;
  findings: { code: string; severity: string; message: string }[];
}

export interface TranscriptCustodians {
  partition: string;
  threshold: number;
  shares: number;
  /** Shares written when the partition was created, one per custodian. */
  created?: { custodian: string; path: string; sha256: string }[];
  /** Shares presented to unseal: each share's index and the SHA-256 of its file (never the share). */
  used?: { index?: number; sha256: string; custodian?: string }[];
}

export interface TranscriptSigner {
  role: string;
  label: string;
  uri: string;
  publicKeySha256: string;
  /** The signature algorithm (partition mechanism name) over the transcript file's bytes. */
  algorithm: string;
}

export interface Transcript {
  format: typeof TRANSCRIPT_FORMAT;
  ceremony: {
    type: string;
    configFile: string;
    configSha256: string;
    policyUrl: string;
    description?: string;
  };
  participants: { name: string; role: string }[];
  startedAt: string;
  finishedAt: string;
  result: 'completed' | 'failed';
  error?: { code: string; message: string };
  network: NetworkObservation;
  steps: TranscriptStep[];
  keys: TranscriptKey[];
  outputs: WrittenOutput[];
  lint: TranscriptLint[];
  custodians: TranscriptCustodians[];
  signer?: TranscriptSigner;
}

/** Collects a transcript as the ceremony runs; each step announces itself before it starts. */
export class TranscriptRecorder {
  readonly steps: TranscriptStep[] = [];
  readonly keys: TranscriptKey[] = [];
  readonly outputs: WrittenOutput[] = [];
  readonly lint: TranscriptLint[] = [];
  readonly custodians: TranscriptCustodians[] = [];
  signer: TranscriptSigner | undefined;
  readonly startedAt: string;

  constructor(
    private readonly clock: Clock,
    private readonly log: (line: string) => void,
    readonly header: Pick<Transcript, 'ceremony' | 'participants' | 'network'>,
  ) {
    this.startedAt = isoSeconds(clock.now());
  }

  /** Runs one step: says what it is doing, runs it, records the time, its detail and its outcome. */
  async step<T>(
    name: string,
    run: (detail: Record<string, string | number | boolean>) => Promise<T>,
  ): Promise<T> {
    const entry: TranscriptStep = {
      n: this.steps.length + 1,
      time: isoSeconds(this.clock.now()),
      name,
      result: 'ok',
    };
    this.steps.push(entry);
    this.log(`[${entry.n}] ${name} ...`);
    const detail: Record<string, string | number | boolean> = {};
    try {
      const value = await run(detail);
      if (Object.keys(detail).length > 0) entry.detail = detail;
      this.log(`[${entry.n}] ${name}: ok${Object.keys(detail).length ? ` (${describe(detail)})` : ''}`);
      return value;
    } catch (error) {
      entry.result = 'failed';
      if (Object.keys(detail).length > 0) entry.detail = detail;
      this.log(`[${entry.n}] ${name}: FAILED: ${(error as Error).message}`);
      throw error;
    }
  }

  build(result: Transcript['result'], error?: Transcript['error']): Transcript {
    return {
      format: TRANSCRIPT_FORMAT,
      ...this.header,
      startedAt: this.startedAt,
      finishedAt: isoSeconds(this.clock.now()),
      result,
      ...(error ? { error } : {}),
      steps: this.steps,
      keys: this.keys,
      outputs: this.outputs,
      lint: this.lint,
      custodians: this.custodians,
      ...(this.signer ? { signer: this.signer } : {}),
    };
  }
}

const describe = (detail: Record<string, unknown>) =>
  Object.entries(detail)
    .map(([k, v]) => `${k}=${String(v)}`)
    .join(', ');

export const isoSeconds = (d: Date) =>
  new Date(Math.floor(d.getTime() / 1000) * 1000).toISOString().replace('.000Z', 'Z');

/** The bytes of the transcript file, and what its signature covers. */
export function transcriptBytes(transcript: Transcript): Buffer {
  return Buffer.from(`${canonicalJson(transcript)}\n`, 'utf8');
}

/** The readable rendering. Not signed: it is regenerated from, and checked against, the JSON. */
// biome-ignore lint/complexity/noExcessiveLinesPerFunction: one Markdown document written top to bottom, a section at a time
export function renderTranscriptMarkdown(
  t: Transcript,
  { jsonFile, signatureFile, cmsFile }: { jsonFile: string; signatureFile: string; cmsFile?: string },
): string {
  const out: string[] = [];
  const cell = (v: unknown) =>
    String(v ?? '')
      .replace(/\|/g, '\\|')
      .replace(/\r?\n/g, ' ');
  const table = (head: string[], rows: unknown[][]) => {
    out.push(`| ${head.join(' | ')} |`, `|${head.map(() => '---').join('|')}|`);
    for (const row of rows) out.push(`| ${row.map(cell).join(' | ')} |`);
    out.push('');
  };
  out.push(`# Ceremony transcript: ${t.ceremony.type}`, '');
  out.push(
    `This is a rendering of \`${jsonFile}\`; the signed record is that file (signature: \`${signatureFile}\`${cmsFile ? `; CMS SignedData: \`${cmsFile}\`` : ''}).`,
    '',
  );
  table(
    ['Field', 'Value'],
    [
      ['Result', t.result + (t.error ? ` (${t.error.code}: ${t.error.message})` : '')],
      ['Configuration', t.ceremony.configFile],
      ['Configuration SHA-256', t.ceremony.configSha256],
      ['Authorised by', t.ceremony.policyUrl],
      ...(t.ceremony.description ? [['Description', t.ceremony.description]] : []),
      ['Started', t.startedAt],
      ['Finished', t.finishedAt],
    ],
  );
  out.push('## Participants', '');
  table(
    ['Name', 'Role'],
    t.participants.map((p) => [p.name, p.role]),
  );
  out.push('## Network', '');
  out.push(
    t.network.up.length === 0
      ? 'No network interface other than loopback was up.'
      : `Interfaces up: ${t.network.up.join(', ')} (${t.network.allowed ? 'allowed with --allow-network' : 'not allowed'}).`,
    '',
  );
  table(
    ['Interface', 'State', 'Addresses', 'Loopback'],
    t.network.interfaces.map((i) => [i.name, i.state, i.addresses.join(', '), i.loopback ? 'yes' : 'no']),
  );
  out.push('## Steps', '');
  table(
    ['#', 'Time', 'Step', 'Result', 'Detail'],
    t.steps.map((s) => [s.n, s.time, s.name, s.result, s.detail ? describe(s.detail) : '']),
  );
  if (t.custodians.length > 0) {
    out.push('## Custodian shares', '');
    for (const c of t.custodians) {
      out.push(
        c.threshold > 0
          ? `Partition \`${c.partition}\`: ${c.threshold} of ${c.shares} shares unseal it.`
          : `Partition \`${c.partition}\`: shares were presented but it did not report its sealing.`,
        '',
      );
      if (c.created)
        table(
          ['Custodian', 'Share file', 'SHA-256'],
          c.created.map((s) => [s.custodian, s.path, s.sha256]),
        );
      if (c.used)
        table(
          ['Share used (SHA-256)', 'Custodian'],
          c.used.map((s) => [s.sha256, s.custodian ?? '']),
        );
    }
  }
  out.push('## Keys', '');
  table(
    ['Role', 'Label', 'URI', 'Algorithm', 'Public key SHA-256', 'Created'],
    t.keys.map((k) => [k.role, k.label, k.uri, k.algorithm, k.publicKeySha256, k.created ? 'yes' : 'no']),
  );
  out.push('## Lint', '');
  if (t.lint.length === 0) out.push('Nothing was linted.', '');
  for (const l of t.lint) {
    out.push(`- \`${l.subject}\`: ${l.passed ? 'passed' : 'FAILED'}`);
    for (const f of l.findings) out.push(`  - ${f.severity} \`${f.code}\`: ${f.message}`);
  }
  out.push('');
  out.push('## Outputs', '');
  table(
    ['Path', 'Kind', 'Bytes', 'SHA-256'],
    t.outputs.map((o) => [o.path, o.kind, o.bytes, o.sha256]),
  );
  out.push('## Signature', '');
  if (t.signer) {
    out.push(
      `Signed with ${t.signer.algorithm} by the ${t.signer.role} key \`${t.signer.uri}\` (public key SHA-256 \`${t.signer.publicKeySha256}\`).`,
      '',
      'Verify against a key you already trust (see ceremonies/README.md):',
      '',
      '```sh',
      `signet ceremony verify-transcript ${jsonFile} --anchor ROOT_CERTIFICATE_OR_PUBLIC_KEY.pem`,
      ...opensslVerifyCommand(t.signer.algorithm, jsonFile, signatureFile),
      ...(cmsFile ? opensslCmsVerifyCommand(t.signer.algorithm, jsonFile, cmsFile) : []),
      '```',
      '',
    );
  } else {
    out.push('This transcript is not signed: the ceremony failed before its signing key was available.', '');
  }
  return `${out.join('\n')}\n`;
}

/** The openssl command that checks a transcript signature (documented in ceremonies/README.md). */
export function opensslVerifyCommand(algorithm: string, jsonFile: string, signatureFile: string): string[] {
  if (algorithm === 'ed25519') {
    // Pure EdDSA signs the message itself, so openssl dgst cannot be used (RFC 8032 §5.1).
    return [
      `openssl pkeyutl -verify -pubin -inkey signer-pub.pem -rawin -in ${jsonFile} -sigfile ${signatureFile}`,
    ];
  }
  const hash = algorithm.endsWith('sha512') ? 'sha512' : algorithm.endsWith('sha384') ? 'sha384' : 'sha256';
  return [`openssl dgst -${hash} -verify signer-pub.pem -signature ${signatureFile} ${jsonFile}`];
}

/**
 * The command that checks the CMS SignedData against the root alone (RFC 5652). OpenSSL cannot
 * verify Ed25519 CMS signatures (openssl/openssl#11915), so for those it is GnuTLS's certtool.
 */
export function opensslCmsVerifyCommand(algorithm: string, jsonFile: string, cmsFile: string): string[] {
  if (algorithm === 'ed25519') {
    return [
      `certtool --p7-verify --inder --infile ${cmsFile} --load-data ${jsonFile} --load-ca-certificate root.pem`,
    ];
  }
  return [
    `openssl cms -verify -binary -content ${jsonFile} -inform DER -in ${cmsFile} -CAfile root.pem -out /dev/null`,
  ];
}
