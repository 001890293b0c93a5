/**
 * CPU profile summary for the benchmarks (a V8 .cpuprofile of `node --cpu-prof`): self time by
 * module and by function, of the samples inside a window.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO = fileURLToPath(new URL('..', import.meta.url));
interface ProfileNode {
  id: number;
  children?: number[];
  callFrame: { functionName: string; url: string; lineNumber: number };
}

function moduleOf(url: string, functionName: string): string {
  if (!url) return functionName.startsWith('(') ? functionName : '(native)';
  const file = url.replace(/^file:\/\//, '');
  const nm = file.lastIndexOf('/node_modules/');
  if (nm >= 0) {
    const parts = file.slice(nm + '/node_modules/'.length).split('/');
    return parts[0]?.startsWith('@') ? `${parts[0]}/${parts[1]}` : (parts[0] ?? file);
  }
  if (file.startsWith('node:')) return file.split('/').slice(0, 2).join('/');
  const relative = path.relative(REPO, file);
  if (!relative.startsWith('..')) return path.dirname(relative);
  return file;
}

/**
 * Only samples inside [fromUs, toUs] count (the measured load, not start-up or shut-down): V8's
 * profile timestamps and process.hrtime are both CLOCK_MONOTONIC on Linux.
 */
export function summariseProfile(file: string, fromUs: number, toUs: number, requests?: number): string[] {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as {
    nodes: ProfileNode[];
    samples: number[];
    timeDeltas: number[];
    startTime: number;
  };
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const selfUs = new Map<number, number>();
  let at = profile.startTime;
  profile.samples.forEach((id, i) => {
    const delta = profile.timeDeltas[i] ?? 0;
    at += delta;
    if (at < fromUs || at > toUs) return;
    selfUs.set(id, (selfUs.get(id) ?? 0) + delta);
  });
  let total = 0;
  let idle = 0;
  const modules = new Map<string, number>();
  const functions = new Map<string, number>();
  for (const [id, us] of selfUs) {
    const frame = byId.get(id)?.callFrame;
    if (!frame) continue;
    total += us;
    if (frame.functionName === '(idle)') {
      idle += us;
      continue;
    }
    const module = moduleOf(frame.url, frame.functionName);
    modules.set(module, (modules.get(module) ?? 0) + us);
    const fn = `${frame.functionName || '(anonymous)'} ${module}${frame.url ? `/${path.basename(frame.url)}:${frame.lineNumber + 1}` : ''}`;
    functions.set(fn, (functions.get(fn) ?? 0) + us);
  }
  const busy = total - idle;
  const lines = [
    `profile: ${(total / 1e6).toFixed(1)}s of load (warm-up included) sampled on the server's main thread, ${((idle / total) * 100).toFixed(0)}% idle; shares below are of the busy ${(busy / 1e6).toFixed(1)}s`,
    'self time by module:',
  ];
  const top = (map: Map<string, number>, n: number) => [...map].sort((a, b) => b[1] - a[1]).slice(0, n);
  for (const [name, us] of top(modules, 18))
    lines.push(`  ${((us / busy) * 100).toFixed(1).padStart(5)}%  ${name}`);
  lines.push('self time by function (top 15):');
  for (const [name, us] of top(functions, 15))
    lines.push(`  ${((us / busy) * 100).toFixed(1).padStart(5)}%  ${name}`);
  lines.push(
    `steps of an issuance, time on the stack (synchronous parts, callees included)${requests ? ', µs per certificate' : ''}:`,
  );
  for (const [label, us] of phaseTimes(profile.nodes, selfUs)) {
    const perRequest = requests ? `  ${(us / requests).toFixed(0).padStart(5)} µs` : '';
    lines.push(`  ${((us / busy) * 100).toFixed(1).padStart(5)}%${perRequest}  ${label}`);
  }
  return lines;
}

/** Functions of the request path, by name: a sample counts for each one on its stack. */
const PHASES: [string, string][] = [
  ['API key check', 'verifyApiKey'],
  ['CSR parse and signature check', 'parseCsr'],
  ['policy', 'evaluate'],
  ['TBS build', 'buildTbsCertificate'],
  ['lint (issuance token)', 'lintCertificate'],
  ['sign request and post-sign check', 'signCertificate'],
  ['certificate to PEM', 'certificateToPem'],
  ['request log line', 'requestLoggingMiddleware'],
  ['JSON response', 'json'],
];

function phaseTimes(nodes: ProfileNode[], selfUs: Map<number, number>): [string, number][] {
  const parent = new Map<number, number>();
  for (const node of nodes) for (const child of node.children ?? []) parent.set(child, node.id);
  const byId = new Map(nodes.map((node) => [node.id, node]));
  const totals = new Map<string, number>(PHASES.map(([label]) => [label, 0]));
  for (const [id, us] of selfUs) {
    const seen = new Set<string>();
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      const name = byId.get(at)?.callFrame.functionName;
      for (const [label, fn] of PHASES) if (name === fn) seen.add(label);
    }
    for (const label of seen) totals.set(label, (totals.get(label) ?? 0) + us);
  }
  return [...totals];
}
