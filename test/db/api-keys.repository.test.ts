import { beforeEach, expect, test } from 'vitest';
import { createApiKeysRepository, hashApiKeySecret } from '../../src/db/api-keys.repository.ts';
import { ApiKeyExistsError } from '../../src/db/errors.ts';
import { describeEachDatabase } from '../helpers/database.ts';
import { manualClock } from './builders.ts';

test('hashApiKeySecret is SHA-256 of the UTF-8 secret', () => {
  expect(Buffer.from(hashApiKeySecret('abc')).toString('hex')).toBe(
    'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad',
  );
});

describeEachDatabase('the API keys repository', (getDatabase) => {
  let clock: ReturnType<typeof manualClock>;
  let keys: ReturnType<typeof createApiKeysRepository>;
  const secret = 'sk-test-3f1c8e0b9a7d4c2e8f6a1b0c9d8e7f6a';

  beforeEach(() => {
    clock = manualClock();
    keys = createApiKeysRepository({ db: getDatabase().db, clock });
  });

  const create = (overrides: Partial<Parameters<typeof keys.create>[0]> = {}) =>
    keys.create({
      id: 'k_1',
      secretSha256: hashApiKeySecret(secret),
      roles: ['issuer'],
      policies: ['web-server'],
      description: 'deploy bot',
      createdBy: 'k_admin',
      ...overrides,
    });

  test('create stores the key without ever returning the secret hash', async () => {
    const info = await create({ expiresAt: new Date('2027-01-01T00:00:00Z') });
    expect(info).toEqual({
      id: 'k_1',
      roles: ['issuer'],
      policies: ['web-server'],
      description: 'deploy bot',
      createdAt: clock.now(),
      expiresAt: new Date('2027-01-01T00:00:00Z'),
      revokedAt: null,
      createdBy: 'k_admin',
    });
    expect((await keys.findById('k_1'))!.secretSha256).toEqual(hashApiKeySecret(secret));
    expect((await keys.list())[0]).not.toHaveProperty('secretSha256');
  });

  test('create refuses a taken id with ApiKeyExistsError', async () => {
    await create();
    await expect(create()).rejects.toBeInstanceOf(ApiKeyExistsError);
  });

  test.each([
    { name: 'an id with a space', overrides: { id: 'k 1' } },
    { name: 'no role', overrides: { roles: [] } },
    { name: 'an unknown role', overrides: { roles: ['root' as 'admin'] } },
    { name: 'a short hash', overrides: { secretSha256: new Uint8Array(16) } },
  ])('create refuses $name', async ({ overrides }) => {
    await expect(create(overrides)).rejects.toBeInstanceOf(TypeError);
  });

  test('verify accepts the right secret and says why it refuses the others', async () => {
    await create({ expiresAt: new Date('2026-03-02T00:00:00Z') });
    expect(await keys.verify('k_1', hashApiKeySecret(secret))).toMatchObject({
      ok: true,
      key: { id: 'k_1' },
    });
    expect(await keys.verify('k_1', hashApiKeySecret(`${secret}x`))).toEqual({
      ok: false,
      reason: 'mismatch',
    });
    expect(await keys.verify('k_1', new Uint8Array(3))).toEqual({ ok: false, reason: 'mismatch' });
    expect(await keys.verify('k_2', hashApiKeySecret(secret))).toEqual({ ok: false, reason: 'unknown' });
    expect(await keys.verify('bad id!', hashApiKeySecret(secret))).toEqual({ ok: false, reason: 'unknown' });
    clock.set('2026-03-02T00:00:00.000Z');
    expect(await keys.verify('k_1', hashApiKeySecret(secret))).toEqual({ ok: false, reason: 'expired' });
  });

  test('a revoked key no longer verifies and drops out of the default list', async () => {
    await create();
    await create({ id: 'k_2' });
    expect(await keys.revoke('k_1')).toBe(true);
    expect(await keys.revoke('k_1')).toBe(false);
    expect(await keys.revoke('k_nope')).toBe(false);
    expect(await keys.verify('k_1', hashApiKeySecret(secret))).toEqual({ ok: false, reason: 'revoked' });
    expect((await keys.list()).map((k) => k.id)).toEqual(['k_2']);
    const all = await keys.list({ includeRevoked: true });
    expect(all.map((k) => [k.id, k.revokedAt])).toEqual([
      ['k_1', clock.now()],
      ['k_2', null],
    ]);
  });
});
