import { createHash, randomBytes } from 'node:crypto';
import { describe, expect, it, test } from 'vitest';
import {
  createMemoryStore,
  createMemoryVault,
  MemoryAuditSink,
  verifyPinScrypt,
} from '../../src/hsm/memory-store.ts';
import { EmulatedPartition, type PartitionSession } from '../../src/hsm/partition.ts';
import type { AuditEvent, AuditSink } from '../../src/hsm/store.ts';
import { HsmError } from '../../src/hsm/types.ts';
import { CA_USER, OFFICER, openMemoryPartition, userRecords } from './helpers.ts';

async function refusal(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof HsmError) return error.rv;
    throw error;
  }
  throw new Error('expected a refusal');
}

async function loggedIn(
  partition: EmulatedPartition,
  who: { name: string; pin: string },
): Promise<PartitionSession> {
  const session = partition.openSession();
  await session.login({ user: who.name, pin: who.pin });
  return session;
}

const fixedClock = { now: () => new Date('2026-03-01T12:00:00.000Z') };

describe('roles', () => {
  it('answers status before login and refuses everything else with CKR_USER_NOT_LOGGED_IN', async () => {
    const { partition } = await openMemoryPartition();
    const anonymous = partition.openSession();
    expect((await anonymous.status()).state).toBe('unsealed');
    expect((await anonymous.status()).keyCount).toBeUndefined();
    expect(await refusal(anonymous.listKeys())).toBe('CKR_USER_NOT_LOGGED_IN');
    expect(await refusal(anonymous.findKey({ label: 'x' }))).toBe('CKR_USER_NOT_LOGGED_IN');
    expect(await refusal(anonymous.createKey({ label: 'x', algorithm: 'ed25519' }))).toBe(
      'CKR_USER_NOT_LOGGED_IN',
    );
    expect(await refusal(anonymous.generateRandom({ length: 8 }))).toBe('CKR_USER_NOT_LOGGED_IN');
    const request = {
      key: { label: 'x' },
      mechanism: 'ed25519' as const,
      purpose: 'other' as const,
      data: Buffer.from(''),
    };
    expect(await refusal(anonymous.sign(request))).toBe('CKR_USER_NOT_LOGGED_IN');
  });

  it('lets the officer create and destroy keys but not sign; the user sign but not create or destroy', async () => {
    const { partition } = await openMemoryPartition();
    const officer = await loggedIn(partition, OFFICER);
    const user = await loggedIn(partition, CA_USER);
    const key = await officer.createKey({ label: 'k', algorithm: 'ecdsa-p256' });
    const request = {
      key: { id: key.id },
      mechanism: 'ecdsa-sha256' as const,
      purpose: 'certificate' as const,
    };
    expect(await refusal(officer.sign({ ...request, data: Buffer.from('tbs') }))).toBe(
      'CKR_OPERATION_NOT_PERMITTED',
    );
    expect(await refusal(officer.signInit(request))).toBe('CKR_OPERATION_NOT_PERMITTED');
    expect(await user.sign({ ...request, data: Buffer.from('tbs') })).toHaveLength(64);
    expect(await refusal(user.createKey({ label: 'u', algorithm: 'ed25519' }))).toBe(
      'CKR_OPERATION_NOT_PERMITTED',
    );
    expect(await refusal(user.destroyKey({ id: key.id }))).toBe('CKR_OPERATION_NOT_PERMITTED');
    expect(await refusal(user.listUsers())).toBe('CKR_OPERATION_NOT_PERMITTED');
    // Both may find, list, read public keys and ask for status.
    for (const session of [officer, user]) {
      expect((await session.findKey({ label: 'k' }))?.id).toBe(key.id);
      expect(await session.listKeys()).toHaveLength(1);
      expect(await session.getPublicKey({ label: 'k' })).toEqual(key.publicKey);
      expect((await session.status()).keyCount).toBe(1);
    }
    expect((await user.status()).user).toEqual({ name: 'ca', role: 'user' });
  });

  it('refuses a second login on a session until logout (CKR_USER_ALREADY_LOGGED_IN)', async () => {
    const { partition } = await openMemoryPartition();
    const session = await loggedIn(partition, CA_USER);
    expect(await refusal(session.login({ user: OFFICER.name, pin: OFFICER.pin }))).toBe(
      'CKR_USER_ALREADY_LOGGED_IN',
    );
    await session.logout();
    await session.login({ user: OFFICER.name, pin: OFFICER.pin });
    expect((await session.status()).user?.role).toBe('officer');
  });
});

describe('login and lockout', () => {
  it('answers a wrong PIN and an unknown user alike (CKR_PIN_INCORRECT)', async () => {
    const { partition } = await openMemoryPartition();
    expect(await refusal(partition.openSession().login({ user: 'ca', pin: 'wrong-pin-0000' }))).toBe(
      'CKR_PIN_INCORRECT',
    );
    expect(await refusal(partition.openSession().login({ user: 'nobody', pin: 'wrong-pin-0000' }))).toBe(
      'CKR_PIN_INCORRECT',
    );
  });

  it('locks a user after five consecutive wrong PINs, even against the right PIN, and the lock is stored', async () => {
    const store = createMemoryStore({ users: await userRecords() });
    const open = () =>
      EmulatedPartition.open({
        name: 'test',
        vault: createMemoryVault({ store }),
        audit: new MemoryAuditSink(),
        verifyPin: verifyPinScrypt,
      });
    const partition = await open();
    const attempts = await Promise.all(
      Array.from({ length: 5 }, () =>
        refusal(partition.openSession().login({ user: 'ca', pin: 'wrong-pin-0000' })),
      ),
    );
    // Sent at once, yet each counted: the last is the one that locks.
    expect(attempts.filter((rv) => rv === 'CKR_PIN_INCORRECT')).toHaveLength(4);
    expect(attempts.filter((rv) => rv === 'CKR_PIN_LOCKED')).toHaveLength(1);
    expect(await refusal(partition.openSession().login({ user: 'ca', pin: CA_USER.pin }))).toBe(
      'CKR_PIN_LOCKED',
    );
    expect((await store.getUser('ca'))?.locked).toBe(true);
    // A partition restarted over the same store still refuses.
    const restarted = await open();
    expect(await refusal(restarted.openSession().login({ user: 'ca', pin: CA_USER.pin }))).toBe(
      'CKR_PIN_LOCKED',
    );
  });

  it('resets the failure count on a successful login', async () => {
    const { partition } = await openMemoryPartition({ maxFailedLogins: 3 });
    for (let round = 0; round < 3; round++) {
      for (let i = 0; i < 2; i++)
        await refusal(partition.openSession().login({ user: 'ca', pin: 'wrong-pin-0000' }));
      await loggedIn(partition, CA_USER);
    }
  });

  it('lets the officer unlock a locked user', async () => {
    const { partition } = await openMemoryPartition({ maxFailedLogins: 1 });
    expect(await refusal(partition.openSession().login({ user: 'ca', pin: 'wrong-pin-0000' }))).toBe(
      'CKR_PIN_LOCKED',
    );
    const officer = await loggedIn(partition, OFFICER);
    expect((await officer.listUsers()).find((u) => u.name === 'ca')).toMatchObject({
      locked: true,
      failedLogins: 1,
    });
    expect(await officer.unlockUser({ name: 'ca' })).toEqual({
      name: 'ca',
      role: 'user',
      failedLogins: 0,
      locked: false,
    });
    await loggedIn(partition, CA_USER);
  });
});

describe('users', () => {
  it('lets the officer create a user who can then log in, and never shows a PIN hash', async () => {
    const { partition } = await openMemoryPartition();
    const officer = await loggedIn(partition, OFFICER);
    const created = await officer.createUser({ name: 'ocsp', role: 'user', pin: 'ocsp-pin-1234' });
    expect(created).toEqual({ name: 'ocsp', role: 'user', failedLogins: 0, locked: false });
    await loggedIn(partition, { name: 'ocsp', pin: 'ocsp-pin-1234' });
    const listed = await officer.listUsers();
    expect(listed.map((u) => u.name)).toEqual(['ca', 'ocsp', 'officer']);
    expect(JSON.stringify(listed)).not.toContain('scrypt');
  });

  test.each([
    ['a PIN shorter than 8 characters', { name: 'x', role: 'user', pin: 'short' }, 'CKR_PIN_LEN_RANGE'],
    ['an existing name', { name: 'ca', role: 'user', pin: 'long-enough-pin' }, 'CKR_OBJECT_EXISTS'],
    ['a name with capitals', { name: 'Bad', role: 'user', pin: 'long-enough-pin' }, 'CKR_ARGUMENTS_BAD'],
    ['an unknown role', { name: 'x', role: 'admin', pin: 'long-enough-pin' }, 'CKR_ARGUMENTS_BAD'],
  ])('refuses to create a user with %s', async (_name, request, rv) => {
    const { partition } = await openMemoryPartition();
    const officer = await loggedIn(partition, OFFICER);
    expect(await refusal(officer.createUser(request as never))).toBe(rv);
  });

  it('sets a PIN, which also lifts a lock; the old PIN no longer works', async () => {
    const { partition } = await openMemoryPartition({ maxFailedLogins: 1 });
    await refusal(partition.openSession().login({ user: 'ca', pin: 'wrong-pin-0000' }));
    const officer = await loggedIn(partition, OFFICER);
    await officer.setUserPin({ name: 'ca', pin: 'a-new-pin-9999' });
    expect(await refusal(partition.openSession().login({ user: 'ca', pin: CA_USER.pin }))).toBe(
      'CKR_PIN_LOCKED',
    );
    await officer.unlockUser({ name: 'ca' });
    await loggedIn(partition, { name: 'ca', pin: 'a-new-pin-9999' });
  });

  it('deletes a user but never the officer itself or the last officer', async () => {
    const { partition } = await openMemoryPartition();
    const officer = await loggedIn(partition, OFFICER);
    expect(await refusal(officer.deleteUser({ name: 'officer' }))).toBe('CKR_OPERATION_NOT_PERMITTED');
    await officer.createUser({ name: 'second', role: 'officer', pin: 'second-officer-pin' });
    const second = await loggedIn(partition, { name: 'second', pin: 'second-officer-pin' });
    await second.deleteUser({ name: 'officer' });
    expect(await refusal(second.deleteUser({ name: 'second' }))).toBe('CKR_OPERATION_NOT_PERMITTED');
    await second.deleteUser({ name: 'ca' });
    expect(await refusal(partition.openSession().login({ user: 'ca', pin: CA_USER.pin }))).toBe(
      'CKR_PIN_INCORRECT',
    );
  });
});

describe('sealing', () => {
  const secret = randomBytes(32);

  it('starts sealed, answers only status and unseal, and opens only for its secret', async () => {
    const { partition } = await openMemoryPartition({ secret });
    const session = partition.openSession();
    expect(await session.status()).toMatchObject({ state: 'sealed', sealing: { kind: 'secret' } });
    expect(await refusal(session.login({ user: 'ca', pin: CA_USER.pin }))).toBe('CKR_TOKEN_SEALED');
    expect(await refusal(session.listKeys())).toBe('CKR_TOKEN_SEALED');
    expect(await refusal(session.unseal({ secret: randomBytes(32) }))).toBe('CKR_UNSEAL_FAILED');
    expect(await refusal(session.unseal({}))).toBe('CKR_ARGUMENTS_BAD');
    expect((await session.unseal({ secret })).state).toBe('unsealed');
    expect(await refusal(session.unseal({ secret }))).toBe('CKR_OPERATION_NOT_PERMITTED');
    await session.login({ user: 'ca', pin: CA_USER.pin });
    expect(await session.listKeys()).toEqual([]);
  });

  it('lets only one of two concurrent unseals succeed', async () => {
    const { partition } = await openMemoryPartition({ secret });
    const results = await Promise.allSettled([
      partition.openSession().unseal({ secret }),
      partition.openSession().unseal({ secret }),
    ]);
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
  });

  it('refuses to open a store holding a damaged key object (CKR_INTEGRITY_FAILED)', async () => {
    const store = createMemoryStore({ users: await userRecords() });
    const open = () =>
      EmulatedPartition.open({
        name: 'test',
        vault: createMemoryVault({ store }),
        audit: new MemoryAuditSink(),
        verifyPin: verifyPinScrypt,
      });
    const officer = await loggedIn(await open(), OFFICER);
    const a = await officer.createKey({ label: 'a', algorithm: 'ed25519' });
    const b = await officer.createKey({ label: 'b', algorithm: 'ed25519' });
    expect(await open()).toBeDefined();
    // Key a's private half stored with key b's public half.
    const stored = await store.getKey(a.id);
    await store.putKey({ ...stored!, publicKey: b.publicKey });
    expect(await refusal(open())).toBe('CKR_INTEGRITY_FAILED');
  });
});

describe('the audit trail', () => {
  it('records a signature with key, purpose, mechanism, length and the SHA-256 of what was signed', async () => {
    const { partition, audit } = await openMemoryPartition({ clock: fixedClock });
    const officer = await loggedIn(partition, OFFICER);
    const key = await officer.createKey({ label: 'issuing', algorithm: 'ecdsa-p256' });
    expect(key.createdAt).toBe('2026-03-01T12:00:00.000Z');
    const user = await loggedIn(partition, CA_USER);
    const data = Buffer.from('to-be-signed certificate');
    await user.sign({ key: { label: 'issuing' }, mechanism: 'ecdsa-sha256', purpose: 'certificate', data });
    expect(audit.events.at(-1)).toEqual({
      time: '2026-03-01T12:00:00.000Z',
      session: user.id,
      user: 'ca',
      op: 'sign',
      keyId: key.id,
      keyLabel: 'issuing',
      purpose: 'certificate',
      mechanism: 'ecdsa-sha256',
      length: data.length,
      digest: createHash('sha256').update(data).digest('hex'),
      result: 'ok',
    });
    expect(audit.events.find((e) => e.op === 'createKey')).toMatchObject({
      user: 'officer',
      keyId: key.id,
      result: 'ok',
    });
  });

  it('records failures with their reason code: a wrong PIN, a refused signature, a role refusal', async () => {
    const { partition, audit } = await openMemoryPartition();
    await refusal(partition.openSession().login({ user: 'ca', pin: 'wrong-pin-0000' }));
    expect(audit.events.at(-1)).toMatchObject({ op: 'login', user: 'ca', result: 'hsm.pin_incorrect' });
    const officer = await loggedIn(partition, OFFICER);
    const key = await officer.createKey({ label: 'crl', algorithm: 'ed25519', purposes: ['crl'] });
    const user = await loggedIn(partition, CA_USER);
    await refusal(
      user.sign({ key: { id: key.id }, mechanism: 'ed25519', purpose: 'ocsp', data: Buffer.from('x') }),
    );
    expect(audit.events.at(-1)).toMatchObject({
      op: 'sign',
      keyId: key.id,
      purpose: 'ocsp',
      result: 'hsm.key_function_not_permitted',
    });
    await refusal(user.destroyKey({ id: key.id }));
    expect(audit.events.at(-1)).toMatchObject({
      op: 'destroyKey',
      user: 'ca',
      result: 'hsm.operation_not_permitted',
    });
    await refusal(officer.exportKey({ id: key.id }));
    expect(audit.events.at(-1)).toMatchObject({
      op: 'exportKey',
      keyId: key.id,
      result: 'hsm.key_unextractable',
    });
  });

  it('records a multi-part signature once, with the digest of the whole message', async () => {
    const { partition, audit } = await openMemoryPartition();
    const officer = await loggedIn(partition, OFFICER);
    const key = await officer.createKey({ label: 'crl', algorithm: 'ecdsa-p384' });
    const user = await loggedIn(partition, CA_USER);
    const parts = [randomBytes(1000), randomBytes(5000), randomBytes(3)];
    const before = audit.events.length;
    await user.signStream({ key: { id: key.id }, mechanism: 'ecdsa-sha384', purpose: 'crl', chunks: parts });
    const events = audit.events.slice(before);
    expect(events.map((e) => e.op)).toEqual(['signInit', 'signFinal']);
    expect(events[1]).toMatchObject({
      keyId: key.id,
      purpose: 'crl',
      length: 6003,
      digest: createHash('sha256').update(Buffer.concat(parts)).digest('hex'),
      result: 'ok',
    });
  });

  it('withholds the signature when the audit log cannot record it', async () => {
    const events: AuditEvent[] = [];
    let failing = false;
    const audit: AuditSink = {
      append: async (event) => {
        if (failing && event.op === 'sign') throw new Error('disk full');
        events.push(event);
      },
      close: async () => {},
    };
    const { partition } = await openMemoryPartition({ audit });
    const officer = await loggedIn(partition, OFFICER);
    await officer.createKey({ label: 'k', algorithm: 'ed25519' });
    const user = await loggedIn(partition, CA_USER);
    failing = true;
    const request = {
      key: { label: 'k' },
      mechanism: 'ed25519' as const,
      purpose: 'other' as const,
      data: Buffer.from('x'),
    };
    expect(await refusal(user.sign(request))).toBe('CKR_DEVICE_ERROR');
    failing = false;
    expect(await user.sign(request)).toHaveLength(64);
  });
});

describe('multi-part operations', () => {
  async function setup(options: Parameters<typeof openMemoryPartition>[0] = {}) {
    const { partition, audit } = await openMemoryPartition(options);
    const officer = await loggedIn(partition, OFFICER);
    await officer.createKey({ label: 'ed', algorithm: 'ed25519' });
    await officer.createKey({ label: 'ec', algorithm: 'ecdsa-p256' });
    const user = await loggedIn(partition, CA_USER);
    return { partition, audit, user };
  }

  it('ends an Ed25519 operation that gathers more than the limit (CKR_DATA_LEN_RANGE)', async () => {
    const { user } = await setup({ maxStreamBytes: 1000 });
    const handle = await user.signInit({ key: { label: 'ed' }, mechanism: 'ed25519', purpose: 'crl' });
    await user.signUpdate(handle, Buffer.alloc(600));
    expect(await refusal(user.signUpdate(handle, Buffer.alloc(600)))).toBe('CKR_DATA_LEN_RANGE');
    expect(await refusal(user.signFinal(handle))).toBe('CKR_OPERATION_NOT_INITIALIZED');
  });

  it('hashes ECDSA parts as they come, so the Ed25519 limit does not apply to it', async () => {
    const { user } = await setup({ maxStreamBytes: 1000 });
    const handle = await user.signInit({ key: { label: 'ec' }, mechanism: 'ecdsa-sha256', purpose: 'crl' });
    for (let i = 0; i < 5; i++) await user.signUpdate(handle, Buffer.alloc(600));
    expect(await user.signFinal(handle)).toHaveLength(64);
  });

  it('limits the operations open on one session (CKR_OPERATION_ACTIVE)', async () => {
    const { user } = await setup({ maxOpenStreams: 2 });
    const init = () => user.signInit({ key: { label: 'ec' }, mechanism: 'ecdsa-sha256', purpose: 'crl' });
    const first = await init();
    await init();
    expect(await refusal(init())).toBe('CKR_OPERATION_ACTIVE');
    await user.signCancel(first);
    await init();
  });

  it('refuses updates and finals for a handle that is not open (CKR_OPERATION_NOT_INITIALIZED)', async () => {
    const { user } = await setup();
    expect(await refusal(user.signUpdate(99, Buffer.from('x')))).toBe('CKR_OPERATION_NOT_INITIALIZED');
    expect(await refusal(user.signFinal(99))).toBe('CKR_OPERATION_NOT_INITIALIZED');
  });

  it('abandons open operations when the session closes, signing nothing, and records it', async () => {
    const { partition, audit, user } = await setup();
    const handle = await user.signInit({ key: { label: 'ec' }, mechanism: 'ecdsa-sha256', purpose: 'crl' });
    await user.signUpdate(handle, Buffer.from('half a CRL'));
    await user.close();
    await new Promise((resolve) => setImmediate(resolve));
    expect(audit.events.at(-1)).toMatchObject({ op: 'signCancel', result: 'hsm.session_closed' });
    expect(audit.events.some((e) => e.op === 'signFinal')).toBe(false);
    expect(await refusal(user.signFinal(handle))).toBe('CKR_SESSION_CLOSED');
    await partition.close();
  });

  it('keeps handles apart between sessions', async () => {
    const { partition, user } = await setup();
    const handle = await user.signInit({ key: { label: 'ec' }, mechanism: 'ecdsa-sha256', purpose: 'crl' });
    const other = await loggedIn(partition, CA_USER);
    expect(await refusal(other.signFinal(handle))).toBe('CKR_OPERATION_NOT_INITIALIZED');
    expect(await user.signFinal(handle)).toHaveLength(64);
  });
});
