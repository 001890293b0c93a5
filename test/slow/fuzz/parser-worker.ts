/**
 * Runs one parser over mutated inputs in a worker thread (issue #34), so that a parser that
 * never returns is seen by the thread that watches it (parser-fuzz.ts) and stopped, instead of
 * hanging the suite. Before each input it copies the input into shared memory: after a hang the
 * watcher knows exactly which input it was.
 */
import 'reflect-metadata';
import { parentPort, workerData } from 'node:worker_threads';
import { verifyIntermediateForActivation } from '../../../src/ceremony/activation.ts';
import { CeremonyError } from '../../../src/ceremony/errors.ts';
import { fixedClock } from '../../../src/lib/clock.ts';
import { AppError } from '../../../src/lib/errors.ts';
import { createCrlImport } from '../../../src/revocation/crl-import.ts';
import { OcspMalformedError, parseOcspRequest } from '../../../src/revocation/ocsp-request.ts';
import { CsrError, parseCsr } from '../../../src/x509/csr.ts';
import { mutateBytes, Rng } from './mutator.ts';

export interface ParserJob {
  target: 'csr' | 'ocsp' | 'crl' | 'certificate';
  seed: number;
  count: number;
  seeds: Uint8Array[];
  /** Kept inputs, run first. */
  fixtures: Uint8Array[];
  /** certificate: the key, roots and the time the seed is valid at; crl: the issuer's certificate. */
  context: { keyPublicKey?: Uint8Array; roots?: Uint8Array[]; issuerDer?: Uint8Array; now: number };
  /** [length, bytes...] of the input being parsed (64 KiB + 4). */
  current: SharedArrayBuffer;
}

export type ParserMessage =
  | { type: 'progress'; done: number }
  | { type: 'failure'; input: Uint8Array; message: string }
  | { type: 'done'; done: number };

const job = workerData as ParserJob;
const sameAsASeed = (input: Uint8Array) =>
  job.seeds.some((seed) => Buffer.compare(Buffer.from(seed), Buffer.from(input)) === 0);

/** Runs the parser; answers a failure sentence, or undefined when it behaved. */
type Check = (input: Uint8Array) => Promise<string | undefined> | string | undefined;

function expected(
  error: unknown,
  ...classes: (abstract new (
    ...args: never[]
  ) => Error)[]
): string | undefined {
  if (classes.some((c) => error instanceof c)) {
    return (error as Error).message ? undefined : 'refused without a message';
  }
  return `threw ${(error as Error)?.constructor?.name ?? typeof error}: ${(error as Error)?.message ?? String(error)}`;
}

function checks(): Check {
  const { context } = job;
  switch (job.target) {
    case 'csr':
      // The API's own parser; a changed CSR is never accepted (its signature covers it all).
      return (input) => {
        try {
          parseCsr(input);
          return sameAsASeed(input) ? undefined : 'accepted a changed CSR';
        } catch (error) {
          return expected(error, CsrError);
        }
      };
    case 'ocsp':
      return (input) => {
        try {
          parseOcspRequest(input);
          return undefined;
        } catch (error) {
          return expected(error, OcspMalformedError);
        }
      };
    case 'crl': {
      // `signet crl import` and POST /v1/issuers/{id}/crl: parse, check the signature, store.
      const crlImport = createCrlImport({
        issuers: {
          get: async () => ({
            id: 'dev-root',
            certificateDer: context.issuerDer as Uint8Array,
            signsCrlsOnline: false,
          }),
        },
        // Nothing stored yet: every CRL that passes the checks would be saved.
        store: { getLatestInfo: async () => null, saveImported: async () => 'saved' as const },
        clock: fixedClock(new Date(context.now)),
      });
      return async (input) => {
        try {
          await crlImport.importCrl({ issuerId: 'dev-root', der: input });
          return sameAsASeed(input) ? undefined : 'imported a changed CRL';
        } catch (error) {
          return expected(error, AppError);
        }
      };
    }
    case 'certificate':
      // `signet issuer add`: the certificate, its key and its chain to a trusted root.
      return async (input) => {
        try {
          await verifyIntermediateForActivation({
            certificate: input,
            keyPublicKey: context.keyPublicKey as Uint8Array,
            roots: context.roots ?? [],
            clock: fixedClock(new Date(context.now)),
          });
          return sameAsASeed(input) ? undefined : 'accepted a changed certificate';
        } catch (error) {
          return expected(error, CeremonyError);
        }
      };
  }
}

async function main(): Promise<void> {
  const check = checks();
  const view = new Uint8Array(job.current);
  const lengthView = new DataView(job.current);
  const run = async (input: Uint8Array) => {
    const n = Math.min(input.length, view.length - 4);
    lengthView.setUint32(0, n);
    view.set(input.subarray(0, n), 4);
    const message = await check(input);
    if (message) parentPort?.postMessage({ type: 'failure', input, message } satisfies ParserMessage);
  };
  for (const fixture of job.fixtures) await run(fixture);
  const rng = new Rng(job.seed);
  for (let i = 0; i < job.count; i++) {
    await run(mutateBytes(rng, rng.pick(job.seeds), job.seeds));
    if (i % 250 === 249) parentPort?.postMessage({ type: 'progress', done: i + 1 } satisfies ParserMessage);
  }
  parentPort?.postMessage({ type: 'done', done: job.count } satisfies ParserMessage);
}

await main();
