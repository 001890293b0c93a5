import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it, test } from 'vitest';
import { openPartitionVault, verifyPin } from '../../../src/hsm/custody/index.ts';
import { newPartition, OFFICER_PIN, tempDir } from './helpers.ts';
import { secretFile, signet } from './served.ts';

describe('signet hsm init', () => {
  it('writes the unseal secret once, mode 0600, and refuses to overwrite it', async () => {
    const base = tempDir();
    const secret = join(base, 'unseal-issuing');
    const officer = secretFile(OFFICER_PIN, 'officer');
    const first = signet([
      'hsm',
      'init',
      '--dir',
      join(base, 'issuing'),
      '--secret-out',
      secret,
      '--officer-pin-file',
      officer,
    ]);
    expect(first.stderr).toBe('');
    expect(first.code).toBe(0);
    expect(first.stdout).toMatch(/partition issuing \([0-9a-f]{32}\) created/);
    expect(statSync(secret).mode & 0o777).toBe(0o600);
    const before = readFileSync(secret);
    const second = signet([
      'hsm',
      'init',
      '--dir',
      join(base, 'other'),
      '--secret-out',
      secret,
      '--officer-pin-file',
      officer,
    ]);
    expect(second.code).toBe(1);
    expect(second.stderr).toMatch(/exists: unseal material is never overwritten/);
    expect(readFileSync(secret)).toEqual(before);
    expect(existsSync(join(base, 'other'))).toBe(false);
  });

  it('writes one file per custodian share, and any M of them unseal the folder (signet hsm unseal --dir)', async () => {
    const base = tempDir();
    const dir = join(base, 'root');
    const shares = join(base, 'shares');
    const init = signet([
      'hsm',
      'init',
      '--dir',
      dir,
      '--shares',
      '4',
      '--threshold',
      '2',
      '--shares-out',
      shares,
      '--officer-pin-file',
      secretFile(OFFICER_PIN, 'officer'),
    ]);
    expect(init.code).toBe(0);
    const files = readdirSync(shares).sort();
    expect(files).toEqual([1, 2, 3, 4].map((i) => `share-root-${i}-of-4.txt`));
    for (const file of files) expect(statSync(join(shares, file)).mode & 0o777).toBe(0o600);
    const two = signet([
      'hsm',
      'unseal',
      '--dir',
      dir,
      '--share-file',
      join(shares, files[3]!),
      '--share-file',
      join(shares, files[1]!),
    ]);
    expect(two.stdout).toMatch(/unseals with this material; 0 keys and 2 users, all intact/);
    expect(two.code).toBe(0);
    const one = signet(['hsm', 'unseal', '--dir', dir, '--share-file', join(shares, files[0]!)]);
    expect(one.code).toBe(1);
    expect(one.stderr).toMatch(/2 shares are needed to unseal, 1 given/);
  });

  test.each([
    ['no --dir', ['hsm', 'init', '--secret-out', 'x']],
    [
      'both a secret and shares',
      ['hsm', 'init', '--dir', 'd', '--secret-out', 'x', '--shares', '3', '--threshold', '2'],
    ],
    [
      'a secret as an argument value',
      ['hsm', 'unseal', '--dir', 'd', '--secret', 'signet-hsm-secret:v1:...'],
    ],
    ['both --socket and --dir', ['hsm', 'unseal', '--socket', 's', '--dir', 'd', '--secret-file', 'f']],
    ['an unknown user action', ['hsm', 'user', 'frobnicate', '--dir', 'd']],
    ['an audit command without --dir', ['hsm', 'audit', 'verify']],
  ])('exits 2 for a usage error: %s', (_name, args) => {
    const result = signet(args);
    expect(result.code).toBe(2);
    // Issue #33's rule: the command, what was wrong, its usage line, and where to read more.
    expect(result.stderr).toMatch(new RegExp(`^signet hsm ${args[1]}: .*\\nusage: signet hsm `));
    expect(result.stderr).toContain(`Run 'signet hsm ${args[1]} --help' for its options.`);
  });
});

describe('signet hsm user on an unserved folder (--dir)', () => {
  it('adds a user after logging in as the officer, audited in the folder', async () => {
    const { dir, secrets } = await newPartition();
    const added = signet([
      'hsm',
      'user',
      'add',
      'ops',
      '--role',
      'user',
      '--dir',
      dir,
      '--secret-file',
      secretFile(secrets.secret!),
      '--pin-file',
      secretFile(OFFICER_PIN, 'officer'),
      '--new-pin-file',
      secretFile('ops-user-pin-1', 'new'),
    ]);
    expect(added.stderr).toBe('');
    expect(added.code).toBe(0);
    const folder = await openPartitionVault({ dir });
    await folder.unseal({ secret: secrets.secret! });
    expect(await verifyPin((await folder.store!.getUser('ops'))!, 'ops-user-pin-1')).toBe(true);
    await folder.close();
    expect(readFileSync(join(dir, 'audit.log'), 'utf8')).toMatch(/"op":"createUser".*"result":"ok"/);
  });

  it('lets the custodians unlock a locked-out officer with the unseal material', async () => {
    const { dir, secrets } = await newPartition();
    let folder = await openPartitionVault({ dir });
    await folder.unseal({ secret: secrets.secret! });
    const officer = (await folder.store!.getUser('officer'))!;
    await folder.store!.putUser({ ...officer, failedLogins: 5, locked: true });
    await folder.close();
    const unlocked = signet([
      'hsm',
      'user',
      'unlock',
      'officer',
      '--dir',
      dir,
      '--custodian',
      '--secret-file',
      secretFile(secrets.secret!),
    ]);
    expect(unlocked.code).toBe(0);
    folder = await openPartitionVault({ dir });
    await folder.unseal({ secret: secrets.secret! });
    expect(await folder.store!.getUser('officer')).toMatchObject({ failedLogins: 0, locked: false });
    await folder.close();
    expect(readFileSync(join(dir, 'audit.log'), 'utf8')).toMatch(
      /"op":"unlockUser".*"subject":"officer".*"user":"\(custodians\)"/,
    );
  });
});
