/**
 * A small mutation fuzzer (issue #34): real inputs (seeds) mutated byte by byte and, for JSON,
 * value by value. Deterministic for a seed, so a failure is replayed by its seed and index; the
 * seed changes every run (printed), so each CI run explores new inputs. Every input that once
 * failed is kept under fixtures/<target>/ and replayed first, for ever.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** xorshift128+: fast, reproducible, and not for anything secret (test inputs only). */
export class Rng {
  private a: bigint;
  private b: bigint;
  constructor(seed: number) {
    this.a = BigInt(seed >>> 0) * 0x9e3779b97f4a7c15n + 1n;
    this.b = (this.a ^ 0xdeadbeefcafebaben) | 1n;
    for (let i = 0; i < 8; i++) this.next32();
  }
  next32(): number {
    const mask = (1n << 64n) - 1n;
    let s1 = this.a;
    const s0 = this.b;
    this.a = s0;
    s1 = (s1 ^ (s1 << 23n)) & mask;
    this.b = s1 ^ s0 ^ (s1 >> 17n) ^ (s0 >> 26n);
    return Number(((this.b + s0) & mask) >> 32n);
  }
  /** An integer in [0, n). */
  int(n: number): number {
    return n <= 0 ? 0 : this.next32() % n;
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)] as T;
  }
  bytes(n: number): Uint8Array {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = this.int(256);
    return out;
  }
}

/** Byte values that parsers get wrong: length forms of DER, sign bits, tags, NUL. */
const INTERESTING = [
  0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x0c, 0x13, 0x17, 0x18, 0x1e, 0x30, 0x31, 0x7f, 0x80, 0x81, 0x82,
  0x83, 0x84, 0x85, 0x88, 0xa0, 0xa3, 0xff,
];

/** One to four byte-level mutations of `seed`, with `others` to splice from. */
export function mutateBytes(rng: Rng, seed: Uint8Array, others: readonly Uint8Array[] = []): Uint8Array {
  let out: Buffer = Buffer.from(seed);
  const rounds = 1 + rng.int(4);
  for (let r = 0; r < rounds; r++) out = mutateOnce(rng, out, others);
  return new Uint8Array(out);
}

function mutateOnce(rng: Rng, input: Buffer, others: readonly Uint8Array[]): Buffer {
  const at = rng.int(input.length + 1);
  switch (rng.int(9)) {
    case 0: {
      // flip a bit
      if (input.length === 0) return Buffer.from(rng.bytes(1));
      const out = Buffer.from(input);
      const i = Math.min(at, out.length - 1);
      out[i] = (out[i] as number) ^ (1 << rng.int(8));
      return out;
    }
    case 1: {
      // set an interesting byte
      if (input.length === 0) return Buffer.from([rng.pick(INTERESTING)]);
      const out = Buffer.from(input);
      out[Math.min(at, out.length - 1)] = rng.pick(INTERESTING);
      return out;
    }
    case 2:
      // insert random bytes
      return Buffer.concat([input.subarray(0, at), rng.bytes(1 + rng.int(8)), input.subarray(at)]);
    case 3:
      // delete a run
      return Buffer.concat([input.subarray(0, at), input.subarray(at + 1 + rng.int(16))]);
    case 4:
      // truncate
      return input.subarray(0, at);
    case 5: {
      // duplicate a chunk (nested structures, repeated fields)
      const len = 1 + rng.int(Math.max(1, Math.min(64, input.length - at)));
      return Buffer.concat([input.subarray(0, at), input.subarray(at, at + len), input.subarray(at)]);
    }
    case 6: {
      // splice a chunk of another real input
      const other = others.length ? Buffer.from(rng.pick(others)) : input;
      const from = rng.int(other.length);
      const chunk = other.subarray(from, from + 1 + rng.int(128));
      return Buffer.concat([input.subarray(0, at), chunk, input.subarray(at + rng.int(chunk.length + 1))]);
    }
    case 7: {
      // a DER length turned long-form, huge or indefinite
      const out = Buffer.from(input);
      if (out.length < 2) return Buffer.concat([out, Buffer.from([0x84, 0xff, 0xff, 0xff, 0xff])]);
      const i = 1 + Math.min(at, out.length - 2);
      const forms = [
        [0x80],
        [0x81, out[i] as number],
        [0x84, 0x7f, 0xff, 0xff, 0xff],
        [0x82, 0xff, 0xff],
        [0x00],
      ];
      return Buffer.concat([out.subarray(0, i), Buffer.from(rng.pick(forms)), out.subarray(i + 1)]);
    }
    default:
      // add or subtract a little from a byte (lengths off by one)
      if (input.length === 0) return Buffer.from([0]);
      {
        const out = Buffer.from(input);
        const i = Math.min(at, out.length - 1);
        out[i] = ((out[i] as number) + rng.pick([1, -1, 2, -2, 16, -16, 128])) & 0xff;
        return out;
      }
  }
}

const HOSTILE_STRINGS = [
  '',
  '\u0000',
  'a\u0000b',
  '\ud800',
  '\uffff',
  '../../etc/passwd',
  '%00',
  'x'.repeat(70_000),
  '-----BEGIN CERTIFICATE REQUEST-----',
  '<script>',
  "'; drop table certificates; --",
  '1e309',
  'NaN',
  '__proto__',
  'constructor',
  '*.example.com',
  '192.0.2.1',
  'P99999999Y',
  'PT0S',
  '2026-13-45T25:61:61Z',
];
const HOSTILE_VALUES: unknown[] = [
  null,
  true,
  false,
  0,
  -1,
  1e308,
  -1e308,
  2 ** 53 + 1,
  0.5,
  [],
  {},
  [[[[[[[[[[[]]]]]]]]]]],
  { __proto__: { admin: true } },
  ...HOSTILE_STRINGS,
];

/** A JSON value mutated: fields removed, replaced by hostile values, added, nested, retyped. */
export function mutateJson(rng: Rng, value: unknown, depth = 0): unknown {
  if (depth > 6 || rng.int(4) === 0) return rng.pick(HOSTILE_VALUES);
  if (Array.isArray(value)) {
    const out = value.map((item) => (rng.int(3) === 0 ? mutateJson(rng, item, depth + 1) : item));
    if (rng.int(4) === 0) out.push(rng.pick(HOSTILE_VALUES));
    if (rng.int(8) === 0) return Array.from({ length: 1000 }, () => out[0] ?? null);
    return out;
  }
  if (value && typeof value === 'object') {
    const out: Record<string, unknown> = { ...(value as Record<string, unknown>) };
    const keys = Object.keys(out);
    const key = keys.length ? rng.pick(keys) : 'x';
    switch (rng.int(4)) {
      case 0:
        delete out[key];
        break;
      case 1:
        out[rng.pick(['__proto__', 'constructor', 'extra', key.toUpperCase(), `${key}\u0000`])] =
          rng.pick(HOSTILE_VALUES);
        break;
      default:
        out[key] = mutateJson(rng, out[key], depth + 1);
    }
    return out;
  }
  if (typeof value === 'string' && rng.int(2) === 0) {
    const bytes = mutateBytes(rng, new TextEncoder().encode(value));
    return Buffer.from(bytes).toString('utf8');
  }
  return rng.pick(HOSTILE_VALUES);
}

/** A JSON body as text: a mutated value, or (one time in four) the seed's text mutated byte-wise. */
export function mutateJsonText(rng: Rng, seed: unknown): string {
  if (rng.int(4) === 0)
    return Buffer.from(mutateBytes(rng, Buffer.from(JSON.stringify(seed)))).toString('utf8');
  return JSON.stringify(mutateJson(rng, seed)) ?? 'null';
}

const FIXTURES = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures');

/** The inputs that once failed for `target`, replayed before the new ones. */
export function regressionInputs(target: string): { name: string; bytes: Uint8Array }[] {
  const dir = path.join(FIXTURES, target);
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((name) => name.endsWith('.bin'))
    .sort()
    .map((name) => ({ name, bytes: new Uint8Array(readFileSync(path.join(dir, name))) }));
}

/** Keeps a failing input as a fixture (commit it) and says where. */
export function keepFailure(target: string, bytes: Uint8Array): string {
  const dir = path.join(FIXTURES, target);
  mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `${createHash('sha256').update(bytes).digest('hex').slice(0, 16)}.bin`);
  writeFileSync(file, bytes);
  return file;
}

/** The run's seed: FUZZ_SEED to replay one, else a new one each run. */
export function runSeed(): number {
  const given = process.env.FUZZ_SEED;
  return given ? Number(given) : Math.floor(Date.now() % 2 ** 31);
}

/** Inputs per target, scaled by FUZZ_SCALE (e.g. 0.1 for a quick local run; CI runs 1). */
export function budget(count: number): number {
  const scale = Number(process.env.FUZZ_SCALE ?? '1');
  return Math.max(1, Math.round(count * (Number.isFinite(scale) && scale > 0 ? scale : 1)));
}

/** Totals printed at the end of each file, so the CI log shows how many inputs ran. */
export const tally = new Map<string, number>();
export function printTally(file: string): void {
  const total = [...tally.values()].reduce((a, b) => a + b, 0);
  const parts = [...tally.entries()].map(([target, n]) => `${target} ${n.toLocaleString('en')}`).join(', ');
  console.log(`fuzz ${file}: ${total.toLocaleString('en')} inputs (${parts})`);
}

/** Runs `fn` on `input` and fails if it takes longer than `ms` (a hang). */
export async function bounded<T>(ms: number, what: string, fn: () => Promise<T> | T): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      Promise.resolve().then(fn),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms (a hang)`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
