import { createHash, createPublicKey, verify, webcrypto } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as x509 from '@peculiar/x509';
import fc from 'fast-check';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { MemoryAuditSink } from '../../../src/hsm/memory-store.ts';
import { CALL_ID, CALLS } from '../../../src/hsm/p11/calls.ts';
import { CKA, CKF, CKG, CKM, CKO, CKR, CKU } from '../../../src/hsm/p11/pkcs11.ts';
import { type P11Server, startP11Server } from '../../../src/hsm/p11/server.ts';
import { RpcWriter, ulongValue, valueKind } from '../../../src/hsm/p11/wire.ts';
import type { EmulatedPartition } from '../../../src/hsm/partition.ts';
import type { KeyInfo } from '../../../src/hsm/types.ts';
import { CA_USER, OFFICER, openMemoryPartition } from '../helpers.ts';
import { RpcTestClient } from './rpc-client.ts';

/**
 * The PKCS#11 front end over its socket, spoken to by hand: what p11-kit's client sends, and what
 * it never would. Real clients (pkcs11-tool, the OpenSSL engine, nginx) are in consumers.test.ts.
 */

let dir: string;
let partition: EmulatedPartition;
let audit: MemoryAuditSink;
let server: P11Server;
const keys: Record<string, KeyInfo> = {};
const open: RpcTestClient[] = [];

async function connect(version = 0): Promise<RpcTestClient> {
  const { client } = await RpcTestClient.connect(server.socketPath, version);
  open.push(client);
  return client;
}

/** Initialised, one session, logged in as `who` (CKU_USER by default). */
async function ready(
  who: 'user' | 'so' | 'none' = 'user',
  rw = who === 'so',
): Promise<{ c: RpcTestClient; s: number }> {
  const c = await connect();
  expect(await c.initialize()).toBe(CKR.OK);
  const s = await c.openSession(rw);
  if (who === 'user') expect(await c.login(s, CKU.USER, CA_USER.pin)).toBe(CKR.OK);
  if (who === 'so') expect(await c.login(s, CKU.SO, OFFICER.pin)).toBe(CKR.OK);
  return { c, s };
}

const label = (text: string): [number, Buffer] => [CKA.LABEL, Buffer.from(text)];
const klass = (value: number): [number, Buffer] => [CKA.CLASS, ulongValue(value)];
const noParameter = (w: RpcWriter) => w.rawArray(undefined);

/** C_GetAttributeValue of one attribute with room for it: [CK_RV of the call, value or undefined]. */
async function attribute(
  c: RpcTestClient,
  s: number,
  handle: number,
  type: number,
): Promise<[number, Buffer | undefined]> {
  const { rv, r } = await c.call('C_GetAttributeValue', (w) =>
    w.ulong(s).ulong(handle).u32(1).u32(type).u32(4096),
  );
  if (rv !== 0) return [rv, undefined];
  r.u32();
  r.u32();
  if (r.u8() === 0) return [r.ulong(), undefined];
  r.u32();
  const kind = valueKind(type);
  const value =
    kind === 'ulong'
      ? ulongValue(r.ulong())
      : kind === 'byte'
        ? Buffer.from([r.u8()])
        : Buffer.from(r.rawArray() ?? []);
  return [r.ulong(), value];
}

async function signInit(
  c: RpcTestClient,
  s: number,
  key: number,
  mechanism: (w: RpcWriter) => void,
): Promise<number> {
  const { rv } = await c.call('C_SignInit', (w) => {
    mechanism(w.ulong(s));
    w.ulong(key);
  });
  return rv;
}

const ecdsa = (w: RpcWriter) => noParameter(w.u32(CKM.ECDSA));

/** C_Sign with `room` octets for the signature: [CK_RV, present, length or signature]. */
async function signOnce(c: RpcTestClient, s: number, data: Buffer, room = 512) {
  const { rv, r } = await c.call('C_Sign', (w) => w.ulong(s).byteArray(data).u32(room));
  if (rv !== 0) return { rv };
  const present = r.u8() === 1;
  if (!present) return { rv, length: r.u32() };
  return { rv, signature: Buffer.from(r.rawArray()!) };
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'signet-p11-'));
  ({ partition, audit } = await openMemoryPartition({ name: 'web' }));
  const officer = partition.openSession();
  await officer.login({ user: OFFICER.name, pin: OFFICER.pin });
  keys.web = await officer.createKey({ label: 'web', algorithm: 'ecdsa-p256', purposes: ['other'] });
  keys.rsa = await officer.createKey({ label: 'rsa', algorithm: 'rsa-2048', purposes: ['other'] });
  keys.ca = await officer.createKey({
    label: 'intermediate',
    algorithm: 'ecdsa-p256',
    purposes: ['certificate', 'crl'],
  });
  keys.every = await officer.createKey({ label: 'every-purpose', algorithm: 'ecdsa-p384' });
  keys.ed = await officer.createKey({ label: 'edwards', algorithm: 'ed25519', purposes: ['other'] });
  await officer.close();
  server = await startP11Server({
    partition,
    socketPath: join(dir, 'p11.sock'),
    frameTimeoutMs: 300,
  });
});

afterEach(() => {
  for (const c of open.splice(0)) c.close();
});

afterAll(async () => {
  await server?.close();
  await partition?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('transport and library', () => {
  it('answers the version octet with 0 whatever the client offers, so newer clients fall back', async () => {
    for (const offered of [0, 1, 2]) {
      const { client, version } = await RpcTestClient.connect(server.socketPath, offered);
      open.push(client);
      expect(version).toBe(0);
      expect(await client.initialize()).toBe(CKR.OK);
    }
  });

  it('creates its socket mode 0600', async () => {
    const { statSync } = await import('node:fs');
    expect(statSync(server.socketPath).mode & 0o777).toBe(0o600);
  });

  it('shows one slot, whose token is labelled with the partition name', async () => {
    const c = await connect();
    expect((await c.call('C_GetSlotList', (w) => w.u8(1).u32(0))).rv).toBe(CKR.CRYPTOKI_NOT_INITIALIZED);
    await c.initialize();
    const size = await c.call('C_GetSlotList', (w) => w.u8(1).u32(0));
    expect([size.r.u8(), size.r.u32()]).toEqual([0, 1]);
    const list = await c.call('C_GetSlotList', (w) => w.u8(1).u32(8));
    expect([list.r.u8(), list.r.u32(), list.r.ulong()]).toEqual([1, 1, 1]);
    const token = await c.call('C_GetTokenInfo', (w) => w.ulong(1));
    expect(token.rv).toBe(CKR.OK);
    expect(token.r.rawArray()!.toString()).toBe(`web${' '.repeat(29)}`);
    expect((await c.call('C_GetTokenInfo', (w) => w.ulong(7))).rv).toBe(CKR.SLOT_ID_INVALID);
  });

  it('lists the mechanisms the p11-kit client forwards, and no others', async () => {
    const { c } = await ready('none');
    const { r } = await c.call('C_GetMechanismList', (w) => w.ulong(1).u32(64));
    r.u8();
    const mechanisms = Array.from({ length: r.u32() }, () => r.ulong());
    expect(mechanisms).toEqual(
      expect.arrayContaining([
        CKM.ECDSA,
        CKM.ECDSA_SHA1,
        CKM.RSA_PKCS,
        CKM.RSA_PKCS_PSS,
        CKM.SHA256_RSA_PKCS,
      ]),
    );
    expect(mechanisms).not.toContain(0x1057); // CKM_EDDSA
    const info = await c.call('C_GetMechanismInfo', (w) => w.ulong(1).ulong(CKM.ECDSA));
    expect([info.r.ulong(), info.r.ulong(), info.r.ulong() & CKF.SIGN]).toEqual([256, 384, CKF.SIGN]);
    expect((await c.call('C_GetMechanismInfo', (w) => w.ulong(1).ulong(0x1057))).rv).toBe(
      CKR.MECHANISM_INVALID,
    );
  });

  it.each([
    'C_InitToken',
    'C_EncryptInit',
    'C_DecryptInit',
    'C_DigestInit',
    'C_VerifyInit',
    'C_DeriveKey',
    'C_UnwrapKey',
    'C_InitPIN',
    'C_SetPIN',
    'C_WaitForSlotEvent',
    'C_GetOperationState',
  ])('answers %s with CKR_FUNCTION_NOT_SUPPORTED', async (name) => {
    const { c } = await ready('user');
    // Arguments do not matter to a function that is not offered: none are sent.
    expect((await c.call(name)).rv).toBe(CKR.FUNCTION_NOT_SUPPORTED);
  });
});

describe('objects', () => {
  it('shows only public objects before login, and the private keys to the logged-in user', async () => {
    const { c, s } = await ready('none');
    const before = await c.find(s, []);
    expect(before).toHaveLength(2); // the public keys of web and rsa
    expect(await c.login(s, CKU.USER, CA_USER.pin)).toBe(CKR.OK);
    const after = await c.find(s, []);
    expect(after).toHaveLength(4);
    const labels = new Set<string>();
    for (const handle of after) labels.add((await attribute(c, s, handle, CKA.LABEL))[1]!.toString());
    expect([...labels].sort()).toEqual(['rsa', 'web']);
  });

  it.each(['intermediate', 'every-purpose', 'edwards'])(
    'cannot find key %s, whose purposes are not exactly other or which is Ed25519',
    async (name) => {
      const { c, s } = await ready('user');
      expect(await c.find(s, [label(name)])).toEqual([]);
      expect(
        await c.find(s, [
          [
            CKA.ID,
            Buffer.from(
              keys[name === 'intermediate' ? 'ca' : name === 'edwards' ? 'ed' : 'every']!.id,
              'hex',
            ),
          ],
        ]),
      ).toEqual([]);
    },
  );

  it('finds by label and class, and answers attributes: CKA_ID the key id, sensitive and never extractable', async () => {
    const { c, s } = await ready('user');
    const [handle] = await c.find(s, [klass(CKO.PRIVATE_KEY), label('web')]);
    expect(handle).toBeDefined();
    expect((await attribute(c, s, handle!, CKA.ID))[1]!.toString('hex')).toBe(keys.web!.id);
    expect(await attribute(c, s, handle!, CKA.SENSITIVE)).toEqual([CKR.OK, Buffer.from([1])]);
    expect(await attribute(c, s, handle!, CKA.EXTRACTABLE)).toEqual([CKR.OK, Buffer.from([0])]);
    const [pub] = await c.find(s, [klass(CKO.PUBLIC_KEY), label('web')]);
    expect((await attribute(c, s, pub!, CKA.PUBLIC_KEY_INFO))[1]).toEqual(Buffer.from(keys.web!.publicKey));
  });

  it('answers a size query with the length and no value, and a too small buffer with CKR_BUFFER_TOO_SMALL', async () => {
    const { c, s } = await ready('user');
    const [pub] = await c.find(s, [klass(CKO.PUBLIC_KEY), label('rsa')]);
    const size = await c.call('C_GetAttributeValue', (w) =>
      w.ulong(s).ulong(pub!).u32(1).u32(CKA.MODULUS).u32(0),
    );
    size.r.u32();
    expect([size.r.u32(), size.r.u8(), size.r.u32(), size.r.u32()]).toEqual([
      CKA.MODULUS,
      1,
      256,
      0xffffffff,
    ]);
    expect(size.r.ulong()).toBe(CKR.OK);
    const small = await c.call('C_GetAttributeValue', (w) =>
      w.ulong(s).ulong(pub!).u32(1).u32(CKA.MODULUS).u32(16),
    );
    small.r.u32();
    expect([small.r.u32(), small.r.u8(), small.r.ulong()]).toEqual([CKA.MODULUS, 0, CKR.BUFFER_TOO_SMALL]);
  });

  it('refuses CKA_VALUE and the private exponent with CKR_ATTRIBUTE_SENSITIVE, and records the attempt', async () => {
    const { c, s } = await ready('user');
    for (const [name, type] of [
      ['web', CKA.VALUE],
      ['rsa', CKA.PRIVATE_EXPONENT],
      ['rsa', CKA.PRIME_1],
    ] as const) {
      const [handle] = await c.find(s, [klass(CKO.PRIVATE_KEY), label(name)]);
      expect(await attribute(c, s, handle!, type)).toEqual([CKR.ATTRIBUTE_SENSITIVE, undefined]);
      expect(audit.events.at(-1)).toMatchObject({
        op: 'exportKey',
        keyLabel: name,
        result: 'hsm.key_unextractable',
      });
    }
  });

  it('answers an attribute an object lacks with CKR_ATTRIBUTE_TYPE_INVALID', async () => {
    const { c, s } = await ready('user');
    const [handle] = await c.find(s, [klass(CKO.PUBLIC_KEY), label('web')]);
    expect((await attribute(c, s, handle!, CKA.MODULUS))[0]).toBe(CKR.ATTRIBUTE_TYPE_INVALID);
  });
});

describe('signing', () => {
  it('signs a digest with CKM_ECDSA through the partition, audited as the partition user', async () => {
    const { c, s } = await ready('user');
    const [key] = await c.find(s, [klass(CKO.PRIVATE_KEY), label('web')]);
    expect(await signInit(c, s, key!, ecdsa)).toBe(CKR.OK);
    const data = createHash('sha256').update('hello').digest();
    // A size query first, as PKCS#11 callers do: it leaves the operation active.
    expect(await signOnce(c, s, data, 0)).toEqual({ rv: CKR.OK, length: 64 });
    expect(await signOnce(c, s, data, 10)).toEqual({ rv: CKR.OK, length: 64 });
    const { signature } = await signOnce(c, s, data);
    const spki = createPublicKey({ key: Buffer.from(keys.web!.publicKey), format: 'der', type: 'spki' });
    expect(verify('sha256', Buffer.from('hello'), { key: spki, dsaEncoding: 'ieee-p1363' }, signature!)).toBe(
      true,
    );
    expect(audit.events.at(-1)).toMatchObject({
      op: 'sign',
      user: 'ca',
      keyLabel: 'web',
      mechanism: 'ecdsa-raw',
      purpose: 'other',
      result: 'ok',
    });
    // The operation ended with the signature.
    expect((await signOnce(c, s, data)).rv).toBe(CKR.OPERATION_NOT_INITIALIZED);
  });

  it('signs in parts with CKM_SHA256_RSA_PKCS (C_SignUpdate, C_SignFinal)', async () => {
    const { c, s } = await ready('user');
    const [key] = await c.find(s, [klass(CKO.PRIVATE_KEY), label('rsa')]);
    expect(await signInit(c, s, key!, (w) => noParameter(w.u32(CKM.SHA256_RSA_PKCS)))).toBe(CKR.OK);
    for (const part of ['hello, ', 'world']) {
      expect((await c.call('C_SignUpdate', (w) => w.ulong(s).byteArray(Buffer.from(part)))).rv).toBe(CKR.OK);
    }
    const { r } = await c.call('C_SignFinal', (w) => w.ulong(s).u32(512));
    expect(r.u8()).toBe(1);
    const spki = createPublicKey({ key: Buffer.from(keys.rsa!.publicKey), format: 'der', type: 'spki' });
    expect(verify('sha256', Buffer.from('hello, world'), spki, r.rawArray()!)).toBe(true);
  });

  it('checks mechanisms at C_SignInit: key type, PSS parameters, unknown ones', async () => {
    const { c, s } = await ready('user');
    const [ec] = await c.find(s, [klass(CKO.PRIVATE_KEY), label('web')]);
    const [rsa] = await c.find(s, [klass(CKO.PRIVATE_KEY), label('rsa')]);
    const pss = (hash: number, mgf: number, salt: number) => (w: RpcWriter) =>
      w.u32(CKM.RSA_PKCS_PSS).ulong(hash).ulong(mgf).ulong(salt);
    expect(await signInit(c, s, ec!, (w) => noParameter(w.u32(CKM.RSA_PKCS)))).toBe(
      CKR.KEY_TYPE_INCONSISTENT,
    );
    expect(await signInit(c, s, rsa!, ecdsa)).toBe(CKR.KEY_TYPE_INCONSISTENT);
    expect(await signInit(c, s, rsa!, pss(CKM.SHA256, CKG.MGF1_SHA1, 32))).toBe(CKR.MECHANISM_PARAM_INVALID);
    expect(await signInit(c, s, rsa!, pss(CKM.SHA_1, CKG.MGF1_SHA1, 20))).toBe(CKR.MECHANISM_PARAM_INVALID);
    expect(await signInit(c, s, rsa!, pss(CKM.SHA512, CKG.MGF1_SHA512, 300))).toBe(
      CKR.MECHANISM_PARAM_INVALID,
    );
    expect(await signInit(c, s, rsa!, (w) => noParameter(w.u32(0x1057)))).toBe(CKR.MECHANISM_INVALID);
    expect(await signInit(c, s, rsa!, pss(CKM.SHA256, CKG.MGF1_SHA256, 32))).toBe(CKR.OK);
    expect(await signInit(c, s, rsa!, pss(CKM.SHA256, CKG.MGF1_SHA256, 32))).toBe(CKR.OPERATION_ACTIVE);
  });

  it('refuses to sign before login and for the officer (CKR_USER_NOT_LOGGED_IN)', async () => {
    const none = await ready('none');
    const [pub] = await none.c.find(none.s, [klass(CKO.PUBLIC_KEY), label('web')]);
    expect(await signInit(none.c, none.s, pub! - 1, ecdsa)).toBe(CKR.USER_NOT_LOGGED_IN);
    const so = await ready('so');
    expect(await signInit(so.c, so.s, pub! - 1, ecdsa)).toBe(CKR.USER_NOT_LOGGED_IN);
  });

  it("refuses every guessed handle of the CA's keys with CKR_KEY_FUNCTION_NOT_PERMITTED, and records each refusal", async () => {
    const { c, s } = await ready('user');
    await c.find(s, []);
    const refused: string[] = [];
    let signed = 0;
    for (let handle = 1; handle <= 40; handle++) {
      const before = audit.events.length;
      const rv = await signInit(c, s, handle, ecdsa);
      if (rv === CKR.OK) {
        signed++;
        await signOnce(c, s, Buffer.alloc(32, 1));
      } else if (audit.events.length > before) {
        expect(rv).toBe(CKR.KEY_FUNCTION_NOT_PERMITTED);
        expect(audit.events.at(-1)).toMatchObject({
          op: 'signInit',
          result: 'hsm.key_function_not_permitted',
        });
        refused.push(audit.events.at(-1)!.keyLabel!);
        // Nor may the client read anything of those objects.
        expect((await attribute(c, s, handle, CKA.LABEL))[0]).toBe(CKR.OBJECT_HANDLE_INVALID);
      }
    }
    expect(signed).toBe(1); // the private key of web; rsa is inconsistent with CKM_ECDSA
    expect(new Set(refused)).toEqual(new Set(['intermediate', 'every-purpose', 'edwards']));
    expect(
      audit.events.filter(
        (e) => e.op === 'sign' && ['intermediate', 'every-purpose', 'edwards'].includes(e.keyLabel!),
      ),
    ).toEqual([]);
  });
});

describe('login', () => {
  it('is the partition user for CKU_USER and the officer for CKU_SO, one at a time', async () => {
    const { c, s } = await ready('none', true);
    expect(await c.login(s, CKU.SO, CA_USER.pin)).toBe(CKR.PIN_INCORRECT);
    expect(await c.login(s, CKU.USER, OFFICER.pin)).toBe(CKR.PIN_INCORRECT);
    // A PIN read from a file with its line end (libp11's pin-source) is the PIN.
    expect(await c.login(s, CKU.USER, `${CA_USER.pin}\n`)).toBe(CKR.OK);
    expect(await c.login(s, CKU.USER, CA_USER.pin)).toBe(CKR.USER_ALREADY_LOGGED_IN);
    expect(await c.login(s, CKU.SO, OFFICER.pin)).toBe(CKR.USER_ANOTHER_ALREADY_LOGGED_IN);
    expect((await c.call('C_Logout', (w) => w.ulong(s))).rv).toBe(CKR.OK);
    expect(await c.login(s, CKU.SO, OFFICER.pin)).toBe(CKR.OK);
    const logins = audit.events.filter((e) => e.op === 'login').slice(-4);
    expect(logins.map((e) => [e.user, e.result])).toEqual([
      ['officer', 'hsm.pin_incorrect'],
      ['ca', 'hsm.pin_incorrect'],
      ['ca', 'ok'],
      ['officer', 'ok'],
    ]);
  });

  it('locks the user after five wrong PINs, as through the partition protocol, and the token says so', async () => {
    const { partition: p } = await openMemoryPartition({ name: 'lockout' });
    const lockServer = await startP11Server({ partition: p, socketPath: join(dir, 'lock.sock') });
    try {
      const { client: c } = await RpcTestClient.connect(lockServer.socketPath);
      open.push(c);
      await c.initialize();
      const s = await c.openSession();
      for (let i = 0; i < 4; i++)
        expect(await c.login(s, CKU.USER, 'wrong-pin-0000')).toBe(CKR.PIN_INCORRECT);
      expect(await c.login(s, CKU.USER, 'wrong-pin-0000')).toBe(CKR.PIN_LOCKED);
      expect(await c.login(s, CKU.USER, CA_USER.pin)).toBe(CKR.PIN_LOCKED);
      const token = await c.call('C_GetTokenInfo', (w) => w.ulong(1));
      for (let i = 0; i < 4; i++) token.r.rawArray();
      expect(token.r.ulong() & CKF.USER_PIN_LOCKED).toBe(CKF.USER_PIN_LOCKED);
      // The same lock holds on the partition's own protocol, and the officer lifts it there.
      const native = p.openSession();
      await expect(native.login({ user: CA_USER.name, pin: CA_USER.pin })).rejects.toMatchObject({
        rv: 'CKR_PIN_LOCKED',
      });
      const officer = p.openSession();
      await officer.login({ user: OFFICER.name, pin: OFFICER.pin });
      await officer.unlockUser({ name: CA_USER.name });
      expect(await c.login(s, CKU.USER, CA_USER.pin)).toBe(CKR.OK);
    } finally {
      await lockServer.close();
      await p.close();
    }
  });

  it('logs CKU_USER in as the partition user --p11-user names, and only as a crypto user', async () => {
    const { partition: p } = await openMemoryPartition({ name: 'users' });
    const officer = p.openSession();
    await officer.login({ user: OFFICER.name, pin: OFFICER.pin });
    await officer.createUser({ name: 'web', role: 'user', pin: 'web-user-pin-1234' });
    const servers = [
      await startP11Server({ partition: p, socketPath: join(dir, 'web.sock'), user: 'web' }),
      await startP11Server({ partition: p, socketPath: join(dir, 'so.sock'), user: 'officer' }),
    ];
    try {
      const web = (await RpcTestClient.connect(servers[0]!.socketPath)).client;
      open.push(web);
      await web.initialize();
      const s = await web.openSession();
      expect(await web.login(s, CKU.USER, CA_USER.pin)).toBe(CKR.PIN_INCORRECT);
      expect(await web.login(s, CKU.USER, 'web-user-pin-1234')).toBe(CKR.OK);
      // A PKCS#11 user that is the officer would sign nothing and manage everything: refused.
      const so = (await RpcTestClient.connect(servers[1]!.socketPath)).client;
      open.push(so);
      await so.initialize();
      expect(await so.login(await so.openSession(), CKU.USER, OFFICER.pin)).toBe(CKR.USER_TYPE_INVALID);
    } finally {
      for (const server of servers) await server.close();
      await p.close();
    }
  });

  it('logs out when the last session closes', async () => {
    const { c, s } = await ready('user');
    expect((await c.call('C_CloseSession', (w) => w.ulong(s))).rv).toBe(CKR.OK);
    const s2 = await c.openSession();
    const info = await c.call('C_GetSessionInfo', (w) => w.ulong(s2));
    info.r.ulong();
    expect(info.r.ulong()).toBe(0); // CKS_RO_PUBLIC_SESSION
    expect(audit.events.at(-1)).toMatchObject({ op: 'logout', user: 'ca' });
  });
});

describe('the officer', () => {
  it('generates key pairs of purpose other only; the user may not', async () => {
    const gen = (s: number, name: string) => (w: RpcWriter) => {
      w.ulong(s).u32(CKM.EC_KEY_PAIR_GEN).rawArray(undefined);
      w.u32(2)
        .attribute(CKA.EC_PARAMS, Buffer.from('06082a8648ce3d030107', 'hex'))
        .attribute(CKA.LABEL, Buffer.from(name));
      w.u32(2)
        .attribute(CKA.SENSITIVE, Buffer.from([1]))
        .attribute(CKA.LABEL, Buffer.from(name));
    };
    const user = await ready('user');
    expect((await user.c.call('C_GenerateKeyPair', gen(user.s, 'nope'))).rv).toBe(CKR.USER_NOT_LOGGED_IN);
    const { c, s } = await ready('so');
    const made = await c.call('C_GenerateKeyPair', gen(s, 'api'));
    expect(made.rv).toBe(CKR.OK);
    const probe = partition.openSession();
    await probe.login({ user: OFFICER.name, pin: OFFICER.pin });
    expect(await probe.findKey({ label: 'api' })).toMatchObject({
      algorithm: 'ecdsa-p256',
      purposes: ['other'],
      extractable: false,
    });
    expect((await c.call('C_GenerateKeyPair', gen(s, 'api'))).rv).toBe(CKR.ATTRIBUTE_VALUE_INVALID);
    const rsa = await c.call('C_GenerateKeyPair', (w) => {
      w.ulong(s).u32(CKM.RSA_PKCS_KEY_PAIR_GEN).rawArray(undefined);
      w.u32(2).attribute(CKA.MODULUS_BITS, ulongValue(1024)).attribute(CKA.LABEL, Buffer.from('small'));
      w.u32(0);
    });
    expect(rsa.rv).toBe(CKR.KEY_SIZE_RANGE);
    const extractable = await c.call('C_GenerateKeyPair', (w) => {
      w.ulong(s).u32(CKM.EC_KEY_PAIR_GEN).rawArray(undefined);
      w.u32(2)
        .attribute(CKA.EC_PARAMS, Buffer.from('06082a8648ce3d030107', 'hex'))
        .attribute(CKA.LABEL, Buffer.from('leaky'));
      w.u32(1).attribute(CKA.EXTRACTABLE, Buffer.from([1]));
    });
    expect(extractable.rv).toBe(CKR.ATTRIBUTE_VALUE_INVALID);
    await probe.close();
  });
});

/** A certificate for a partition key's public key, signed by a throwaway CA key in this process. */
async function certificateFor(info: KeyInfo, subject = 'CN=www.example.com'): Promise<Buffer> {
  const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
  const ca = (await webcrypto.subtle.generateKey(alg, false, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const certificate = await x509.X509CertificateGenerator.create(
    {
      serialNumber: '01',
      subject,
      issuer: 'CN=Throwaway CA',
      notBefore: new Date('2026-01-01T00:00:00Z'),
      notAfter: new Date('2027-01-01T00:00:00Z'),
      publicKey: new x509.PublicKey(Buffer.from(info.publicKey)),
      signingKey: ca.privateKey,
      signingAlgorithm: alg,
    },
    webcrypto as unknown as webcrypto.Crypto,
  );
  return Buffer.from(certificate.rawData);
}

describe('certificates and destroying objects', () => {
  it('lets the officer store a certificate (C_CreateObject) that everyone then finds beside its key', async () => {
    const der = await certificateFor(keys.rsa!);
    const template = (w: RpcWriter, id: Buffer, value: Buffer) =>
      w
        .u32(4)
        .attribute(CKA.CLASS, ulongValue(CKO.CERTIFICATE))
        .attribute(CKA.ID, id)
        .attribute(CKA.VALUE, value)
        .attribute(CKA.LABEL, Buffer.from('rsa-cert'));
    const user = await ready('user');
    const refused = await user.c.call('C_CreateObject', (w) =>
      template(w.ulong(user.s), Buffer.from(keys.rsa!.id, 'hex'), der),
    );
    expect(refused.rv).toBe(CKR.USER_NOT_LOGGED_IN);
    const so = await ready('so');
    const wrongKey = await so.c.call('C_CreateObject', (w) =>
      template(w.ulong(so.s), Buffer.from(keys.web!.id, 'hex'), der),
    );
    expect(wrongKey.rv).toBe(CKR.ATTRIBUTE_VALUE_INVALID);
    const caKey = await so.c.call('C_CreateObject', (w) =>
      template(w.ulong(so.s), Buffer.from(keys.ca!.id, 'hex'), der),
    );
    expect(caKey.rv).toBe(CKR.KEY_FUNCTION_NOT_PERMITTED);
    const created = await so.c.call('C_CreateObject', (w) =>
      template(w.ulong(so.s), Buffer.from(keys.rsa!.id, 'hex'), der),
    );
    expect(created.rv).toBe(CKR.OK);
    expect(audit.events.at(-1)).toMatchObject({
      op: 'storeCertificate',
      user: 'officer',
      keyLabel: 'rsa',
      result: 'ok',
    });

    const anyone = await ready('none');
    const [handle] = await anyone.c.find(anyone.s, [
      klass(CKO.CERTIFICATE),
      [CKA.ID, Buffer.from(keys.rsa!.id, 'hex')],
    ]);
    expect(handle).toBeGreaterThan(0);
    expect(await attribute(anyone.c, anyone.s, handle!, CKA.VALUE)).toEqual([CKR.OK, der]);
    expect((await attribute(anyone.c, anyone.s, handle!, CKA.LABEL))[1]!.toString()).toBe('rsa-cert');
    const subject = new x509.X509Certificate(der).subjectName.toArrayBuffer();
    expect((await attribute(anyone.c, anyone.s, handle!, CKA.SUBJECT))[1]).toEqual(Buffer.from(subject));
    expect((await attribute(anyone.c, anyone.s, handle!, CKA.SERIAL_NUMBER))[1]).toEqual(
      Buffer.from('020101', 'hex'),
    );
    // Importing a key instead is not offered.
    const key = await so.c.call('C_CreateObject', (w) =>
      w.ulong(so.s).u32(1).attribute(CKA.CLASS, ulongValue(CKO.PRIVATE_KEY)),
    );
    expect(key.rv).toBe(CKR.FUNCTION_NOT_SUPPORTED);
  });

  it('lets the officer remove a certificate; keys are not destroyed through PKCS#11', async () => {
    const officerSession = partition.openSession();
    await officerSession.login({ user: OFFICER.name, pin: OFFICER.pin });
    const temp = await officerSession.createKey({
      label: 'temp',
      algorithm: 'ecdsa-p256',
      purposes: ['other'],
    });
    const so = await ready('so');
    const store = (value: Buffer) =>
      so.c.call('C_CreateObject', (w) =>
        w
          .ulong(so.s)
          .u32(3)
          .attribute(CKA.CLASS, ulongValue(CKO.CERTIFICATE))
          .attribute(CKA.ID, Buffer.from(temp.id, 'hex'))
          .attribute(CKA.VALUE, value),
      );
    expect((await store(Buffer.from('not a certificate'))).rv).toBe(CKR.ARGUMENTS_BAD);
    expect((await store(await certificateFor(temp))).rv).toBe(CKR.OK);
    const user = await ready('user');
    const [certificate] = await user.c.find(user.s, [klass(CKO.CERTIFICATE), label('temp')]);
    expect((await user.c.call('C_DestroyObject', (w) => w.ulong(user.s).ulong(certificate!))).rv).toBe(
      CKR.USER_NOT_LOGGED_IN,
    );
    const [soCertificate] = await so.c.find(so.s, [klass(CKO.CERTIFICATE), label('temp')]);
    const [soPublic] = await so.c.find(so.s, [klass(CKO.PUBLIC_KEY), label('temp')]);
    expect(await so.c.find(so.s, [klass(CKO.PRIVATE_KEY), label('temp')])).toEqual([]);
    expect((await so.c.call('C_DestroyObject', (w) => w.ulong(so.s).ulong(soPublic!))).rv).toBe(
      CKR.ACTION_PROHIBITED,
    );
    expect((await so.c.call('C_DestroyObject', (w) => w.ulong(so.s).ulong(soCertificate!))).rv).toBe(CKR.OK);
    expect(audit.events.at(-1)).toMatchObject({ op: 'deleteCertificate', keyLabel: 'temp', result: 'ok' });
    expect(await user.c.find(user.s, [klass(CKO.CERTIFICATE), label('temp')])).toEqual([]);
    expect(await officerSession.findKey({ label: 'temp' })).toBeDefined();
    await officerSession.destroyKey({ label: 'temp' });
    await officerSession.close();
  });
});

describe('what would let key material out', () => {
  it('refuses C_WrapKey (CKR_KEY_UNEXTRACTABLE), a copy into an extractable object and clearing CKA_SENSITIVE (CKR_ATTRIBUTE_READ_ONLY), each recorded', async () => {
    const { c, s } = await ready('user');
    const [key] = await c.find(s, [klass(CKO.PRIVATE_KEY), label('web')]);
    const wrap = await c.call('C_WrapKey', (w) =>
      w.ulong(s).u32(CKM.RSA_PKCS).rawArray(undefined).ulong(key!).ulong(key!).u32(4096),
    );
    expect(wrap.rv).toBe(CKR.KEY_UNEXTRACTABLE);
    expect(audit.events.at(-1)).toMatchObject({
      op: 'wrapKey',
      keyLabel: 'web',
      result: 'hsm.key_unextractable',
    });
    const copy = await c.call('C_CopyObject', (w) =>
      w
        .ulong(s)
        .ulong(key!)
        .u32(1)
        .attribute(CKA.EXTRACTABLE, Buffer.from([1])),
    );
    expect(copy.rv).toBe(CKR.ATTRIBUTE_READ_ONLY);
    expect(audit.events.at(-1)).toMatchObject({
      op: 'copyObject',
      keyLabel: 'web',
      result: 'hsm.key_unextractable',
    });
    const set = await c.call('C_SetAttributeValue', (w) =>
      w
        .ulong(s)
        .ulong(key!)
        .u32(1)
        .attribute(CKA.SENSITIVE, Buffer.from([0])),
    );
    expect(set.rv).toBe(CKR.ATTRIBUTE_READ_ONLY);
    expect(audit.events.at(-1)).toMatchObject({
      op: 'setAttributeValue',
      keyLabel: 'web',
      result: 'hsm.key_unextractable',
    });
    const plainCopy = await c.call('C_CopyObject', (w) => w.ulong(s).ulong(key!).u32(0));
    expect(plainCopy.rv).toBe(CKR.ACTION_PROHIBITED);
  });
});

describe('a sealed partition', () => {
  it('is a slot without its token until unsealed', async () => {
    const secret = Buffer.from('unseal-me-please');
    const { partition: sealed } = await openMemoryPartition({ name: 'sealed', secret });
    const sealedServer = await startP11Server({ partition: sealed, socketPath: join(dir, 'sealed.sock') });
    try {
      const { client: c } = await RpcTestClient.connect(sealedServer.socketPath);
      open.push(c);
      await c.initialize();
      const present = await c.call('C_GetSlotList', (w) => w.u8(1).u32(8));
      expect([present.r.u8(), present.r.u32()]).toEqual([1, 0]);
      expect((await c.call('C_OpenSession', (w) => w.ulong(1).ulong(CKF.SERIAL_SESSION))).rv).toBe(
        CKR.TOKEN_NOT_PRESENT,
      );
      await sealed.openSession().unseal({ secret });
      expect(await c.openSession()).toBeGreaterThan(0);
    } finally {
      await sealedServer.close();
      await sealed.close();
    }
  });
});

describe('malformed messages', () => {
  const valid = () => new RpcWriter().u32(CALL_ID.C_GetInfo!).rawArray(Buffer.from(''));
  const header = (code: number, options: number, body: number) => {
    const h = Buffer.alloc(12);
    h.writeUInt32BE(code, 0);
    h.writeUInt32BE(options, 4);
    h.writeUInt32BE(body, 8);
    return h;
  };

  it.each([
    ['an unknown call id', new RpcWriter().u32(9999).rawArray(Buffer.from('')).finish()],
    ['call id 0 (the error answer)', new RpcWriter().u32(0).rawArray(Buffer.from('u')).finish()],
    ['a wrong signature string', new RpcWriter().u32(CALL_ID.C_Login!).rawArray(Buffer.from('uuu')).finish()],
    ['no signature at all', new RpcWriter().u32(CALL_ID.C_Login!).finish()],
    [
      'truncated arguments',
      new RpcWriter().u32(CALL_ID.C_Login!).rawArray(Buffer.from('uuay')).ulong(1).finish(),
    ],
    ['octets after the arguments', valid().u8(7).finish()],
    [
      'a byte array longer than the message',
      new RpcWriter()
        .u32(CALL_ID.C_Login!)
        .rawArray(Buffer.from('uuay'))
        .ulong(1)
        .ulong(1)
        .u8(1)
        .u32(1000)
        .finish(),
    ],
    ['an empty body', Buffer.alloc(0)],
    [
      'a wrong handshake',
      new RpcWriter()
        .u32(CALL_ID.C_Initialize!)
        .rawArray(Buffer.from('ayyay'))
        .byteArray(Buffer.from('HELLO'))
        .u8(0)
        .byteArrayLength(0)
        .finish(),
    ],
  ])('closes the connection of %s; the partition and other connections carry on', async (_name, body) => {
    const other = await ready('user');
    const bad = await connect();
    await bad.initialize().catch(() => {});
    expect(await bad.rawCall(body)).toBeUndefined();
    expect(bad.closed).toBe(true);
    expect(audit.events.some((e) => e.op === 'p11.protocol' && e.result === 'hsm.protocol_error')).toBe(true);
    const [key] = await other.c.find(other.s, [klass(CKO.PRIVATE_KEY), label('web')]);
    expect(await signInit(other.c, other.s, key!, ecdsa)).toBe(CKR.OK);
    expect((await signOnce(other.c, other.s, Buffer.alloc(32, 2))).signature).toHaveLength(64);
  });

  it.each([
    ['message code 0', header(0, 0, 4)],
    ['an oversized body', header(0x10, 0, 0x7fffffff)],
    ['oversized options', header(0x10, 1 << 20, 0)],
  ])('closes the connection on %s without waiting for the rest', async (_name, head) => {
    const bad = await connect();
    bad.socket.write(head);
    await new Promise((resolve) => bad.socket.once('close', resolve));
    expect(bad.closed).toBe(true);
  });

  it('cuts off a message left unfinished', async () => {
    const bad = await connect();
    bad.socket.write(header(0x10, 0, 100));
    bad.socket.write(Buffer.alloc(10));
    await new Promise((resolve) => bad.socket.once('close', resolve));
    expect(bad.closed).toBe(true);
  });

  it('cuts off a message trickled in octet by octet, timed from its first octet', async () => {
    const bad = await connect();
    bad.socket.write(header(0x10, 0, 100));
    const started = Date.now();
    const trickle = setInterval(() => bad.socket.write(Buffer.alloc(1)), 50);
    await new Promise((resolve) => bad.socket.once('close', resolve));
    clearInterval(trickle);
    expect(Date.now() - started).toBeLessThan(2000);
  });

  it('survives random octet streams, frame headers included', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.uint8Array({ minLength: 1, maxLength: 64 }), { maxLength: 6 }),
        async (chunks) => {
          const { client } = await RpcTestClient.connect(server.socketPath);
          for (const chunk of chunks) client.socket.write(chunk);
          await new Promise((resolve) => setTimeout(resolve, 2));
          client.close();
        },
      ),
      { numRuns: 100 },
    );
    const { c, s } = await ready('user');
    expect((await c.find(s, [label('rsa')])).length).toBe(2);
  });

  it('survives random and mutated messages: it never crashes, and answers a fresh client afterwards', async () => {
    const seeds = CALLS.slice(1).map((call) =>
      new RpcWriter().u32(call.id).rawArray(Buffer.from(call.request, 'latin1')).finish(),
    );
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.uint8Array({ maxLength: 200 }),
          fc
            .tuple(fc.constantFrom(...seeds), fc.uint8Array({ maxLength: 64 }))
            .map(([seed, tail]) => Buffer.concat([seed, tail])),
          fc
            .tuple(fc.constantFrom(...seeds), fc.nat(40), fc.integer({ min: 0, max: 255 }))
            .map(([seed, at, value]) => {
              const copy = Buffer.from(seed);
              if (copy.length > 0) copy[at % copy.length] = value;
              return copy;
            }),
        ),
        async (body) => {
          const { client } = await RpcTestClient.connect(server.socketPath);
          try {
            await client.initialize();
            await client.rawCall(Buffer.from(body));
          } finally {
            client.close();
          }
        },
      ),
      { numRuns: 150 },
    );
    const { c, s } = await ready('user');
    expect((await c.find(s, [label('web')])).length).toBe(2);
    expect(server.connectionCount()).toBeLessThan(10);
  });
});
