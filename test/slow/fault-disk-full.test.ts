import { spawnSync } from 'node:child_process';
import {
  closeSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { X509Crl } from '@peculiar/x509';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initDataDir } from '../../src/cli/init.ts';
import { hasTool } from '../helpers/tools.ts';
import {
  freePort,
  makeCsrDer,
  type Node,
  type PrivateTmpfs,
  privateTmpfsProblem,
  SIGNET,
  sleep,
  startNode,
  startPrivateTmpfs,
} from './helpers/faults.ts';

/**
 * Issue #29, faults: the data folder's disk fills up. The folder (embedded PGlite and the
 * partition's folder with its audit log) lives on a small tmpfs in a private mount namespace; the
 * test fills it through /proc/PID/root. Issuance and revocation then fail cleanly (a 503 problem
 * document, never a 500, the node alive); once space returns, service resumes by itself and
 * nothing is corrupt: `signet hsm audit verify` passes and reconcile accounts for every signature.
 */
const problem = privateTmpfsProblem();
if (problem && process.env.CI === 'true') throw new Error(`fault-disk-full needs, under CI=true: ${problem}`);
if (problem) console.warn(`skipping the disk-full test: ${problem}`);
const available = !problem && hasTool('openssl', ['version']);

describe.skipIf(!available)('the data folder’s disk is full', () => {
  let dir: string;
  let mount: string;
  let tmpfs: PrivateTmpfs;
  let apiKey: string;
  let node: Node | undefined;

  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'signet-fault-disk-'));
    const seed = path.join(dir, 'seed');
    mount = path.join(dir, 'mnt');
    mkdirSync(mount);
    await initDataDir({ dataDir: seed, port: 8080, publicUrl: 'http://127.0.0.1:8080' });
    apiKey = readFileSync(path.join(seed, 'secrets', 'admin-api-key'), 'utf8').trim();
    const seedMb = Number(spawnSync('du', ['-sm', seed], { encoding: 'utf8' }).stdout.split('\t')[0]);
    tmpfs = await startPrivateTmpfs(mount, seedMb + 48, seed);
  }, 120_000);

  afterAll(async () => {
    await node?.stop();
    tmpfs?.destroy();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('refuses issuance and revocation cleanly while full, and resumes uncorrupted once space returns', async () => {
    const env: NodeJS.ProcessEnv = { ...process.env };
    delete env.DATABASE_URL;
    node = await startNode({ dataDir: mount, port: await freePort(), env, wrapper: tmpfs.wrapper });
    const csr = makeCsrDer(dir, 'disk.example.com');
    const api = (pathname: string, init: RequestInit) =>
      fetch(`${node!.url}${pathname}`, {
        ...init,
        headers: { authorization: `Bearer ${apiKey}`, ...init.headers },
      });
    const issue = () =>
      api('/v1/certificates?policy=web-server', {
        method: 'POST',
        headers: { 'content-type': 'application/pkcs10' },
        body: csr,
      });
    const revoke = (serial: string) =>
      api(`/v1/certificates/${serial}/revoke`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ reason: 'keyCompromise' }),
      });
    const first = await issue();
    expect(first.status).toBe(201);
    const { serialNumber } = (await first.json()) as { serialNumber: string };

    // Fill the tmpfs to the last byte.
    const filler = tmpfs.outside(path.join(mount, 'filler'));
    const fd = openSync(filler, 'w');
    const chunk = Buffer.alloc(1 << 20, 1);
    try {
      for (;;) writeSync(fd, chunk);
    } catch (error) {
      expect((error as NodeJS.ErrnoException).code).toBe('ENOSPC');
    }
    try {
      for (;;) writeSync(fd, chunk.subarray(0, 512));
    } catch {
      // full to the block
    }
    closeSync(fd);

    // Writes that fit in blocks already allocated still succeed: issue until the disk refuses.
    const answers: { status: number; retryAfter: string | null; type: string | null; body: string }[] = [];
    const record = async (response: Response) => {
      answers.push({
        status: response.status,
        retryAfter: response.headers.get('retry-after'),
        type: response.headers.get('content-type'),
        body: await response.text(),
      });
      return answers.at(-1)!;
    };
    for (let i = 0; i < 200 && (await record(await issue())).status === 201; i++);
    await record(await revoke(serialNumber));
    console.log(
      `disk full: ${answers.filter((a) => a.status === 201).length} issued before the first refusal; ` +
        `refusals: ${JSON.stringify(answers.filter((a) => a.status !== 201).map((a) => a.body))}`,
    );
    const refusals = answers.filter((a) => a.status !== 201);
    expect(refusals.length).toBeGreaterThanOrEqual(2);
    for (const refused of refusals) {
      const id = /"requestId":"([^"]+)"/.exec(refused.body)?.[1];
      const logged = node
        .log()
        .split('\n')
        .filter((line) => id && line.includes(id));
      expect(refused.status, `${refused.body}\n${logged.join('\n')}`).toBe(503);
      expect(refused.retryAfter).not.toBeNull();
      expect(refused.type).toContain('application/problem+json');
    }
    expect(node.child.exitCode).toBeNull();

    // Space returns: service resumes by itself.
    unlinkSync(filler);
    const deadline = Date.now() + 30_000;
    let again = await issue();
    while (again.status !== 201 && Date.now() < deadline) {
      await sleep(500);
      again = await issue();
    }
    expect(again.status, await again.clone().text()).toBe(201);
    expect((await revoke(serialNumber)).status).toBe(200);
    for (let i = 0; ; i++) {
      const crl = new X509Crl(
        new Uint8Array(await (await fetch(`${node.url}/crl/dev-intermediate.crl`)).arrayBuffer()),
      );
      if (crl.entries.some((e) => e.serialNumber.toLowerCase() === serialNumber)) break;
      if (i > 100) throw new Error(`the CRL never listed ${serialNumber}:\n${node.log()}`);
      await sleep(100);
    }
    await node.stop();

    // Nothing corrupt: the partition's audit chain verifies, reconcile accounts for every signature.
    const inside = (args: string[]) =>
      spawnSync(tmpfs.wrapper[0]!, [...tmpfs.wrapper.slice(1), process.execPath, SIGNET, ...args], {
        encoding: 'utf8',
        env,
        timeout: 120_000,
      });
    const verified = inside(['hsm', 'audit', 'verify', '--dir', path.join(mount, 'hsm', 'issuing')]);
    expect(verified.status, verified.stdout + verified.stderr).toBe(0);
    const reconciled = inside(['audit', 'reconcile', '--data', mount, '--grace', 'PT0S', '--json']);
    const report = JSON.parse(reconciled.stdout) as Record<string, unknown[]>;
    expect(report.signedWithoutRecord).toEqual([]);
    expect(report.certificatesWithoutSignature).toEqual([]);
    // A certificate signed while its store failed is reported (nobody received it) until revoked.
    if (report.signedButNotStored!.length > 0) {
      expect(reconciled.status).toBe(1);
      const repaired = inside([
        'audit',
        'reconcile',
        '--data',
        mount,
        '--grace',
        'PT0S',
        '--json',
        '--revoke-unstored',
      ]);
      expect(repaired.status, repaired.stderr).toBe(0);
    } else expect(reconciled.status, reconciled.stderr).toBe(0);
  }, 240_000);
});
