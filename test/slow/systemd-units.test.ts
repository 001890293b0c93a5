import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseDocument } from 'yaml';
import { hasTool } from '../helpers/tools.ts';

/**
 * Issue #33 "Running it as a service": the command lines of deploy/systemd/'s units, run as
 * written (their paths moved into a temporary folder, as systemd would start them), serve a CA
 * whose partition is a process of its own, configured the way README "Running Signet as a
 * service" says: the partition folder moved out of the data folder, `spawn: false`, the socket in
 * the runtime folder shared with one group, unsealed by the operator. The separate OS users
 * themselves are test/hsm/custody/separate-user.test.ts; systemd-analyze checks the units in
 * test/deploy/systemd.test.ts.
 */
const SIGNET = path.resolve('bin/signet.js');
const INSTALLED = '/opt/signet/node_modules/.bin/signet';

function execStart(unit: string, replacements: [string, string][]): string[] {
  const line = readFileSync(path.join('deploy/systemd', unit), 'utf8')
    .split('\n')
    .find((l) => l.startsWith('ExecStart='))!
    .slice('ExecStart='.length);
  let command = line;
  for (const [from, to] of replacements) command = command.replaceAll(from, to);
  const [program, ...args] = command.split(/\s+/);
  expect(program).toBe(SIGNET);
  return args;
}

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer();
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

function start(args: string[]): { child: ChildProcess; output: () => string } {
  const child = spawn(process.execPath, [SIGNET, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout!.on('data', (c) => {
    output += c;
  });
  child.stderr!.on('data', (c) => {
    output += c;
  });
  return { child, output: () => output };
}

async function until(what: string, check: () => boolean, ms = 90_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

const exited = (child: ChildProcess) =>
  child.exitCode !== null
    ? Promise.resolve(child.exitCode)
    : new Promise<number | null>((r) => child.once('exit', (code) => r(code)));

describe.skipIf(!hasTool('openssl', ['version']))("the systemd units' command lines", () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'signet-units-'));
  const data = path.join(dir, 'var-lib-signet');
  const hsmState = path.join(dir, 'var-lib-signet-hsm');
  const run = path.join(dir, 'run-signet-hsm');
  const running: ChildProcess[] = [];

  afterAll(async () => {
    for (const child of running) if (child.exitCode === null) child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  it('serve a CA from a partition run apart, unsealed by the operator, and both stop cleanly on SIGTERM', async () => {
    const port = await freePort();
    const init = spawnSync(process.execPath, [SIGNET, 'init', '--data', data, '--port', String(port)], {
      encoding: 'utf8',
      timeout: 180_000,
    });
    expect(init.status, init.stderr).toBe(0);

    // README: the partition folder moves to its own state folder; signet.yaml points at its socket.
    mkdirSync(hsmState, { mode: 0o700 });
    mkdirSync(run);
    renameSync(path.join(data, 'hsm', 'issuing'), path.join(hsmState, 'issuing'));
    const configFile = path.join(data, 'signet.yaml');
    const config = parseDocument(readFileSync(configFile, 'utf8'));
    config.setIn(['partitions', 'issuing', 'dir'], path.join(hsmState, 'issuing'));
    config.setIn(['partitions', 'issuing', 'socket'], path.join(run, 'issuing.sock'));
    config.setIn(['partitions', 'issuing', 'spawn'], false);
    config.deleteIn(['partitions', 'issuing', 'unsealSecretFile']);
    writeFileSync(configFile, config.toString());

    const paths: [string, string][] = [
      [INSTALLED, SIGNET],
      ['/var/lib/signet-hsm', hsmState],
      ['/run/signet-hsm', run],
      ['/var/lib/signet', data],
      ['%i', 'issuing'],
      // The group the CA's user is in; here, this process's own.
      ['signet-hsm-clients', String(process.getgid!())],
    ];
    const partition = start(execStart('signet-hsm@.service', paths));
    running.push(partition.child);
    await until('the partition socket', () => existsSync(path.join(run, 'issuing.sock')));

    // Still sealed: the CA cannot log in and exits non-zero, for systemd to start it again later.
    const early = start(execStart('signet.service', paths));
    running.push(early.child);
    expect(await exited(early.child)).toBe(1);
    expect(early.output()).toMatch(/sealed/i);
    expect(early.output()).not.toContain('unexpected error');

    const unseal = spawnSync(
      process.execPath,
      [
        SIGNET,
        'hsm',
        'unseal',
        '--socket',
        path.join(run, 'issuing.sock'),
        '--secret-file',
        path.join(data, 'secrets', 'unseal-issuing'),
      ],
      { encoding: 'utf8', timeout: 60_000 },
    );
    expect(unseal.status, unseal.stderr).toBe(0);

    const ca = start(execStart('signet.service', paths));
    running.push(ca.child);
    await until(
      'the CA',
      () => ca.output().includes(`serving http://127.0.0.1:${port}`) || ca.child.exitCode !== null,
    );
    expect(ca.child.exitCode, ca.output()).toBe(null);

    // Issue through it (the server holds the folder, so `signet issue` goes through its API).
    const csr = path.join(dir, 'www.csr');
    spawnSync('openssl', [
      'req',
      '-new',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-keyout',
      path.join(dir, 'www.key'),
      '-subj',
      '/CN=www.example.com',
      '-addext',
      'subjectAltName=DNS:www.example.com',
      '-out',
      csr,
    ]);
    const issued = await new Promise<{ status: number | null; stdout: string; stderr: string }>((resolve) => {
      const child = spawn(process.execPath, [SIGNET, 'issue', '--csr', csr, '--data', data], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (c) => {
        stdout += c;
      });
      child.stderr.on('data', (c) => {
        stderr += c;
      });
      child.on('close', (status) => resolve({ status, stdout, stderr }));
    });
    expect(issued.status, issued.stderr).toBe(0);
    expect(issued.stdout.match(/BEGIN CERTIFICATE/g)?.length).toBe(2);

    // systemctl stop sends SIGTERM: each stops cleanly, the CA first.
    ca.child.kill('SIGTERM');
    expect(await exited(ca.child)).toBe(0);
    partition.child.kill('SIGTERM');
    expect(await exited(partition.child)).toBe(0);
    expect(existsSync(path.join(run, 'issuing.sock'))).toBe(false);
  }, 400_000);
});
