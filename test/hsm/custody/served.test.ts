import { createPrivateKey, createPublicKey, verify } from 'node:crypto';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, test } from 'vitest';
import { openPartitionVault, verifyAuditLog } from '../../../src/hsm/custody/index.ts';
import { HsmError } from '../../../src/hsm/types.ts';
import { keyForms, newPartition } from './helpers.ts';
import {
  CA,
  killServerDuringKeyCreation,
  OFFICER,
  type Served,
  secretFile,
  serve,
  signet,
  unsealWith,
} from './served.ts';

const running: Served[] = [];
async function started(dir: string): Promise<Served> {
  const served = await serve(dir);
  running.push(served);
  return served;
}
afterEach(async () => {
  await Promise.all(running.splice(0).map((served) => served.stop()));
});

async function refusal(promise: Promise<unknown>): Promise<HsmError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(HsmError);
  return error as HsmError;
}

describe('a served partition folder (signet hsm serve --dir)', () => {
  it('answers only status and unseal while sealed', async () => {
    const { dir } = await newPartition();
    const served = await started(dir);
    const client = await served.connect();
    expect(await client.status()).toMatchObject({
      name: 'issuing',
      state: 'sealed',
      sealing: { kind: 'secret' },
    });
    expect((await refusal(client.login(CA))).code).toBe('hsm.sealed');
    expect((await refusal(client.listKeys())).code).toBe('hsm.sealed');
    expect((await refusal(client.createKey({ label: 'k', algorithm: 'ecdsa-p256' }))).code).toBe(
      'hsm.sealed',
    );
  });

  it('unseals with its secret through signet hsm unseal --secret-file, and not with another', async () => {
    const { dir, secrets } = await newPartition();
    const other = await newPartition();
    const served = await started(dir);
    const wrong = signet([
      'hsm',
      'unseal',
      '--socket',
      served.socketPath,
      '--secret-file',
      secretFile(other.secrets.secret!),
    ]);
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toMatch(/hsm\.unseal_failed: the secret belongs to partition/);
    const right = signet([
      'hsm',
      'unseal',
      '--socket',
      served.socketPath,
      '--secret-file',
      secretFile(secrets.secret!),
    ]);
    expect(right.code).toBe(0);
    expect(right.stdout).toMatch(/state\s+unsealed/);
    const client = await served.connect(CA);
    expect(await client.listKeys()).toEqual([]);
  });

  it('unseals with any 3 of 5 custodian shares and not with 2', async () => {
    const { dir, secrets } = await newPartition({ sealing: { kind: 'shares', shares: 5, threshold: 3 } });
    const shares = secrets.shares!;
    const files = shares.map((share, i) => secretFile(share, `share-${i + 1}`));
    // Any 3 in any order (the library tests cover every subset); here through the real process.
    const chosen = [4, 0, 2];
    const served = await started(dir);
    const few = signet([
      'hsm',
      'unseal',
      '--socket',
      served.socketPath,
      ...chosen.slice(0, 2).flatMap((i) => ['--share-file', files[i]!]),
    ]);
    expect(few.code).toBe(1);
    expect(few.stderr).toMatch(/3 shares are needed to unseal, 2 given/);
    expect((await served.connect().then((c) => c.status())).state).toBe('sealed');
    const enough = signet([
      'hsm',
      'unseal',
      '--socket',
      served.socketPath,
      ...chosen.flatMap((i) => ['--share-file', files[i]!]),
    ]);
    expect(enough.code).toBe(0);
    expect((await served.connect().then((c) => c.status())).state).toBe('unsealed');
  });

  it('locks a user after 5 wrong PINs, and the lock survives a restart', async () => {
    const { dir, secrets } = await newPartition();
    let served = await started(dir);
    await unsealWith(served, secrets);
    const client = await served.connect();
    for (let i = 0; i < 4; i++)
      expect((await refusal(client.login({ user: 'ca', pin: 'wrong-pin-000' }))).code).toBe(
        'hsm.pin_incorrect',
      );
    expect((await refusal(client.login({ user: 'ca', pin: 'wrong-pin-000' }))).code).toBe('hsm.pin_locked');
    expect((await refusal(client.login(CA))).code).toBe('hsm.pin_locked');
    await running.pop()!.stop();

    served = await started(dir);
    await unsealWith(served, secrets);
    const again = await served.connect();
    const error = await refusal(again.login(CA));
    expect(error.code).toBe('hsm.pin_locked');
    expect(error.message).toMatch(/the officer must unlock it/);
  });

  it('lets the officer unlock a locked user (signet hsm user unlock)', async () => {
    const { dir, secrets } = await newPartition();
    const served = await started(dir);
    await unsealWith(served, secrets);
    const client = await served.connect();
    for (let i = 0; i < 5; i++) await client.login({ user: 'ca', pin: 'wrong-pin-000' }).catch(() => {});
    expect((await refusal(client.login(CA))).code).toBe('hsm.pin_locked');
    const asCa = signet([
      'hsm',
      'user',
      'unlock',
      'ca',
      '--socket',
      served.socketPath,
      '--user',
      'ca',
      '--pin-file',
      secretFile(CA.pin),
    ]);
    expect(asCa.code).toBe(1);
    const unlock = signet([
      'hsm',
      'user',
      'unlock',
      'ca',
      '--socket',
      served.socketPath,
      '--pin-file',
      secretFile(OFFICER.pin),
    ]);
    expect(unlock.stderr).toBe('');
    expect(unlock.code).toBe(0);
    expect(await client.login(CA)).toEqual({ user: 'ca', role: 'user' });
  });

  it('lets a user change their own PIN (signet hsm user pin), durably', async () => {
    const { dir, secrets } = await newPartition();
    let served = await started(dir);
    await unsealWith(served, secrets);
    const newPin = 'a-brand-new-pin-7';
    const change = signet([
      'hsm',
      'user',
      'pin',
      '--socket',
      served.socketPath,
      '--user',
      'ca',
      '--pin-file',
      secretFile(CA.pin),
      '--new-pin-file',
      secretFile(newPin, 'new'),
    ]);
    expect(change.stderr).toBe('');
    expect(change.code).toBe(0);
    await running.pop()!.stop();
    served = await started(dir);
    await unsealWith(served, secrets);
    const client = await served.connect();
    expect((await refusal(client.login(CA))).code).toBe('hsm.pin_incorrect');
    expect(await client.login({ user: 'ca', pin: newPin })).toEqual({ user: 'ca', role: 'user' });
  });

  it('counts a wrong current PIN in a PIN change towards the lock', async () => {
    const { dir, secrets } = await newPartition();
    const served = await started(dir);
    await unsealWith(served, secrets);
    const client = await served.connect(CA);
    for (let i = 0; i < 4; i++) {
      expect(
        (await refusal(client.call('changePin', { oldPin: 'not-the-pin', newPin: 'whatever-pin-1' }))).code,
      ).toBe('hsm.pin_incorrect');
    }
    expect(
      (await refusal(client.call('changePin', { oldPin: 'not-the-pin', newPin: 'whatever-pin-1' }))).code,
    ).toBe('hsm.pin_locked');
  });

  describe('with a crypto user logged in', () => {
    let shared: Served;
    beforeAll(async () => {
      const { dir, secrets } = await newPartition();
      shared = await serve(dir);
      await unsealWith(shared, secrets);
      await (await shared.connect(OFFICER)).createKey({ label: 'ca-1', algorithm: 'ecdsa-p256' });
    });
    afterAll(() => shared.stop());
    type Client = Awaited<ReturnType<Served['connect']>>;

    test.each([
      ['create a key', (c: Client) => c.createKey({ label: 'rogue', algorithm: 'ecdsa-p256' })],
      ['destroy a key', (c: Client) => c.destroyKey({ label: 'ca-1' })],
      ['create a user', (c: Client) => c.createUser({ name: 'eve', role: 'officer', pin: 'eve-pin-12345' })],
      ['unlock a user', (c: Client) => c.unlockUser({ name: 'officer' })],
      ['set another user’s PIN', (c: Client) => c.setUserPin({ name: 'officer', pin: 'eve-pin-12345' })],
      ['list the users', (c: Client) => c.listUsers()],
    ])('refuses the crypto user who tries to %s', async (_name, attempt) => {
      const error = await refusal(attempt(await shared.connect(CA)));
      expect(error.code).toBe('hsm.operation_not_permitted');
      expect(await (await shared.connect(OFFICER)).findKey({ label: 'ca-1' })).toBeDefined();
    });
  });

  test.each([
    ['a key object', (dir: string) => join('keys', readdirSync(join(dir, 'keys'))[0]!)],
    ['the sealed index (users and key list)', () => 'index.sealed'],
  ])('refuses to unseal with a flipped byte in %s, naming the file', async (_name, fileOf) => {
    const { dir, secrets } = await newPartition();
    let served = await started(dir);
    await unsealWith(served, secrets);
    await (await served.connect(OFFICER)).createKey({ label: 'ca-1', algorithm: 'ecdsa-p256' });
    await running.pop()!.stop();
    const file = fileOf(dir);
    const bytes = readFileSync(join(dir, file));
    bytes[Math.floor(bytes.length / 2)]! ^= 0x08;
    writeFileSync(join(dir, file), bytes);
    served = await started(dir);
    const error = await refusal(unsealWith(served, secrets));
    expect(error.code).toBe('hsm.integrity_failed');
    expect(error.message).toContain(file);
    expect((await (await served.connect()).status()).state).toBe('sealed');
  });

  it('keeps every acknowledged key when killed with SIGKILL during a stream of key creations', async () => {
    const { dir, secrets } = await newPartition();
    const acked = await killServerDuringKeyCreation(dir, secrets, 12, 0);
    expect(acked.size).toBeGreaterThanOrEqual(12);
    const served = await started(dir);
    await unsealWith(served, secrets);
    const labels = new Set((await (await served.connect(CA)).listKeys()).map((key) => key.label));
    expect([...acked].filter((label) => !labels.has(label))).toEqual([]);
    // Usable: it creates and signs as before.
    await (await served.connect(OFFICER)).createKey({ label: 'after-crash', algorithm: 'ecdsa-p256' });
    await running.pop()!.stop();
    expect(await verifyAuditLog({ dir })).toMatchObject({ ok: true });
  });

  it('refuses a second server on the same folder, naming the first one’s pid', async () => {
    const { dir } = await newPartition();
    const first = await started(dir);
    const second = signet(['hsm', 'serve', '--dir', dir, '--socket', join(dir, '..', 'second.sock')]);
    expect(second.code).toBe(1);
    expect(second.stderr).toContain(`in use by process ${first.process.child.pid}`);
    expect((await (await first.connect()).status()).state).toBe('sealed');
  });

  it('keeps no generated key in the clear in its folder', async () => {
    const { dir, secrets } = await newPartition();
    const served = await started(dir);
    await unsealWith(served, secrets);
    const officer = await served.connect(OFFICER);
    const created = [];
    for (const algorithm of ['ecdsa-p256', 'ecdsa-p384', 'rsa-2048', 'ed25519'] as const) {
      created.push(await officer.createKey({ label: `k-${algorithm}`, algorithm }));
    }
    const ca = await served.connect(CA);
    const signature = await ca.sign({
      key: { label: 'k-ecdsa-p256' },
      mechanism: 'ecdsa-sha256',
      purpose: 'certificate',
      data: Buffer.from('tbs'),
    });
    await running.pop()!.stop();

    // The test learns the private keys the only way there is: unsealing the folder with its secret.
    const folder = await openPartitionVault({ dir });
    await folder.unseal({ secret: secrets.secret! });
    const keys = await folder.store!.listKeys();
    await folder.close();
    expect(keys.map((k) => k.label).sort()).toEqual(created.map((k) => k.label).sort());
    const p256 = keys.find((k) => k.label === 'k-ecdsa-p256')!;
    const pub = createPublicKey(
      createPrivateKey({ key: Buffer.from(p256.privateKey), format: 'der', type: 'pkcs8' }),
    );
    expect(verify('sha256', Buffer.from('tbs'), { key: pub, dsaEncoding: 'ieee-p1363' }, signature)).toBe(
      true,
    );

    const needles = keys.flatMap((key) => keyForms(key.privateKey));
    const files = [
      'partition.json',
      'index.sealed',
      'audit.log',
      'audit.head',
      ...readdirSync(join(dir, 'keys')).map((n) => join('keys', n)),
    ];
    for (const file of files) {
      const stored = readFileSync(join(dir, file));
      for (const needle of needles)
        expect(stored.includes(needle), `${file} holds a private key`).toBe(false);
    }
  });
});
