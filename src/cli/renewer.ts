import { spawn } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { ApiClientError, createApiClient } from '../api/client.ts';
import type { Clock } from '../lib/clock.ts';
import {
  keyMatches,
  readPrivateKey,
  renewalDue,
  renewalJws,
  serialOf,
  writeFilesAtomically,
} from './certificate-files.ts';

/**
 * `signet certificate renew` (issue #32), one shot or as a daemon: renews a certificate once two
 * thirds of its lifetime have passed, by a JWS signed with its key (no API key needed), writes the
 * new leaf and chain atomically beside the old, and runs a command after each renewal (to reload
 * the server that uses it). Time, sleeping, randomness and HTTP are injected so that the daemon's
 * schedule is tested with a fake clock against a real server.
 */

export interface RenewerOptions {
  certFile: string;
  keyFile: string;
  /** Where the leaf followed by the intermediates goes: NAME.chain.pem beside NAME.pem. */
  chainFile: string;
  url: string;
  /** A shell command run after each renewal (`sh -c`). */
  exec?: string;
  clock: Clock;
  /** Resolves after `ms` of the clock's time; rejects when `signal` aborts. */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
  /** In [0, 1): spreads renewals of many clients (jitter). */
  random?: () => number;
  fetch?: typeof fetch;
  log(line: string): void;
}

export type RenewOutcome =
  | { renewed: true; serial: string; notAfter: Date; execStatus?: number | null }
  | { renewed: false; due: Date };

/** The longest wait between failed attempts. */
export const MAX_BACKOFF_MS = 15 * 60_000;
/** The first wait after a failed attempt; each further failure doubles it. */
export const FIRST_BACKOFF_MS = 10_000;

/** A renewal that cannot start from these files: said in one line, never retried. */
export class RenewerError extends Error {
  override readonly name = 'RenewerError';
}

/** A PEM file parsed by `parse`; unreadable or unparsable is a RenewerError naming the file. */
function readPem<T>(file: string, what: string, parse: (bytes: Buffer) => T): T {
  let bytes: Buffer;
  try {
    bytes = readFileSync(file);
  } catch (error) {
    throw new RenewerError(`cannot read ${file}: ${(error as NodeJS.ErrnoException).code ?? 'error'}`, {
      cause: error,
    });
  }
  try {
    return parse(bytes);
  } catch (error) {
    throw new RenewerError(`${file} is not a PEM ${what}`, { cause: error });
  }
}

const readCertificate = (file: string) => readPem(file, 'certificate', (bytes) => new X509Certificate(bytes));
const readKey = (file: string) => readPem(file, 'private key', readPrivateKey);

/** Renews now if due (or `force`); answers what it did. */
export async function renewOnce(options: RenewerOptions, { force = false } = {}): Promise<RenewOutcome> {
  const certificate = readCertificate(options.certFile);
  const key = readKey(options.keyFile);
  if (!keyMatches(certificate, key))
    throw new RenewerError(`${options.keyFile} is not the key of ${options.certFile}`);
  const due = renewalDue(certificate);
  if (!force && options.clock.now() < due) return { renewed: false, due };

  const serial = serialOf(certificate);
  const jws = await renewalJws(key, { serial, now: options.clock.now() });
  const client = createApiClient({ url: options.url, ...(options.fetch ? { fetch: options.fetch } : {}) });
  const { body } = await client.request<{
    serialNumber: string;
    certificate: string;
    chain: string[];
    notAfter: string;
  }>('POST', `/v1/certificates/${serial}/renew`, {
    body: jws,
    headers: { 'content-type': 'application/jose' },
  });
  const pem = (text: string) => (text.endsWith('\n') ? text : `${text}\n`);
  writeFilesAtomically(
    [
      { path: options.certFile, content: pem(body.certificate), mode: 0o644 },
      { path: options.chainFile, content: [body.certificate, ...body.chain].map(pem).join(''), mode: 0o644 },
    ],
    { force: true },
  );
  options.log(
    `renewed ${serial} as ${body.serialNumber}, valid until ${body.notAfter}; wrote ${options.certFile}`,
  );
  const outcome: RenewOutcome = {
    renewed: true,
    serial: body.serialNumber,
    notAfter: new Date(body.notAfter),
  };
  if (options.exec) outcome.execStatus = await runCommand(options.exec, options.log);
  return outcome;
}

function runCommand(command: string, log: (line: string) => void): Promise<number | null> {
  return new Promise((resolve) => {
    const child = spawn('/bin/sh', ['-c', command], { stdio: ['ignore', 'inherit', 'inherit'] });
    child.on('error', (error) => {
      log(`--exec could not start: ${error.message}`);
      resolve(null);
    });
    child.on('exit', (code, signal) => {
      if (code !== 0) log(`--exec exited with ${code ?? signal}`);
      resolve(code);
    });
  });
}

/** Refusals that waiting cannot fix: the daemon stops on them rather than retry forever. */
function isFinal(error: unknown): boolean {
  if (error instanceof RenewerError) return false;
  if (!(error instanceof ApiClientError) || error.status === undefined) return false;
  const code = error.problem?.code ?? '';
  return (
    /^renew\.(certificate_revoked|certificate_expired|key_mismatch|certificate_not_found|client_certificate_invalid)$/.test(
      code,
    ) || /^policy\./.test(code)
  );
}

/**
 * Renews at two thirds of each certificate's lifetime, plus a jitter of up to a twentieth of the
 * lifetime (at most an hour) so that many clients started together do not arrive together, for
 * as long as `signal` does not abort. A failed attempt is retried after 10 s, doubling up to
 * 15 minutes (with jitter too); a refusal that waiting cannot fix (revoked, expired beyond the
 * grace, refused by the policy) ends the daemon with that error.
 */
export async function renewDaemon(options: RenewerOptions, signal?: AbortSignal): Promise<void> {
  const random = options.random ?? Math.random;
  let backoff = FIRST_BACKOFF_MS;
  // One renewal time per certificate, drawn once: re-drawing on each wake-up would drift.
  let target: { serial: string; at: number } | undefined;
  while (!signal?.aborted) {
    const certificate = readCertificate(options.certFile);
    const serial = serialOf(certificate);
    if (target?.serial !== serial) {
      const lifetime = new Date(certificate.validTo).getTime() - new Date(certificate.validFrom).getTime();
      const jitter = Math.floor(random() * Math.min(lifetime / 20, 3_600_000));
      target = { serial, at: renewalDue(certificate).getTime() + jitter };
      options.log(`next renewal of ${options.certFile} at ${new Date(target.at).toISOString()}`);
    }
    const wait = target.at - options.clock.now().getTime();
    if (wait > 0) {
      await options.sleep(wait, signal);
      continue;
    }
    try {
      await renewOnce(options, { force: true });
      backoff = FIRST_BACKOFF_MS;
    } catch (error) {
      if (isFinal(error)) throw error;
      const delay = Math.floor(backoff * (0.5 + random() / 2));
      options.log(
        `renewal failed (${(error as Error).message.split('\n')[0]}); retrying in ${Math.round(delay / 1000)} s`,
      );
      await options.sleep(delay, signal);
      backoff = Math.min(backoff * 2, MAX_BACKOFF_MS);
    }
  }
}

/** setTimeout as `sleep`, in real time, abortable (the daemon's SIGTERM). */
export function realSleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    // setTimeout holds at most 2^31-1 ms (24.8 days); the daemon loop re-reads the clock anyway.
    const timer = setTimeout(done, Math.min(ms, 2 ** 31 - 1));
    function done() {
      signal?.removeEventListener('abort', done);
      clearTimeout(timer);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}
