import { spawn } from 'node:child_process';
import { createPublicKey } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CA_USER, OFFICER, startTestPartition, type TestPartition, tempDir } from './helpers.ts';

/** Runs `signet ...` without blocking the event loop (the partition under test may be in this process's tree). */
function signet(
  args: string[],
  env: NodeJS.ProcessEnv = {},
): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['bin/signet.js', ...args], { env: { ...process.env, ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => {
      stdout += d;
    });
    child.stderr.on('data', (d) => {
      stderr += d;
    });
    child.on('close', (status) => resolve({ status, stdout, stderr }));
  });
}

describe('signet hsm', () => {
  let partition: TestPartition;
  let scratch: ReturnType<typeof tempDir>;
  let officerPin: string;
  let caPin: string;

  beforeAll(async () => {
    partition = await startTestPartition({ name: 'issuing' });
    scratch = tempDir();
    officerPin = join(scratch.dir, 'officer.pin');
    caPin = join(scratch.dir, 'ca.pin');
    writeFileSync(officerPin, `${OFFICER.pin}\n`, { mode: 0o600 });
    writeFileSync(caPin, CA_USER.pin, { mode: 0o600 });
  });

  afterAll(async () => {
    await partition?.stop();
    scratch?.cleanup();
  });

  it('lists its subcommands and exits 2 for an unknown one', async () => {
    const help = await signet(['hsm', '--help']);
    expect(help.status).toBe(0);
    for (const sub of ['serve', 'status', 'keys', 'init', 'unseal', 'user', 'audit', 'backup']) {
      expect(help.stdout).toContain(sub);
    }
    const unknown = await signet(['hsm', 'frobnicate']);
    expect(unknown.status).toBe(2);
    expect(unknown.stderr).toContain("unknown subcommand 'frobnicate'");
  });

  it('shows the status of a served partition, logged in or not', async () => {
    const anonymous = await signet(['hsm', 'status', '--socket', partition.socketPath]);
    expect(anonymous.status).toBe(0);
    expect(anonymous.stdout).toMatch(/partition\s+issuing/);
    expect(anonymous.stdout).toMatch(/state\s+unsealed/);
    const json = await signet(['hsm', 'status', '--socket', partition.socketPath, '--user', 'ca', '--json'], {
      SIGNET_HSM_PIN: CA_USER.pin,
    });
    expect(json.status).toBe(0);
    expect(JSON.parse(json.stdout)).toMatchObject({
      name: 'issuing',
      state: 'unsealed',
      user: { name: 'ca', role: 'user' },
    });
  });

  it('creates, lists, prints and destroys a key as the officer', async () => {
    const created = await signet([
      'hsm',
      'keys',
      'create',
      '--socket',
      partition.socketPath,
      '--pin-file',
      officerPin,
      '--label',
      'cli-key',
      '--algorithm',
      'ecdsa-p384',
      '--purpose',
      'crl',
      '--purpose',
      'ocsp',
    ]);
    expect(created.stderr).toBe('');
    expect(created.status).toBe(0);
    expect(created.stdout).toContain('created hsm:partition=issuing;label=cli-key');

    const listed = await signet([
      'hsm',
      'keys',
      'list',
      '--socket',
      partition.socketPath,
      '--pin-file',
      caPin,
    ]);
    expect(listed.status).toBe(0);
    expect(listed.stdout).toMatch(/cli-key\s+ecdsa-p384\s+crl,ocsp/);

    const pem = await signet([
      'hsm',
      'keys',
      'public',
      '--socket',
      partition.socketPath,
      '--pin-file',
      caPin,
      '--label',
      'cli-key',
    ]);
    expect(pem.status).toBe(0);
    expect(createPublicKey(pem.stdout).asymmetricKeyDetails?.namedCurve).toBe('secp384r1');

    const unconfirmed = await signet([
      'hsm',
      'keys',
      'destroy',
      '--socket',
      partition.socketPath,
      '--pin-file',
      officerPin,
      '--label',
      'cli-key',
    ]);
    expect(unconfirmed.status).toBe(2);
    expect(unconfirmed.stderr).toContain('--yes');

    const destroyed = await signet([
      'hsm',
      'keys',
      'destroy',
      '--socket',
      partition.socketPath,
      '--pin-file',
      officerPin,
      '--label',
      'cli-key',
      '--yes',
    ]);
    expect(destroyed.status).toBe(0);
    const after = await signet([
      'hsm',
      'keys',
      'list',
      '--socket',
      partition.socketPath,
      '--pin-file',
      caPin,
      '--json',
    ]);
    expect(JSON.parse(after.stdout).some((k: { label: string }) => k.label === 'cli-key')).toBe(false);
  });

  it('exits 1 with the partition reason when the crypto user tries to create a key or the PIN is wrong', async () => {
    const asUser = await signet([
      'hsm',
      'keys',
      'create',
      '--socket',
      partition.socketPath,
      '--user',
      'ca',
      '--pin-file',
      caPin,
      '--label',
      'nope',
      '--algorithm',
      'ed25519',
    ]);
    expect(asUser.status).toBe(1);
    expect(asUser.stderr).toContain('hsm.operation_not_permitted');
    const wrongPin = await signet(['hsm', 'keys', 'list', '--socket', partition.socketPath], {
      SIGNET_HSM_PIN: 'wrong-pin-000',
    });
    expect(wrongPin.status).toBe(1);
    expect(wrongPin.stderr).toContain('hsm.pin_incorrect');
  });

  it('exits 1 with hsm.unavailable when no partition serves the socket', async () => {
    const result = await signet(['hsm', 'status', '--socket', join(scratch.dir, 'absent.sock')]);
    expect(result.status).toBe(1);
    expect(result.stderr).toContain('hsm.unavailable');
  });

  it('refuses to serve a second partition on a socket already served', async () => {
    const spec = join(scratch.dir, 'spec.json');
    writeFileSync(spec, JSON.stringify({ users: [] }), { mode: 0o600 });
    const result = await signet([
      'hsm',
      'serve',
      '--ephemeral',
      spec,
      '--name',
      'twin',
      '--socket',
      partition.socketPath,
    ]);
    expect(result.status).toBe(1);
    expect(result.stderr).toContain('already serves');
  });

  it('exits 2 when serve is given neither a folder nor an ephemeral spec', async () => {
    const result = await signet(['hsm', 'serve', '--socket', join(scratch.dir, 'x.sock')]);
    expect(result.status).toBe(2);
    expect(result.stderr).toContain('--dir');
  });
});
