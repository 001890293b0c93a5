import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startPartitionProcess } from '../../../src/hsm/process.ts';
import { CA_USER, OFFICER } from '../helpers.ts';

/** `signet hsm serve --p11-socket ...` and `signet hsm certificate`: what the command line accepts. */

function signet(args: string[]): Promise<{ status: number | null; output: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['bin/signet.js', ...args]);
    let output = '';
    child.stdout.on('data', (d) => {
      output += d;
    });
    child.stderr.on('data', (d) => {
      output += d;
    });
    child.on('close', (status) => resolve({ status, output }));
  });
}

let dir: string;
let spec: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'signet-p11s-'));
  spec = join(dir, 'spec.json');
  writeFileSync(spec, JSON.stringify({ users: [OFFICER, CA_USER] }), { mode: 0o600 });
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('signet hsm serve with a PKCS#11 socket', () => {
  it.each([
    [['--p11-user', 'web'], '--p11-socket-group and --p11-user need --p11-socket'],
    [['--p11-socket', 'SAME'], '--p11-socket must differ from --socket'],
    [['--p11-socket', `/tmp/${'x'.repeat(110)}`], 'is too long; pass a shorter --p11-socket'],
  ])('refuses %j as a usage error', async (extra, message) => {
    const socket = join(dir, 'p.sock');
    const args = extra.map((a) => (a === 'SAME' ? socket : a));
    const { status, output } = await signet([
      'hsm',
      'serve',
      '--ephemeral',
      spec,
      '--name',
      'web',
      '--socket',
      socket,
      ...args,
    ]);
    expect(status).toBe(2);
    expect(output).toContain(message);
  });

  it('opens the socket 0600, or 0660 for its group, and removes it on SIGTERM', async () => {
    const p11 = join(dir, 'p11.sock');
    const gid = process.getgid?.() ?? 0;
    const partition = await startPartitionProcess({
      socketPath: join(dir, 'served.sock'),
      name: 'web',
      ephemeral: { users: [OFFICER, CA_USER] },
      args: ['--p11-socket', p11, '--p11-socket-group', String(gid)],
    });
    expect(statSync(p11).mode & 0o777).toBe(0o660);
    expect(statSync(p11).gid).toBe(gid);
    await partition.stop();
    expect(existsSync(p11)).toBe(false);
  });

  it('lists the certificate subcommand', async () => {
    const { status, output } = await signet(['hsm', '--help']);
    expect(status).toBe(0);
    expect(output).toMatch(/certificate\s+store a certificate beside its key/);
    const usage = await signet(['hsm', 'certificate', 'import', '--socket', join(dir, 'none.sock')]);
    expect(usage.status).toBe(2);
    expect(usage.output).toContain('--key URI is required');
  });
});
