import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initDataDir } from '../../src/cli/init.ts';
import { type PartitionProcess, startPartitionProcess } from '../../src/hsm/process.ts';
import { hasTool } from '../helpers/tools.ts';

/**
 * Issue #22: three members of one partition, cloned from one backup: the one `signet serve`
 * spawns (reached over mutual TLS, as `signet init --partition-listen` sets it up), one on a Unix
 * socket, one over mutual TLS. kill -9 one during 1,000 concurrent issuances: every request gets a
 * certificate or a clean 503 with Retry-After, every returned certificate is stored, and reconcile
 * over the three audit logs accounts for every signature.
 */
const SIGNET = path.resolve('bin/signet.js');
const haveOpenssl = hasTool('openssl', ['version']);
const CI = process.env.CI === 'true';
const REQUESTS = 1000;

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer();
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

function signet(args: string[]) {
  return spawnSync(process.execPath, [SIGNET, ...args], { encoding: 'utf8', timeout: 120_000 });
}

function partitionPid(socket: string): number {
  const ps = spawnSync('pgrep', ['-f', `hsm serve --socket ${socket}`], { encoding: 'utf8' });
  const pids = ps.stdout.trim().split('\n').filter(Boolean).map(Number);
  if (pids.length !== 1)
    throw new Error(`expected one partition process for ${socket}, found ${pids.length}`);
  return pids[0]!;
}

describe.skipIf(!haveOpenssl && !CI)('a partition of three members, one killed under load', () => {
  let dir: string;
  let dataDir: string;
  let csr: Buffer;
  let apiKey: string;
  let port: number;
  const members: PartitionProcess[] = [];
  let node: ChildProcess | undefined;
  let log = '';

  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'signet-cluster-'));
    dataDir = path.join(dir, 'data');
    port = await freePort();
    const [spawnedPort, tlsPort] = [await freePort(), await freePort()];
    await initDataDir({
      dataDir,
      port,
      publicUrl: `http://127.0.0.1:${port}`,
      partitionListen: `tls://127.0.0.1:${spawnedPort}`,
    });
    apiKey = readFileSync(path.join(dataDir, 'secrets', 'admin-api-key'), 'utf8').trim();
    const secretFile = path.join(dataDir, 'secrets', 'unseal-issuing');
    const link = path.join(dataDir, 'secrets', 'link');

    // Two clones of the issuing partition, from one backup.
    const backup = path.join(dir, 'issuing.backup');
    expect(
      signet(['hsm', 'backup', '--dir', path.join(dataDir, 'hsm', 'issuing'), '--out', backup]).status,
    ).toBe(0);
    for (const clone of ['m2', 'm3']) {
      const restored = signet([
        'hsm',
        'restore',
        '--in',
        backup,
        '--dir',
        path.join(dir, clone),
        '--secret-file',
        secretFile,
      ]);
      expect(restored.status, restored.stderr).toBe(0);
    }
    // Served apart, as members on other machines would be; they start sealed and the node unseals them.
    members.push(
      await startPartitionProcess({ dir: path.join(dir, 'm2'), socketPath: path.join(dir, 'm2.sock') }),
      await startPartitionProcess({
        dir: path.join(dir, 'm3'),
        socketPath: path.join(dir, 'm3.sock'),
        args: [
          '--listen',
          `tls://127.0.0.1:${tlsPort}`,
          '--tls-cert',
          path.join(link, 'server.crt'),
          '--tls-key',
          path.join(link, 'server.key'),
          '--client-ca',
          path.join(link, 'ca.crt'),
        ],
      }),
    );
    const configFile = path.join(dataDir, 'signet.yaml');
    const config = readFileSync(configFile, 'utf8');
    expect(config).toContain(`url: tls://127.0.0.1:${spawnedPort}`);
    writeFileSync(
      configFile,
      config.replace(
        /^( {8}listen: .*\n)/m,
        `$1      - socket: ${path.join(dir, 'm2.sock')}\n      - { url: 'tls://127.0.0.1:${tlsPort}', cert: secrets/link/client.crt, key: secrets/link/client.key, ca: secrets/link/ca.crt }\n`,
      ),
    );

    const made = spawnSync('openssl', [
      'req',
      '-new',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-keyout',
      path.join(dir, 'k.pem'),
      '-subj',
      '/CN=cluster.example.com',
      '-addext',
      'subjectAltName=DNS:cluster.example.com',
      '-outform',
      'DER',
      '-out',
      path.join(dir, 'c.der'),
    ]);
    expect(made.status).toBe(0);
    csr = readFileSync(path.join(dir, 'c.der'));
  }, 180_000);

  afterAll(async () => {
    if (node && node.exitCode === null) {
      node.kill('SIGTERM');
      await new Promise((r) => node!.once('exit', r));
    }
    for (const member of members) await member.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const metrics = async () =>
    (
      await fetch(`http://127.0.0.1:${port}/metrics`, { headers: { authorization: `Bearer ${apiKey}` } })
    ).text();

  it('answers every request with a certificate or a clean 503, stores each, and reconcile accounts for every signature', async () => {
    node = spawn(process.execPath, [SIGNET, 'serve', '--data', dataDir], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, SIGNET_LOG_LEVEL: 'info' },
    });
    node.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
      log += chunk;
    });
    node.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
      log += chunk;
    });
    const deadline = Date.now() + 90_000;
    for (;;) {
      const ready = await fetch(`http://127.0.0.1:${port}/readyz`).catch(() => undefined);
      if (ready?.status === 200) break;
      if (Date.now() > deadline || node.exitCode !== null)
        throw new Error(`the node did not become ready:\n${log}`);
      await new Promise((r) => setTimeout(r, 250));
    }
    // All three members usable before the load starts.
    for (let i = 0; ; i++) {
      const text = await metrics();
      const up = text.match(/signet_partition_member_state\{[^}]*state="up"[^}]*\} 1/g) ?? [];
      if (up.length === 3) break;
      if (i > 100) throw new Error(`three members never up:\n${text}`);
      await new Promise((r) => setTimeout(r, 100));
    }

    const spawnedSocket = path.join(dataDir, 'hsm', 'issuing.sock');
    const victim = partitionPid(spawnedSocket);
    let answered = 0;
    const results = await Promise.all(
      Array.from({ length: REQUESTS }, async () => {
        // Let a first part of the load through, then kill the spawned member with SIGKILL mid-stream.
        const response = await fetch(`http://127.0.0.1:${port}/v1/certificates?policy=web-server`, {
          method: 'POST',
          headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/pkcs10' },
          body: csr,
        });
        answered += 1;
        if (answered === 150) process.kill(victim, 'SIGKILL');
        const body = await response.text();
        return {
          status: response.status,
          retryAfter: response.headers.get('retry-after'),
          certificate:
            response.status === 201 ? (JSON.parse(body) as { certificate: string }).certificate : '',
        };
      }),
    );
    const issued = results.filter((r) => r.status === 201);
    const refused = results.filter((r) => r.status !== 201);
    for (const r of refused) {
      expect(r.status).toBe(503);
      expect(r.retryAfter).not.toBeNull();
    }
    // Failover retries what the dead member had in flight: the goal is no refusal at all.
    console.log(`cluster failover: ${issued.length} issued, ${refused.length} refused (503) of ${REQUESTS}`);
    expect(refused.length).toBe(0);

    const text = await metrics();
    const failovers = [...text.matchAll(/signet_partition_member_failovers\{[^}]*\} (\d+)/g)].reduce(
      (sum, m) => sum + Number(m[1]),
      0,
    );
    // The kill was seen: either requests in flight on the dead member were retried on another
    // (failovers), or the client marked it down before sending it more (a failure counted), which
    // happens when no signature happened to be in flight on it at the moment of the kill.
    const markedDown = [
      ...text.matchAll(/signet_partition_member_failures_total\{[^}]*state="down"[^}]*\} (\d+)/g),
    ].reduce((sum, m) => sum + Number(m[1]), 0);
    console.log(
      `cluster failover: ${failovers} requests retried on another member; member marked down ${markedDown} times`,
    );
    expect(failovers + markedDown).toBeGreaterThan(0);
    expect(log).toContain('partition process died (signal SIGKILL)');

    // Every certificate returned is stored, under its own serial.
    const serials = new Set(issued.map((r) => new X509Certificate(r.certificate).serialNumber.toLowerCase()));
    expect(serials.size).toBe(issued.length);
    for (const serial of serials) {
      const response = await fetch(`http://127.0.0.1:${port}/v1/certificates/${serial}`, {
        headers: { authorization: `Bearer ${apiKey}` },
      });
      expect(response.status).toBe(200);
    }

    // The spawned member came back by itself and is used again.
    for (let i = 0; ; i++) {
      const up = (await metrics()).match(/signet_partition_member_state\{[^}]*state="up"[^}]*\} 1/g) ?? [];
      if (up.length === 3) break;
      if (i > 200) throw new Error('the killed member never came back');
      await new Promise((r) => setTimeout(r, 100));
    }

    node.kill('SIGTERM');
    await new Promise((r) => node!.once('exit', r));
    for (const member of members) await member.stop();
    const reconcile = signet([
      'audit',
      'reconcile',
      '--data',
      dataDir,
      '--grace',
      'PT0S',
      '--json',
      '--partition-dir',
      path.join(dataDir, 'hsm', 'issuing'),
      '--partition-dir',
      path.join(dir, 'm2'),
      '--partition-dir',
      path.join(dir, 'm3'),
    ]);
    const report = JSON.parse(reconcile.stdout);
    expect(report.signedWithoutRecord).toEqual([]);
    expect(report.certificatesWithoutSignature).toEqual([]);
    expect(report.signedButNotStored).toEqual([]);
    expect(report.signaturesDistinct).toBeGreaterThanOrEqual(issued.length);
    expect(reconcile.status, reconcile.stderr).toBe(0);
  }, 400_000);
});
