/**
 * Reading policy files: YAML with positions kept, so every problem names the file, the line and
 * the key path (`policies/web-server.yaml:12 sans.dns.allow.exact[2]: ...`), then the strict
 * schema, then the meaning checks of compile.ts. A file is all right or it is refused; nothing
 * is half-loaded.
 */

import { readdir, readFile, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { isAlias, isMap, isScalar, isSeq, LineCounter, type Node, parseDocument } from 'yaml';
import type { z } from 'zod';
import { AppError } from '../lib/errors.ts';
import { compilePolicy, type KeyPath } from './compile.ts';
import { KNOWN_KEYS, policySchema } from './schema.ts';
import { printable } from './text.ts';
import type { Policy, PolicyError } from './types.ts';

/** Policy names are used in URLs (/v1/policies/{name}): a slug. */
export const POLICY_NAME = /^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$/;
const MAX_FILE_BYTES = 1 << 20;

export type PolicyResult = { ok: true; policy: Policy } | { ok: false; errors: PolicyError[] };

/** Thrown when the service must not start: at least one policy file is invalid. */
export class PolicyLoadError extends AppError {
  constructor(readonly errors: PolicyError[]) {
    super('policy.load_failed', 'invalid', `invalid policies:\n${errors.map(formatPolicyError).join('\n')}`, {
      errors,
    });
  }
}

/** `file:line path: message`, the form the CLI and the logs print. */
export function formatPolicyError(error: PolicyError): string {
  const where = error.line === undefined ? error.file : `${error.file}:${error.line}`;
  return error.path ? `${where} ${error.path}: ${error.message}` : `${where}: ${error.message}`;
}

/** `sans.dns.allow.exact[2]`. */
export function formatKeyPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const segment of path) {
    if (typeof segment === 'number') out += `[${segment}]`;
    else if (typeof segment === 'string' && /^[A-Za-z_][A-Za-z0-9_-]*$/.test(segment)) {
      out += out ? `.${segment}` : segment;
    } else out += `[${JSON.stringify(String(segment))}]`;
  }
  return out;
}

/** Parses and validates one policy from its text. Pure: no file access. Never throws. */
export function parsePolicy(input: { text: string; file: string; name: string }): PolicyResult {
  try {
    return parsePolicyText(input);
  } catch (error) {
    // Defence in depth: a pathological file (say, nesting deep enough to exhaust the stack in a
    // library) is still a refused file, not a crashed service.
    const reason = error instanceof Error ? error.message : String(error);
    return {
      ok: false,
      errors: [{ file: input.file, path: '', message: `the file could not be read as a policy: ${reason}` }],
    };
  }
}

// biome-ignore lint/complexity/noExcessiveLinesPerFunction: a flat list of field checks, one per policy key, in the order of the file
function parsePolicyText({ text, file, name }: { text: string; file: string; name: string }): PolicyResult {
  const errors: PolicyError[] = [];
  if (!POLICY_NAME.test(name)) {
    errors.push({
      file,
      path: '',
      message: `'${printable(name)}' is not a policy name: lower-case letters, digits and hyphens, as in web-server.yaml`,
    });
  }
  const lineCounter = new LineCounter();
  const document = parseDocument(text, {
    lineCounter,
    prettyErrors: false,
    schema: 'core',
    strict: true,
    // Duplicate keys are found below, where their key path is known.
    uniqueKeys: false,
  });
  const position = (offset: number) => lineCounter.linePos(offset);
  for (const problem of [...document.errors, ...document.warnings]) {
    const { line, col } = position(problem.pos[0]);
    errors.push({ file, line, column: col, path: '', message: problem.message });
  }
  if (errors.length > 0) return { ok: false, errors };
  if (document.contents === null || (isScalar(document.contents) && document.contents.value === null)) {
    return { ok: false, errors: [{ file, path: '', message: 'the file is empty' }] };
  }

  // Where each key is, and whether the YAML is plain: no tags, anchors, aliases or repeated keys.
  const lines: Record<string, number> = {};
  const plain: { path: KeyPath; line: number; message: string }[] = [];
  const lineOfNode = (node: { range?: [number, number, number] | null } | null | undefined) =>
    node?.range ? position(node.range[0]).line : undefined;
  const walk = (node: unknown, path: KeyPath) => {
    if (!node || typeof node !== 'object') return;
    const line = lineOfNode(node as Node) ?? 1;
    if (isAlias(node))
      return plain.push({ path, line, message: 'aliases (*name) are not allowed in policy files' });
    const { anchor, tag } = node as { anchor?: string; tag?: string };
    if (anchor) plain.push({ path, line, message: 'anchors (&name) are not allowed in policy files' });
    if (tag) plain.push({ path, line, message: `tags (${tag}) are not allowed in policy files` });
    if (isMap(node)) {
      const seen = new Set<string>();
      for (const pair of node.items) {
        const keyLine = lineOfNode(pair.key as Node) ?? line;
        if (!isScalar(pair.key) || (pair.key.value !== null && typeof pair.key.value === 'object')) {
          plain.push({ path, line: keyLine, message: 'keys must be plain names' });
          continue;
        }
        const key = String(pair.key.value);
        const keyPath = [...path, key];
        if (seen.has(key)) plain.push({ path: keyPath, line: keyLine, message: 'this key appears twice' });
        seen.add(key);
        lines[formatKeyPath(keyPath)] ??= keyLine;
        walk(pair.key, keyPath);
        walk(pair.value, keyPath);
      }
    } else if (isSeq(node)) {
      node.items.forEach((item, i) => {
        lines[formatKeyPath([...path, i])] ??= lineOfNode(item as Node) ?? line;
        walk(item, [...path, i]);
      });
    }
  };
  walk(document.contents, []);
  const lineOf = (path: readonly PropertyKey[]): number | undefined => {
    for (let n = path.length; n > 0; n--) {
      const line = lines[formatKeyPath(path.slice(0, n))];
      if (line !== undefined) return line;
    }
    return lineOfNode(document.contents as Node);
  };
  for (const { path, line, message } of plain)
    errors.push({ file, line, path: formatKeyPath(path), message });
  if (errors.length > 0) return { ok: false, errors: sortErrors(errors) };

  const value = document.toJS();
  let parsed = policySchema.safeParse(value, { reportInput: true });
  if (!parsed.success) {
    for (const issue of parsed.error.issues) {
      for (const { path, message } of describeIssue(issue)) {
        errors.push({ file, line: lineOf(path), path: formatKeyPath(path), message });
      }
    }
    // Unknown keys are the commonest slip; without them the rest of the file can still be
    // checked for meaning, so one run reports every problem.
    if (!parsed.error.issues.every((issue) => issue.code === 'unrecognized_keys')) {
      return { ok: false, errors: sortErrors(errors) };
    }
    for (const issue of parsed.error.issues)
      removeKeys(value, issue.path, issue.code === 'unrecognized_keys' ? issue.keys : []);
    parsed = policySchema.safeParse(value);
    if (!parsed.success) return { ok: false, errors: sortErrors(errors) };
  }
  const compiled = compilePolicy(parsed.data, { name, file, lines });
  if (!compiled.ok) {
    for (const { path, message } of compiled.problems) {
      errors.push({ file, line: lineOf(path), path: formatKeyPath(path), message });
    }
  }
  if (errors.length > 0) return { ok: false, errors: sortErrors(errors) };
  if (!compiled.ok) return { ok: false, errors: [] };
  return { ok: true, policy: compiled.policy };
}

/**
 * Validates a policy given as a plain value (already parsed from YAML or JSON) rather than as
 * text. Errors name key paths but no lines.
 */
export function parsePolicyValue({
  value,
  file,
  name,
}: {
  value: unknown;
  file: string;
  name: string;
}): PolicyResult {
  const errors: PolicyError[] = [];
  if (!POLICY_NAME.test(name)) {
    errors.push({ file, path: '', message: `'${printable(name)}' is not a policy name` });
  }
  const parsed = policySchema.safeParse(value, { reportInput: true });
  if (!parsed.success) {
    for (const issue of parsed.error.issues) {
      for (const problem of describeIssue(issue))
        errors.push({ file, path: formatKeyPath(problem.path), message: problem.message });
    }
    return { ok: false, errors };
  }
  const compiled = compilePolicy(parsed.data, { name, file, lines: {} });
  if (!compiled.ok) {
    for (const problem of compiled.problems)
      errors.push({ file, path: formatKeyPath(problem.path), message: problem.message });
  }
  if (errors.length > 0 || !compiled.ok) return { ok: false, errors };
  return { ok: true, policy: compiled.policy };
}

function removeKeys(root: unknown, path: readonly PropertyKey[], keys: readonly string[]): void {
  let node = root;
  for (const segment of path) node = (node as Record<PropertyKey, unknown> | undefined)?.[segment];
  if (node && typeof node === 'object') for (const key of keys) delete (node as Record<string, unknown>)[key];
}

function sortErrors(errors: PolicyError[]): PolicyError[] {
  return errors.sort((a, b) => (a.line ?? 0) - (b.line ?? 0));
}

type Issue = z.core.$ZodIssue & { input?: unknown };

/** Zod's issue in the words of a policy author, one message per key path. */
function describeIssue(issue: Issue): { path: PropertyKey[]; message: string }[] {
  const path = issue.path as PropertyKey[];
  switch (issue.code) {
    case 'unrecognized_keys':
      return issue.keys.map((key) => ({ path: [...path, key], message: unknownKey(key) }));
    case 'invalid_type':
      if (issue.input === undefined) return [{ path, message: 'is required' }];
      return [{ path, message: `must be ${article(issue.expected)}, not ${describe(issue.input)}` }];
    case 'invalid_value':
      return [{ path, message: `must be one of ${issue.values.map((v) => String(v)).join(', ')}` }];
    case 'too_small':
      return [
        {
          path,
          message:
            issue.origin === 'array'
              ? `must list at least ${issue.minimum} ${issue.minimum === 1 ? 'entry' : 'entries'}`
              : `must be at least ${issue.minimum}`,
        },
      ];
    case 'too_big':
      return [{ path, message: `must be at most ${issue.maximum}` }];
    default:
      return [{ path, message: issue.message }];
  }
}

function unknownKey(key: string): string {
  const suggestion = [...KNOWN_KEYS].find(
    (known) => editDistance(known.toLowerCase(), key.toLowerCase()) <= 2,
  );
  return `unknown key${suggestion ? `; did you mean '${suggestion}'?` : ''}`;
}

function article(expected: string): string {
  const words: Record<string, string> = {
    string: 'a string',
    number: 'a number',
    int: 'a whole number',
    boolean: 'true or false',
    array: 'a list',
    object: 'a mapping of keys',
  };
  return words[expected] ?? expected;
}

function describe(value: unknown): string {
  if (value === null) return 'empty';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  if (typeof value === 'string')
    return `the string '${printable(value.length > 40 ? `${value.slice(0, 40)}...` : value)}'`;
  if (typeof value === 'number' && !Number.isInteger(value)) return `the fraction ${value}`;
  return `${typeof value} ${String(value)}`;
}

function editDistance(a: string, b: string): number {
  if (Math.abs(a.length - b.length) > 2) return 3;
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min(
        previous[j]! + 1,
        current[j - 1]! + 1,
        previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
    }
    previous = current;
  }
  return previous[b.length]!;
}

/** The policy name a file stands for: `policies/web-server.yaml` is `web-server`. */
export function policyNameOf(path: string): string {
  return basename(path).replace(/\.ya?ml$/, '');
}

export async function loadPolicyFile(path: string): Promise<PolicyResult> {
  let text: string;
  try {
    const info = await stat(path);
    if (!info.isFile())
      return { ok: false, errors: [{ file: path, path: '', message: 'not a regular file' }] };
    if (info.size > MAX_FILE_BYTES) {
      return {
        ok: false,
        errors: [{ file: path, path: '', message: `the file is larger than ${MAX_FILE_BYTES} bytes` }],
      };
    }
    text = await readFile(path, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? 'error';
    return { ok: false, errors: [{ file: path, path: '', message: `cannot read the file (${code})` }] };
  }
  return parsePolicy({ text, file: path, name: policyNameOf(path) });
}

/**
 * Loads every `*.yaml` / `*.yml` file in a folder (other files, such as README.md, are left
 * alone). Returns the policies that loaded and every error; a caller that needs the whole set
 * (the server) treats any error as failure.
 */
export async function loadPolicies(
  dir: string,
): Promise<{ policies: Map<string, Policy>; errors: PolicyError[] }> {
  const policies = new Map<string, Policy>();
  const errors: PolicyError[] = [];
  let entries: string[];
  try {
    entries = await readdir(dir);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? 'error';
    return {
      policies,
      errors: [{ file: dir, path: '', message: `cannot read the policy folder (${code})` }],
    };
  }
  const files = entries.filter((entry) => /\.ya?ml$/.test(entry) && !entry.startsWith('.')).sort();
  const results = await Promise.all(files.map((entry) => loadPolicyFile(join(dir, entry))));
  const fileOf = new Map<string, string>();
  for (const [i, result] of results.entries()) {
    const file = join(dir, files[i]!);
    const name = policyNameOf(file);
    const other = fileOf.get(name);
    if (other !== undefined) {
      errors.push({ file, path: '', message: `${other} already defines the policy '${name}'` });
      continue;
    }
    fileOf.set(name, file);
    if (result.ok) policies.set(result.policy.name, result.policy);
    else errors.push(...result.errors);
  }
  return { policies, errors };
}
