import { spawn, spawnSync } from 'node:child_process';
import { createPrivateKey } from 'node:crypto';
import {
  copyFileSync,
  existsSync,
  readdirSync,
  readFileSync,
  renameSync,
  statSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it, test } from 'vitest';
import { loadPartition } from '../../../src/hsm/custody/file-store.ts';
import { parseHeader, unsealMasterKey } from '../../../src/hsm/custody/header.ts';
import {
  HEADER_FILE,
  INDEX_FILE,
  initPartition,
  LOCK_FILE,
  openPartitionVault,
  type PartitionFolder,
} from '../../../src/hsm/custody/index.ts';
import { derivePartitionKeys } from '../../../src/hsm/custody/seal.ts';
import { HsmError } from '../../../src/hsm/types.ts';
import { makeKey, newPartition, OFFICER_PIN, TEST_PIN_HASH, tempDir, USER_PIN } from './helpers.ts';

async function unsealed(dir: string, secret: string): Promise<PartitionFolder> {
  const folder = await openPartitionVault({ dir });
  await folder.unseal({ secret: Buffer.from(secret) });
  return folder;
}

async function failure(promise: Promise<unknown>): Promise<HsmError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(HsmError);
  return error as HsmError;
}

function flip(path: string, offset: number, mask = 0x01): void {
  const bytes = readFileSync(path);
  bytes[offset]! ^= mask;
  writeFileSync(path, bytes);
}

describe('initPartition', () => {
  it('creates a sealed partition folder with owner-only permissions and returns its secret once', async () => {
    const { dir, secrets } = await newPartition();
    expect(secrets.secret).toMatch(/^# Signet HSM unseal secret/);
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    for (const name of readdirSync(dir)) {
      if (statSync(join(dir, name)).isFile()) expect(statSync(join(dir, name)).mode & 0o777).toBe(0o600);
    }
    expect(readdirSync(dir).sort()).toEqual(
      ['audit.head', 'audit.log', INDEX_FILE, 'keys', HEADER_FILE].sort(),
    );
    const folder = await openPartitionVault({ dir });
    expect(folder.status()).toEqual({ state: 'sealed', sealing: { kind: 'secret' } });
    await folder.close();
  });

  it('creates the officer and the crypto user ca with their PIN hashes', async () => {
    const { dir, secrets } = await newPartition();
    const folder = await unsealed(dir, secrets.secret!);
    const users = await folder.store!.listUsers();
    expect(
      users.map(({ name, role, failedLogins, locked }) => ({ name, role, failedLogins, locked })),
    ).toEqual([
      { name: 'officer', role: 'officer', failedLogins: 0, locked: false },
      { name: 'ca', role: 'user', failedLogins: 0, locked: false },
    ]);
    for (const user of users) expect(user.pinHash).toMatch(/^\$scrypt\$ln=10,r=8,p=1\$/);
    await folder.close();
  });

  it('writes no partition when saving the secrets fails, so no partition exists without its secret', async () => {
    const dir = join(tempDir(), 'partition');
    const init = initPartition({
      dir,
      name: 'issuing',
      sealing: { kind: 'secret' },
      officerPin: OFFICER_PIN,
      pinHash: TEST_PIN_HASH,
      saveSecrets: async () => {
        throw new Error('disk full');
      },
    });
    await expect(init).rejects.toThrow('disk full');
    expect(existsSync(dir)).toBe(false);
    expect(readdirSync(join(dir, '..'))).toEqual([]);
  });

  test.each([
    ['a folder that is not empty', { dir: 'nonempty' }, /is not empty/],
    ['a bad partition name', { name: 'Issuing!' }, /partition name/],
    ['a short officer PIN', { officerPin: '1234' }, /8 to 256 characters/],
    [
      'a threshold above the share count',
      { sealing: { kind: 'shares', shares: 2, threshold: 3 } },
      /threshold/,
    ],
  ] as const)('refuses %s', async (_name, override, message) => {
    const base = tempDir();
    writeFileSync(join(base, 'x'), 'x');
    const options = {
      dir: join(base, 'partition'),
      name: 'issuing',
      sealing: { kind: 'secret' as const },
      officerPin: OFFICER_PIN,
      pinHash: TEST_PIN_HASH,
      ...override,
      ...('dir' in override ? { dir: base } : {}),
    };
    await expect(initPartition(options as Parameters<typeof initPartition>[0])).rejects.toThrow(message);
  });
});

describe('the sealed file store', () => {
  it('answers sealed until unsealed, then refuses a second unseal', async () => {
    const { dir, secrets } = await newPartition();
    const folder = await openPartitionVault({ dir });
    expect(folder.status().state).toBe('sealed');
    await folder.unseal({ secret: Buffer.from(secrets.secret!) });
    expect(folder.status().state).toBe('unsealed');
    expect((await failure(folder.unseal({ secret: Buffer.from(secrets.secret!) }))).rv).toBe(
      'CKR_OPERATION_NOT_PERMITTED',
    );
    await folder.close();
  });

  it('refuses another partition’s secret and stays sealed', async () => {
    const { dir } = await newPartition();
    const other = await newPartition();
    const folder = await openPartitionVault({ dir });
    const error = await failure(folder.unseal({ secret: Buffer.from(other.secrets.secret!) }));
    expect(error.rv).toBe('CKR_UNSEAL_FAILED');
    expect(error.message).toMatch(/belongs to partition/);
    expect(folder.status().state).toBe('sealed');
    await folder.close();
  });

  it('unseals a shares partition with any 3 of its 5 shares', async () => {
    const { dir, secrets } = await newPartition({ sealing: { kind: 'shares', shares: 5, threshold: 3 } });
    for (const chosen of [
      [0, 1, 2],
      [4, 2, 0],
      [1, 3, 4],
    ]) {
      const folder = await openPartitionVault({ dir });
      await folder.unseal({ shares: chosen.map((i) => Buffer.from(secrets.shares![i]!)) });
      expect(folder.status()).toEqual({
        state: 'unsealed',
        sealing: { kind: 'shares', threshold: 3, shares: 5 },
      });
      await folder.close();
    }
    const folder = await openPartitionVault({ dir });
    expect((await failure(folder.unseal({ shares: secrets.shares!.slice(0, 2) }))).rv).toBe(
      'CKR_UNSEAL_FAILED',
    );
    await folder.close();
  });

  it('keeps keys, deletions and users across a reopen', async () => {
    const { dir, secrets } = await newPartition();
    const [a, b] = [makeKey('ca-a'), makeKey('ca-b', 'ed25519')];
    let folder = await unsealed(dir, secrets.secret!);
    await folder.store!.putKey(a);
    await folder.store!.putKey(b);
    await folder.store!.deleteKey(a.id);
    const ca = (await folder.store!.getUser('ca'))!;
    await folder.store!.putUser({ ...ca, failedLogins: 5, locked: true });
    await folder.close();

    folder = await unsealed(dir, secrets.secret!);
    expect((await folder.store!.listKeys()).map((key) => key.label)).toEqual(['ca-b']);
    expect(await folder.store!.getKey(b.id)).toEqual(b);
    expect(await folder.store!.getUser('ca')).toMatchObject({ failedLogins: 5, locked: true });
    expect(readdirSync(join(dir, 'keys'))).toEqual([`${b.id}.key`]);
    await folder.close();
  });

  it('refuses a second key with the same id or label', async () => {
    const { dir, secrets } = await newPartition();
    const folder = await unsealed(dir, secrets.secret!);
    const key = makeKey('ca-a');
    await folder.store!.putKey(key);
    expect((await failure(folder.store!.putKey({ ...makeKey('other'), id: key.id }))).rv).toBe(
      'CKR_OBJECT_EXISTS',
    );
    expect((await failure(folder.store!.putKey(makeKey('ca-a')))).rv).toBe('CKR_OBJECT_EXISTS');
    await folder.close();
  });

  it('stores every one of many concurrent writes', async () => {
    const { dir, secrets } = await newPartition();
    let folder = await unsealed(dir, secrets.secret!);
    const keys = Array.from({ length: 20 }, (_, i) => makeKey(`key-${i}`));
    const ca = (await folder.store!.getUser('ca'))!;
    await Promise.all([
      ...keys.map((key) => folder.store!.putKey(key)),
      folder.store!.putUser({ ...ca, failedLogins: 2 }),
    ]);
    await folder.close();
    folder = await unsealed(dir, secrets.secret!);
    expect((await folder.store!.listKeys()).length).toBe(20);
    expect((await folder.store!.getUser('ca'))!.failedLogins).toBe(2);
    expect(readdirSync(dir).filter((name) => name.endsWith('.tmp'))).toEqual([]);
    await folder.close();
  });

  it('never writes a private key in the clear, in any encoding', async () => {
    const { dir, secrets } = await newPartition();
    const folder = await unsealed(dir, secrets.secret!);
    const keys = [makeKey('p256'), makeKey('ed', 'ed25519')];
    for (const key of keys) await folder.store!.putKey(key);
    await folder.close();
    const needles: Buffer[] = [];
    for (const key of keys) {
      const der = Buffer.from(key.privateKey);
      const jwk = createPrivateKey({ key: der, format: 'der', type: 'pkcs8' }).export({ format: 'jwk' });
      const scalar = Buffer.from(jwk.d!, 'base64url');
      for (const form of [der, scalar]) {
        needles.push(form, Buffer.from(form.toString('base64')), Buffer.from(form.toString('hex')));
        needles.push(
          Buffer.from(form.toString('base64url')),
          Buffer.from(form.toString('hex').toUpperCase()),
        );
      }
    }
    const files = [
      HEADER_FILE,
      INDEX_FILE,
      'audit.log',
      'audit.head',
      ...readdirSync(join(dir, 'keys')).map((n) => `keys/${n}`),
    ];
    for (const file of files) {
      const bytes = readFileSync(join(dir, file));
      for (const needle of needles) expect(bytes.includes(needle), `${file} holds key material`).toBe(false);
    }
  });
});

describe('integrity', () => {
  async function withKey() {
    const { dir, secrets } = await newPartition();
    const folder = await unsealed(dir, secrets.secret!);
    const key = makeKey('ca-a');
    await folder.store!.putKey(key);
    await folder.store!.putKey(makeKey('ca-b'));
    await folder.close();
    return { dir, secrets, key };
  }

  test.each([
    ['a key object', (id: string) => `keys/${id}.key`],
    ['the index (users, key list)', () => INDEX_FILE],
  ])('refuses %s with any one byte flipped, naming the file', async (_name, fileOf) => {
    const { dir, secrets, key } = await withKey();
    const file = fileOf(key.id);
    // Every offset through the loader (in memory, so the test stays fast) ...
    const header = parseHeader(readFileSync(join(dir, HEADER_FILE)), HEADER_FILE);
    const masterKey = await unsealMasterKey(header, { secret: secrets.secret! });
    const keys = derivePartitionKeys(masterKey, Buffer.from(header.id, 'hex'));
    const names = readdirSync(join(dir, 'keys'));
    const stored = new Map(
      [INDEX_FILE, ...names.map((n) => `keys/${n}`)].map((f) => [f, readFileSync(join(dir, f))]),
    );
    const pristine = stored.get(file)!;
    for (let offset = 0; offset < pristine.length; offset++) {
      const damaged = Buffer.from(pristine);
      damaged[offset]! ^= offset % 2 === 0 ? 0x01 : 0x20;
      const read = async (f: string) => (f === file ? damaged : stored.get(f));
      const error = await failure(loadPartition(dir, header.id, keys, read, async () => names));
      expect(error.rv, `flip at ${offset}`).toBe('CKR_INTEGRITY_FAILED');
      expect(error.message).toContain(file);
    }
    // ... and a few through the vault, as `signet hsm serve` unseals.
    for (const offset of [0, Math.floor(pristine.length / 2), pristine.length - 2]) {
      flip(join(dir, file), offset);
      const folder = await openPartitionVault({ dir });
      const error = await failure(folder.unseal({ secret: secrets.secret! }));
      await folder.close();
      expect(error.rv).toBe('CKR_INTEGRITY_FAILED');
      expect(error.message).toContain(file);
      writeFileSync(join(dir, file), pristine);
    }
    const folder = await unsealed(dir, secrets.secret!);
    expect((await folder.store!.listKeys()).length).toBe(2);
    await folder.close();
  });

  it('refuses the partition header with any one byte flipped, before unsealing', async () => {
    const { dir } = await withKey();
    const path = join(dir, HEADER_FILE);
    const pristine = readFileSync(path);
    for (let offset = 0; offset < pristine.length; offset++) {
      flip(path, offset, 0x04);
      const error = await failure(openPartitionVault({ dir }));
      expect(error.rv, `flip at ${offset}`).toBe('CKR_INTEGRITY_FAILED');
      expect(error.message).toContain(HEADER_FILE);
      writeFileSync(path, pristine);
    }
  });

  it('cannot be unsealed after a header field is changed, even with its checksum recomputed', async () => {
    const { dir, secrets } = await withKey();
    const { serializeHeader } = await import('../../../src/hsm/custody/header.ts');
    const { canonicalJson, sha256Hex } = await import('../../../src/hsm/custody/codec.ts');
    const header = JSON.parse(readFileSync(join(dir, HEADER_FILE), 'utf8'));
    header.createdAt = '2020-01-01T00:00:00.000Z';
    const { checksum: _old, ...rest } = header;
    const { format, v, id, name, createdAt, sealing, kdf, auditKey, masterKey } = rest;
    header.checksum = sha256Hex(
      canonicalJson({ format, v, id, name, createdAt, sealing, kdf, auditKey, masterKey }),
    );
    writeFileSync(join(dir, HEADER_FILE), serializeHeader(header));
    const folder = await openPartitionVault({ dir });
    expect((await failure(folder.unseal({ secret: secrets.secret! }))).rv).toBe('CKR_UNSEAL_FAILED');
    await folder.close();
  });

  it('refuses a deleted key object, naming it', async () => {
    const { dir, secrets, key } = await withKey();
    unlinkSync(join(dir, 'keys', `${key.id}.key`));
    const folder = await openPartitionVault({ dir });
    const error = await failure(folder.unseal({ secret: secrets.secret! }));
    expect(error.message).toMatch(new RegExp(`keys/${key.id}\\.key is missing`));
    await folder.close();
  });

  it('refuses two key objects swapped under each other’s names', async () => {
    const { dir, secrets } = await withKey();
    const [a, b] = readdirSync(join(dir, 'keys'));
    renameSync(join(dir, 'keys', a!), join(dir, 'keys', 'swap'));
    renameSync(join(dir, 'keys', b!), join(dir, 'keys', a!));
    renameSync(join(dir, 'keys', 'swap'), join(dir, 'keys', b!));
    const folder = await openPartitionVault({ dir });
    const error = await failure(folder.unseal({ secret: secrets.secret! }));
    expect(error.rv).toBe('CKR_INTEGRITY_FAILED');
    expect(error.message).toMatch(/keys\/[0-9a-f]+\.key .*is not key object/);
    await folder.close();
  });

  it('does not bring back a destroyed key whose file is put back', async () => {
    const { dir, secrets, key } = await withKey();
    const copy = join(dir, '..', 'saved.key');
    copyFileSync(join(dir, 'keys', `${key.id}.key`), copy);
    let folder = await unsealed(dir, secrets.secret!);
    await folder.store!.deleteKey(key.id);
    await folder.close();
    copyFileSync(copy, join(dir, 'keys', `${key.id}.key`));
    folder = await unsealed(dir, secrets.secret!);
    expect(await folder.store!.getKey(key.id)).toBeUndefined();
    expect(existsSync(join(dir, 'keys', `${key.id}.key`))).toBe(false);
    await folder.close();
  });
});

describe('the folder lock', () => {
  it('refuses a second opener, naming the holder’s pid', async () => {
    const { dir } = await newPartition();
    const first = await openPartitionVault({ dir });
    const error = await failure(openPartitionVault({ dir }));
    expect(error.message).toContain(`in use by process ${process.pid}`);
    await first.close();
    const again = await openPartitionVault({ dir });
    await again.close();
  });

  it('refuses while another live process holds it', async () => {
    const { dir } = await newPartition();
    const child = spawn('sleep', ['30']);
    try {
      const lock = JSON.parse(
        JSON.stringify({
          pid: child.pid,
          host: (await import('node:os')).hostname(),
          token: 'x',
          since: 'then',
        }),
      );
      writeFileSync(join(dir, LOCK_FILE), JSON.stringify(lock));
      const error = await failure(openPartitionVault({ dir }));
      expect(error.message).toContain(`in use by process ${child.pid}`);
    } finally {
      child.kill('SIGKILL');
    }
  });

  it('takes over a lock left by a process that died', async () => {
    const { dir } = await newPartition();
    const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], {
      encoding: 'utf8',
    });
    const { hostname } = await import('node:os');
    writeFileSync(
      join(dir, LOCK_FILE),
      JSON.stringify({ pid: Number(dead.stdout), host: hostname(), token: 'x', since: 'then' }),
    );
    const folder = await openPartitionVault({ dir });
    expect(JSON.parse(readFileSync(join(dir, LOCK_FILE), 'utf8')).pid).toBe(process.pid);
    await folder.close();
    expect(existsSync(join(dir, LOCK_FILE))).toBe(false);
  });

  it('treats a lock naming a reused pid (another process start time) as stale', async () => {
    const { dir } = await newPartition();
    const { hostname } = await import('node:os');
    writeFileSync(
      join(dir, LOCK_FILE),
      JSON.stringify({ pid: process.pid, host: hostname(), start: '1', token: 'x', since: 'then' }),
    );
    const folder = await openPartitionVault({ dir });
    await folder.close();
  });

  it('lets only one of many simultaneous openers win', async () => {
    const { dir } = await newPartition();
    const results = await Promise.allSettled(Array.from({ length: 8 }, () => openPartitionVault({ dir })));
    const won = results.filter((result) => result.status === 'fulfilled');
    expect(won.length).toBe(1);
    await (won[0] as PromiseFulfilledResult<PartitionFolder>).value.close();
  });
});

describe('openPartitionVault', () => {
  it('says clearly when the folder holds no partition', async () => {
    const error = await failure(openPartitionVault({ dir: tempDir() }));
    expect(error.message).toMatch(/holds no partition|is not a partition folder/);
  });

  it('keeps PINs usable: the stored hash verifies the PIN given at init', async () => {
    const { dir, secrets } = await newPartition();
    const { verifyPin } = await import('../../../src/hsm/custody/index.ts');
    const folder = await unsealed(dir, secrets.secret!);
    expect(await verifyPin((await folder.store!.getUser('ca'))!, USER_PIN)).toBe(true);
    expect(await verifyPin((await folder.store!.getUser('officer'))!, USER_PIN)).toBe(false);
    await folder.close();
  });
});
