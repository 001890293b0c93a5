import { type ChildProcess, spawn } from 'node:child_process';
import { webcrypto } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as x509 from '@peculiar/x509';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { initDataDir } from '../../src/cli/init.ts';

/**
 * Issue #17: promises a crash must not break, on a real server killed with SIGKILL.
 *
 * - A revocation answered 200 is on the served CRL within crl.debounce (init's PT0.1S) of the restart being
 *   ready, though the server died within 100 ms of answering.
 * - A revocation accepted while the partition is down is on the CRL within the debounce of the
 *   partition coming back, not after the CRL scheduler's retry delay.
 * - Idempotent issuances in flight at the kill: after the restart every retry is answered at once
 *   with the certificate stored for its key (or issues one if none was), never a second one.
 *
 * The partition runs as its own process (`spawn: false`), so the test can stop it and bring it
 * back, and the CA can be killed without waiting for its partition child to notice.
 */
const SIGNET = path.resolve('bin/signet.js');
const DEBOUNCE_MS = 100;
/** How often the CRL writer asks whether the partition can sign again (the scheduler's probeMs). */
const PROBE_MS = 1_000;

let dir: string;
let dataDir: string;
let port: number;
let apiKey: string;
let partition: ChildProcess | undefined;
let server: ChildProcess | undefined;

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const probe = createServer();
    probe.listen(0, '127.0.0.1', () => {
      const { port: free } = probe.address() as { port: number };
      probe.close(() => resolve(free));
    });
  });
}

/** Starts the partition process and resolves once it serves its socket. */
async function startPartition(): Promise<ChildProcess> {
  const child = spawn(
    process.execPath,
    [
      SIGNET,
      'hsm',
      'serve',
      '--dir',
      path.join(dataDir, 'hsm', 'issuing'),
      '--socket',
      path.join(dataDir, 'hsm', 'issuing.sock'),
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let log = '';
  child.stderr!.on('data', (chunk: Buffer) => {
    log += chunk.toString();
  });
  for (let i = 0; i < 600 && !log.includes('serving on'); i++) {
    if (child.exitCode !== null) throw new Error(`the partition exited: ${log}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  if (!log.includes('serving on')) throw new Error(`the partition did not start: ${log}`);
  return child;
}

function serve(): ChildProcess {
  return spawn(process.execPath, [SIGNET, 'serve', '--data', dataDir, '--port', String(port)], {
    stdio: ['ignore', 'ignore', 'ignore'],
    env: { ...process.env, SIGNET_LOG_LEVEL: 'warn' },
  });
}

async function kill(child: ChildProcess | undefined, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill(signal);
  await exited;
}

async function waitReady(timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      if ((await fetch(`http://127.0.0.1:${port}/readyz`)).status === 200) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('the server did not become ready');
}

const api = (pathname: string, init: RequestInit = {}) =>
  fetch(`http://127.0.0.1:${port}${pathname}`, {
    ...init,
    headers: { authorization: `Bearer ${apiKey}`, ...(init.headers ?? {}) },
  });

/** A new P-256 key and a PEM CSR for `name`.example.com. */
async function makeCsr(name: string): Promise<string> {
  const keys = (await webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, false, [
    'sign',
    'verify',
  ])) as webcrypto.CryptoKeyPair;
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: `CN=${name}.example.com`,
    keys,
    signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
    extensions: [new x509.SubjectAlternativeNameExtension([{ type: 'dns', value: `${name}.example.com` }])],
  });
  return csr.toString('pem');
}

async function issue(csr: string, idempotencyKey?: string): Promise<Response> {
  return api('/v1/certificates', {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      ...(idempotencyKey ? { 'idempotency-key': idempotencyKey } : {}),
    },
    body: JSON.stringify({ csr, policy: 'web-server' }),
  });
}

async function revoke(serial: string): Promise<Response> {
  return api(`/v1/certificates/${serial}/revoke`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ reason: 'keyCompromise' }),
  });
}

/** Serials on the served CRL of dev-intermediate; none while there is no CRL yet. */
async function crlSerials(): Promise<string[]> {
  const response = await fetch(`http://127.0.0.1:${port}/crl/dev-intermediate.crl`);
  if (response.status !== 200) return [];
  const crl = new x509.X509Crl(new Uint8Array(await response.arrayBuffer()));
  return crl.entries.map((entry) => entry.serialNumber.toLowerCase());
}

/** Milliseconds until the served CRL lists `serial` (polled every 100 ms), or the timeout. */
async function msUntilListed(serial: string, timeoutMs: number): Promise<number> {
  const started = Date.now();
  while (Date.now() - started < timeoutMs) {
    if ((await crlSerials()).includes(serial)) return Date.now() - started;
    await new Promise((r) => setTimeout(r, 100));
  }
  return Number.POSITIVE_INFINITY;
}

/** Each test starts with a running partition and server, whatever an earlier test left. */
async function ensureRunning(): Promise<void> {
  if (!partition || partition.exitCode !== null || partition.signalCode !== null) {
    partition = await startPartition();
  }
  if (!server || server.exitCode !== null || server.signalCode !== null) {
    server = serve();
    await waitReady();
  }
}

async function issuedSerial(name: string): Promise<string> {
  const response = await issue(await makeCsr(name));
  expect(response.status).toBe(201);
  return ((await response.json()) as { serialNumber: string }).serialNumber;
}

describe('promises that survive a crash', () => {
  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'signet-promises-'));
    dataDir = path.join(dir, 'data');
    port = await freePort();
    await initDataDir({ dataDir, port, publicUrl: `http://127.0.0.1:${port}` });
    apiKey = readFileSync(path.join(dataDir, 'secrets', 'admin-api-key'), 'utf8').trim();
    const config = path.join(dataDir, 'signet.yaml');
    writeFileSync(config, readFileSync(config, 'utf8').replace('spawn: true', 'spawn: false'));
  }, 180_000);

  beforeEach(ensureRunning, 120_000);

  afterAll(async () => {
    await kill(server, 'SIGTERM');
    await kill(partition, 'SIGTERM');
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('publishes a revocation answered just before a kill -9 within the debounce of the restart', async () => {
    const serial = await issuedSerial('kill-revoke');
    // The first CRL exists and is fresh: without durable owed work nothing would make another.
    expect(await msUntilListed('no-such-serial', 0)).toBe(Number.POSITIVE_INFINITY);
    const answered = await revoke(serial);
    const answeredAt = Date.now();
    const exited = new Promise((r) => server!.once('exit', r));
    server!.kill('SIGKILL');
    expect(Date.now() - answeredAt).toBeLessThan(100);
    expect(answered.status).toBe(200);
    await exited;

    server = serve();
    await waitReady();
    const ms = await msUntilListed(serial, 10_000);
    // The debounce, plus making, signing and saving the CRL on a busy machine.
    expect(ms).toBeLessThanOrEqual(DEBOUNCE_MS + 1_000);
  });

  it('publishes a revocation accepted while the partition was down within the debounce of its return', async () => {
    const serial = await issuedSerial('partition-down');
    await kill(partition);
    expect((await revoke(serial)).status).toBe(200);
    // Longer than the debounce and the scheduler's first retries (5 s, then 10 s, then 20 s), so
    // that a CRL made after the return could only come from watching for it.
    await new Promise((r) => setTimeout(r, 22_000));
    expect(await crlSerials()).not.toContain(serial);
    partition = await startPartition();
    const ms = await msUntilListed(serial, 10_000);
    expect(ms).toBeLessThanOrEqual(PROBE_MS + DEBOUNCE_MS + 1_000);
  }, 120_000);

  it('answers every idempotent retry after a kill -9 with the certificate stored for its key, never two', async () => {
    const KEYS = 160;
    // Killed mid-stream: requests at every stage (before their record, in flight, stored but not
    // yet answered) die with the server.
    const ANSWERS_BEFORE_KILL = 20;
    const names = Array.from({ length: KEYS }, (_, i) => `idem-${i}`);
    const csrs = await Promise.all(names.map(makeCsr));
    const received = new Map<string, string>();
    const sent = new Set<string>();
    let next = 0;
    let killed = false;
    let answers = 0;
    let answered!: () => void;
    const enoughAnswers = new Promise<void>((resolve) => {
      answered = resolve;
    });
    const worker = async () => {
      while (!killed && next < KEYS) {
        const i = next++;
        sent.add(names[i]!);
        try {
          const response = await issue(csrs[i]!, names[i]);
          if (++answers === ANSWERS_BEFORE_KILL) answered();
          if (response.status === 201) {
            received.set(names[i]!, ((await response.json()) as { serialNumber: string }).serialNumber);
          }
        } catch {
          return; // the server is gone
        }
      }
    };
    const workers = Array.from({ length: 64 }, worker);
    await Promise.race([enoughAnswers, new Promise((r) => setTimeout(r, 30_000))]);
    expect(answers).toBeGreaterThanOrEqual(ANSWERS_BEFORE_KILL);
    killed = true;
    await kill(server);
    await Promise.all(workers);
    const inFlight = [...sent].filter((name) => !received.has(name));
    expect(inFlight.length).toBeGreaterThan(0);

    server = serve();
    await waitReady();
    // Every key that reached the server is answered at once (no 409), with one certificate each.
    for (const name of sent) {
      const response = await issue(csrs[names.indexOf(name)]!, name);
      expect(response.status, name).toBe(201);
      const { serialNumber } = (await response.json()) as { serialNumber: string };
      if (received.has(name)) {
        expect(serialNumber, name).toBe(received.get(name));
        expect(response.headers.get('idempotent-replayed')).toBe('true');
      }
    }
    const bySubject = new Map<string, number>();
    let cursor: string | null = null;
    do {
      const page = (await (
        await api(`/v1/certificates?limit=500${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`)
      ).json()) as { items: { subject: string }[]; nextCursor: string | null };
      for (const item of page.items) bySubject.set(item.subject, (bySubject.get(item.subject) ?? 0) + 1);
      cursor = page.nextCursor;
    } while (cursor);
    for (const name of sent) {
      const subject = [...bySubject.keys()].find((s) => s.includes(`CN=${name}.example.com`));
      expect(subject, name).toBeDefined();
      expect(bySubject.get(subject!), name).toBe(1);
    }
  }, 120_000);
});
