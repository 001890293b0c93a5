import { existsSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { loadConfig, resolveDataDir, resolveIn } from '../../config/config.ts';
import { formatDuration } from '../../lib/duration.ts';
import { isAppError } from '../../lib/errors.ts';
import { evaluate } from '../../policy/evaluate.ts';
import { formatPolicyError, loadPolicies, loadPolicyFile } from '../../policy/load.ts';
import type { Decision, Evaluation, Policy, RequestOverrides, Violation } from '../../policy/types.ts';
import { parseCsr } from '../../x509/csr.ts';
import type { San } from '../../x509/types.ts';
import { CliError, EXIT, parseCommandArgs, runSubcommand, UsageError } from '../args.ts';

/**
 * `signet policy lint|check`: validate policy files, and dry-run a CSR against one policy,
 * showing how each requested name was decided and by which rule (policies/README.md).
 */
export const USAGE = `usage: signet policy <subcommand> [options]

subcommands:
  lint [DIR|FILE] [--data DIR]
      validate every policy in DIR, or one file; exit 0 if all are valid
  check --policy NAME --csr FILE [--dir DIR] [--data DIR] [--validity DURATION]
        [--san TYPE:VALUE ...] [--json]
      dry run: evaluate a CSR (PEM or DER) against the policy NAME in DIR and list each
      decision with the rule that made it; nothing is signed.
      --validity and --san act as the API request's overrides (e.g. --san dns:www.example.com).
      Exit 0 if the CSR would be issued, 1 if it would be refused.

Without a folder, both read the policies the server reads: signet.yaml's policies.dir in the
data folder (--data, else $SIGNET_DATA, else ./data); with no data folder there, ./policies.

See policies/README.md for the format and every violation code.`;

/**
 * The policy folder the server on this data folder reads (issue #33: the server reads
 * DATA/policies, so a dry run against ./policies answers for the wrong files). A data folder
 * named by --data or SIGNET_DATA must be initialised; ./data is used when it is, and a checkout
 * without one lints its shipped ./policies.
 */
function defaultPolicyDir(data: string | undefined): string {
  const dataDir = resolveDataDir(data);
  const named = data !== undefined || Boolean(process.env.SIGNET_DATA);
  if (!named && !existsSync(join(dataDir, 'signet.yaml'))) return 'policies';
  return resolveIn(dataDir, loadConfig(dataDir).policies.dir);
}

export function run(argv: string[]): Promise<number> {
  return runSubcommand(argv, USAGE, { lint, check });
}

async function lint(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs(
    argv,
    { data: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
    { allowPositionals: true },
  );
  if (values.help) {
    console.log(USAGE);
    return EXIT.ok;
  }
  if (positionals.length > 1) throw new UsageError(`expected at most one folder or file`);
  const target = positionals[0] ?? defaultPolicyDir(values.data);
  const isFile = await stat(target).then(
    (info) => info.isFile(),
    () => false,
  );
  const { names, errors } = isFile ? await lintFile(target) : await lintDir(target);
  for (const error of errors) console.error(formatPolicyError(error));
  if (errors.length > 0) {
    console.error(`signet policy: ${errors.length} problem${errors.length === 1 ? '' : 's'} in ${target}`);
    return EXIT.failed;
  }
  console.log(
    `${names.length} ${names.length === 1 ? 'policy' : 'policies'} valid: ${names.join(', ') || '(none)'} (${target})`,
  );
  return EXIT.ok;
}

async function lintFile(file: string) {
  const result = await loadPolicyFile(file);
  return result.ok ? { names: [result.policy.name], errors: [] } : { names: [], errors: result.errors };
}

async function lintDir(dir: string) {
  const { policies, errors } = await loadPolicies(dir);
  return { names: [...policies.keys()].sort(), errors };
}

async function check(argv: string[]): Promise<number> {
  const { values } = parseCommandArgs(argv, {
    policy: { type: 'string' },
    csr: { type: 'string' },
    dir: { type: 'string' },
    data: { type: 'string' },
    validity: { type: 'string' },
    san: { type: 'string', multiple: true },
    json: { type: 'boolean' },
    help: { type: 'boolean', short: 'h' },
  });
  if (values.help) {
    console.log(USAGE);
    return EXIT.ok;
  }
  if (!values.policy) throw new UsageError(`--policy NAME is required`);
  if (!values.csr) throw new UsageError(`--csr FILE is required`);
  const overrides: RequestOverrides = {
    ...(values.validity !== undefined ? { validity: values.validity } : {}),
    ...(values.san !== undefined ? { sans: values.san.map(parseSanOption) } : {}),
  };

  const policy = await findPolicy(values.dir ?? defaultPolicyDir(values.data), values.policy);
  let csrBytes: Buffer;
  try {
    csrBytes = await readFile(values.csr);
  } catch (error) {
    throw new CliError(`cannot read ${values.csr}: ${(error as NodeJS.ErrnoException).code ?? 'error'}`);
  }
  let csr: ReturnType<typeof parseCsr>;
  try {
    csr = parseCsr(new Uint8Array(csrBytes));
  } catch (error) {
    if (isAppError(error)) throw new CliError(`the CSR is refused: ${error.message} [${error.code}]`);
    throw error;
  }
  // A dry run from the command line is the operator's own: no credential binds it.
  const result = evaluate({
    policy,
    csr,
    requester: { id: 'cli', policies: '*' },
    ...(Object.keys(overrides).length > 0 ? { overrides } : {}),
  });
  if (values.json) console.log(JSON.stringify(result, jsonBytes, 2));
  else printEvaluation(policy, csr.sha256, result);
  return result.allowed ? EXIT.ok : EXIT.failed;
}

/** `dns:www.example.com`, `ip:192.0.2.1`, `email:a@example.com`, `uri:spiffe://...`. */
function parseSanOption(text: string): San {
  const colon = text.indexOf(':');
  const type = text.slice(0, colon);
  if (colon < 0 || !['dns', 'ip', 'email', 'uri'].includes(type)) {
    throw new UsageError(`--san takes TYPE:VALUE with TYPE dns, ip, email or uri, not '${text}'`);
  }
  return { type: type as San['type'], value: text.slice(colon + 1) };
}

async function findPolicy(dir: string, name: string): Promise<Policy> {
  for (const extension of ['.yaml', '.yml']) {
    const file = join(dir, `${name}${extension}`);
    const exists = await stat(file).then(
      () => true,
      () => false,
    );
    if (!exists) continue;
    const result = await loadPolicyFile(file);
    if (!result.ok) {
      for (const error of result.errors) console.error(formatPolicyError(error));
      throw new CliError(`the policy '${name}' is invalid; fix it first (signet policy lint ${dir})`);
    }
    return result.policy;
  }
  const { policies } = await loadPolicies(dir);
  const known = [...policies.keys()].sort();
  throw new UsageError(
    `no policy named '${name}' in ${dir}${known.length ? ` (policies: ${known.join(', ')})` : ''}`,
  );
}

function jsonBytes(_key: string, value: unknown): unknown {
  return value instanceof Uint8Array ? Buffer.from(value).toString('base64') : value;
}

function printEvaluation(policy: Policy, sha256: string, result: Evaluation): void {
  const file = basename(policy.source.file);
  const where = (rule: string) => {
    const line = policy.source.lines[rule];
    return line === undefined ? rule : `${rule} (${file}:${line})`;
  };
  console.log(`policy ${policy.name} (${policy.source.file}), CSR sha256 ${sha256}`);
  const rows = result.decisions.map((d: Decision) => [d.outcome, d.field, d.value, where(d.rule), d.reason]);
  for (const line of table(rows)) console.log(`  ${line}`);
  if (result.allowed) {
    const t = result.template;
    console.log(
      `would issue: issuer ${t.issuer}, ${t.sans.length} SAN${t.sans.length === 1 ? '' : 's'}, ` +
        `subject ${t.subject.map((a) => `${a.type}=${a.value}`).join(', ') || '(empty)'}, ` +
        `valid ${formatDuration(t.validitySeconds)}, key usage ${t.keyUsage.join(',')}, EKU ${t.extendedKeyUsage.join(',')}`,
    );
    return;
  }
  console.log(
    `would refuse: ${result.violations.length} violation${result.violations.length === 1 ? '' : 's'}`,
  );
  const violations = result.violations.map((v: Violation) => [
    v.code,
    v.field,
    v.value,
    where(v.rule),
    v.message,
  ]);
  for (const line of table(violations)) console.log(`  ${line}`);
}

/** Columns padded to their widest cell, except the last, which runs on. */
function table(rows: string[][]): string[] {
  const widths: number[] = [];
  for (const row of rows) {
    row.slice(0, -1).forEach((cell, i) => {
      widths[i] = Math.min(Math.max(widths[i] ?? 0, cell.length), 48);
    });
  }
  return rows.map((row) =>
    row.map((cell, i) => (i < row.length - 1 ? cell.padEnd(widths[i] ?? 0) : cell)).join('  '),
  );
}
