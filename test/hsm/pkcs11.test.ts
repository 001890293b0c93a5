import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import type * as Pkcs11Js from 'pkcs11js';
import { afterAll, beforeAll, describe, expect, it, test } from 'vitest';
import { partitionOfKeyUri } from '../../src/hsm/key-uri.ts';
import { moduleError } from '../../src/hsm/pkcs11/errors.ts';
import { Pkcs11Token } from '../../src/hsm/pkcs11/token.ts';
import { formatPkcs11Uri, parsePkcs11Uri } from '../../src/hsm/pkcs11/uri.ts';
import { HsmError } from '../../src/hsm/types.ts';
import { createSoftHsmToken, type SoftHsmToken, softHsmAvailable } from '../helpers/softhsm.ts';
import { nodeVerifies } from './conformance.ts';

/** Runs `signet ...` without blocking the event loop. */
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

/** A pkcs11js error as the binding throws it: a Pkcs11Error with the CK_RV in `code`. */
const moduleFailure = (code: number) => Object.assign(new Error(`CK_RV ${code}`), { code });

describe('RFC 7512 key URIs', () => {
  test.each([
    [
      'token and object',
      'pkcs11:token=ca-token;object=dev-intermediate',
      { token: 'ca-token', object: 'dev-intermediate' },
    ],
    ['a percent-encoded id', 'pkcs11:token=t;id=%01%AB%ff', { token: 't', id: '01abff' }],
    ['a percent-encoded label', 'pkcs11:token=My%20Token;object=a%2Fb', { token: 'My Token', object: 'a/b' }],
    [
      'type=private and slot attributes',
      'pkcs11:slot-id=3;token=t;object=k;type=private',
      { token: 't', object: 'k' },
    ],
    ['no token (any token)', 'pkcs11:object=k', { object: 'k' }],
  ])('parses %s', (_name, uri, expected) => {
    expect(parsePkcs11Uri(uri)).toEqual(expected);
  });

  test.each([
    ['a PIN in the query', 'pkcs11:token=t;object=k?pin-value=1234'],
    ['an unknown attribute', 'pkcs11:token=t;object=k;colour=red'],
    ['type=public', 'pkcs11:token=t;object=k;type=public'],
    ['neither object nor id', 'pkcs11:token=t'],
    ['a space that is not encoded', 'pkcs11:token=a b;object=k'],
    ['an attribute given twice', 'pkcs11:token=t;object=k;object=j'],
    ['an id of 33 octets', `pkcs11:token=t;id=${'%00'.repeat(33)}`],
    ['another scheme', 'hsm:partition=p;label=k'],
  ])('refuses %s (CKR_ARGUMENTS_BAD)', (_name, uri) => {
    expect(() => parsePkcs11Uri(uri)).toThrow(HsmError);
    try {
      parsePkcs11Uri(uri);
    } catch (error) {
      expect((error as HsmError).rv).toBe('CKR_ARGUMENTS_BAD');
    }
  });

  it('writes labels percent-encoded and reads them back', () => {
    const uri = formatPkcs11Uri('Token #1', 'key;1', '0a0b');
    expect(uri).toBe('pkcs11:token=Token%20%231;object=key%3B1;id=%0a%0b');
    expect(parsePkcs11Uri(uri)).toEqual({ token: 'Token #1', object: 'key;1', id: '0a0b' });
  });

  it('finds the partition of a pkcs11: URI by its token, and of an hsm: URI by its name', () => {
    const tokens = new Map([
      ['ca-token', 'issuing'],
      ['root-token', 'root'],
    ]);
    expect(partitionOfKeyUri('pkcs11:token=ca-token;object=k', tokens)).toBe('issuing');
    expect(partitionOfKeyUri('pkcs11:token=root-token;object=k', tokens)).toBe('root');
    expect(partitionOfKeyUri('pkcs11:token=other;object=k', tokens)).toBeUndefined();
    expect(partitionOfKeyUri('pkcs11:object=k', new Map([['ca-token', 'issuing']]))).toBe('issuing');
    expect(partitionOfKeyUri('pkcs11:object=k', tokens)).toBeUndefined();
    expect(partitionOfKeyUri('hsm:partition=issuing;label=k', tokens)).toBe('issuing');
  });
});

describe('PKCS#11 return values', () => {
  test.each([
    [0xa0, 'CKR_PIN_INCORRECT', 'CKR_PIN_INCORRECT', '--token-pin-file'],
    [0xa4, 'CKR_PIN_LOCKED', 'CKR_PIN_LOCKED', 'security officer'],
    [0xe0, 'CKR_TOKEN_NOT_PRESENT', 'CKR_DEVICE_REMOVED', 'token label or slot id'],
    [0x32, 'CKR_DEVICE_REMOVED', 'CKR_DEVICE_REMOVED', 'reconnects'],
    [0xb3, 'CKR_SESSION_HANDLE_INVALID', 'CKR_DEVICE_REMOVED', 'reconnects'],
    [0x70, 'CKR_MECHANISM_INVALID', 'CKR_MECHANISM_INVALID', 'pkcs11-tool -M'],
    [0x03, 'CKR_SLOT_ID_INVALID', 'CKR_DEVICE_ERROR', '--slot-id'],
    [0x30, 'CKR_DEVICE_ERROR', 'CKR_DEVICE_ERROR', "HSM's own logs"],
    [0x8000_0001, 'CK_RV 0x80000001', 'CKR_DEVICE_ERROR', 'C_Sign'],
  ])('%i (%s) becomes %s and says what to check', (code, name, rv, hint) => {
    const error = moduleError('C_Sign', moduleFailure(code));
    expect(error.rv).toBe(rv);
    expect(error.message).toContain(name);
    expect(error.message).toContain(hint);
  });

  it('makes a token that went away a 503-class reason (hsm.unavailable)', () => {
    expect(moduleError('C_Sign', moduleFailure(0x32)).code).toBe('hsm.unavailable');
  });
});

describe.runIf(softHsmAvailable())('a SoftHSM2 token', () => {
  let token: SoftHsmToken;
  let keys: Pkcs11Token;
  const previousConf = process.env.SOFTHSM2_CONF;

  beforeAll(async () => {
    token = createSoftHsmToken('unit-token');
    process.env.SOFTHSM2_CONF = token.conf;
    keys = await Pkcs11Token.open({ module: token.module, tokenLabel: token.label, pin: token.pin });
  });

  afterAll(async () => {
    await keys?.close();
    if (previousConf === undefined) delete process.env.SOFTHSM2_CONF;
    else process.env.SOFTHSM2_CONF = previousConf;
    token?.cleanup();
  });

  /** Reads attributes through a second handle on the module, as another application would. */
  function readAttributes(id: string, objectClass: number, types: number[]): Map<number, Buffer | 'refused'> {
    const binding = createRequire(import.meta.url)('pkcs11js') as typeof Pkcs11Js;
    const pkcs11 = new binding.PKCS11();
    pkcs11.load(token.module);
    try {
      pkcs11.C_Initialize({ flags: 2 });
    } catch {}
    const slot = pkcs11
      .C_GetSlotList(true)
      .find((s) => pkcs11.C_GetTokenInfo(s).label.trim() === token.label)!;
    const session = pkcs11.C_OpenSession(slot, binding.CKF_SERIAL_SESSION);
    try {
      pkcs11.C_FindObjectsInit(session, [
        { type: binding.CKA_CLASS, value: objectClass },
        { type: binding.CKA_ID, value: Buffer.from(id, 'hex') },
      ]);
      const [object] = pkcs11.C_FindObjects(session, 1);
      pkcs11.C_FindObjectsFinal(session);
      const result = new Map<number, Buffer | 'refused'>();
      for (const type of types) {
        try {
          result.set(type, pkcs11.C_GetAttributeValue(session, object!, [{ type }])[0]!.value as Buffer);
        } catch {
          result.set(type, 'refused');
        }
      }
      return result;
    } finally {
      pkcs11.C_CloseSession(session);
    }
  }

  it('creates keys on the token: token objects, sensitive, never extractable, only the usages asked', async () => {
    const entry = await keys.create({
      id: 'a1'.repeat(8),
      label: 'attrs',
      algorithm: 'ecdsa-p256',
      usages: ['sign', 'verify'],
    });
    expect(entry).toMatchObject({
      id: 'a1'.repeat(8),
      label: 'attrs',
      algorithm: 'ecdsa-p256',
      extractable: false,
    });
    const on = (v: Buffer | 'refused' | undefined) => v !== 'refused' && v !== undefined && v[0] === 1;
    const priv = readAttributes(entry.id, 3, [0x1, 0x2, 0x103, 0x162, 0x108, 0x105, 0x107, 0x10c, 0x11]);
    expect({
      token: on(priv.get(0x1)),
      private: on(priv.get(0x2)),
      sensitive: on(priv.get(0x103)),
      extractable: on(priv.get(0x162)),
      sign: on(priv.get(0x108)),
      decrypt: on(priv.get(0x105)),
      unwrap: on(priv.get(0x107)),
      derive: on(priv.get(0x10c)),
    }).toEqual({
      token: true,
      private: true,
      sensitive: true,
      extractable: false,
      sign: true,
      decrypt: false,
      unwrap: false,
      derive: false,
    });
    // CKA_VALUE of a sensitive key is refused to everyone.
    expect(priv.get(0x11)).toBe('refused');
    const pub = readAttributes(entry.id, 2, [0x1, 0x10a, 0x104, 0x106]);
    expect([on(pub.get(0x1)), on(pub.get(0x10a)), on(pub.get(0x104)), on(pub.get(0x106))]).toEqual([
      true,
      true,
      false,
      false,
    ]);
  });

  it('creates a verify-only key without CKA_SIGN', async () => {
    const entry = await keys.create({
      id: 'b2'.repeat(8),
      label: 'verify-only',
      algorithm: 'ed25519',
      usages: ['verify'],
    });
    expect(entry.usages).toEqual(['verify']);
    expect(readAttributes(entry.id, 3, [0x108]).get(0x108)).toEqual(Buffer.from([0]));
  });

  it('refuses a second key with a label the token already holds (CKR_OBJECT_EXISTS)', async () => {
    await expect(
      keys.create({ id: 'c3'.repeat(8), label: 'attrs', algorithm: 'ecdsa-p256', usages: ['sign'] }),
    ).rejects.toMatchObject({ rv: 'CKR_OBJECT_EXISTS' });
  });

  it('answers CKR_DEVICE_REMOVED when its sessions are lost, then reconnects and signs again', async () => {
    const entry = (await keys.list()).find((k) => k.label === 'attrs')!;
    const data = Buffer.from('before');
    expect(
      nodeVerifies(
        entry.publicKey,
        'ecdsa-sha256',
        data,
        await keys.sign(entry.id, entry.algorithm, 'ecdsa-sha256', data),
      ),
    ).toBe(true);
    // Another application of this process closes every session of the slot under the token's feet.
    const binding = createRequire(import.meta.url)('pkcs11js') as typeof Pkcs11Js;
    const other = new binding.PKCS11();
    other.load(token.module);
    try {
      other.C_Initialize({ flags: 2 });
    } catch {}
    const slot = other.C_GetSlotList(true).find((s) => other.C_GetTokenInfo(s).label.trim() === token.label)!;
    other.C_CloseAllSessions(slot);
    const lost = await keys.sign(entry.id, entry.algorithm, 'ecdsa-sha256', data).then(
      () => undefined,
      (e: unknown) => e as HsmError,
    );
    expect(lost?.rv).toBe('CKR_DEVICE_REMOVED');
    expect(lost?.code).toBe('hsm.unavailable');
    expect(lost?.message).toContain('CKR_SESSION_HANDLE_INVALID');
    await new Promise((resolve) => setTimeout(resolve, 1100));
    const again = await keys.sign(entry.id, entry.algorithm, 'ecdsa-sha256', data);
    expect(nodeVerifies(entry.publicKey, 'ecdsa-sha256', data, again)).toBe(true);
  });

  it('refuses a mechanism left out of the token list with the PKCS#11 name', async () => {
    const narrow = await Pkcs11Token.open({
      module: token.module,
      tokenLabel: token.label,
      pin: token.pin,
      excludeMechanisms: [0x1041],
    });
    try {
      const entry = (await narrow.list()).find((k) => k.label === 'attrs')!;
      await expect(narrow.sign(entry.id, entry.algorithm, 'ecdsa-sha256', Buffer.from('x'))).rejects.toThrow(
        /CKR_MECHANISM_INVALID: token unit-token does not offer CKM_ECDSA/,
      );
    } finally {
      await narrow.close();
    }
  });

  describe('signet hsm init --pkcs11-module and serve', () => {
    let scratch: string;
    const env = () => ({ SOFTHSM2_CONF: token.conf, SIGNET_HSM_PIN: 'officer-pin-0001' });
    beforeAll(() => {
      scratch = join(token.dir, 'cli');
      mkdirSync(scratch);
      writeFileSync(join(token.dir, 'wrong-pin'), 'not-the-pin\n');
      writeFileSync(join(token.dir, 'user-pin'), 'ca-user-pin-0001\n');
    });

    test.each([
      ['--token-label without --pkcs11-module', ['--token-label', 'x'], 2, 'need --pkcs11-module'],
      [
        'a relative module path',
        ['--pkcs11-module', 'libsofthsm2.so', '--token-label', 'x'],
        2,
        'absolute path',
      ],
      ['no token label or slot', ['--pkcs11-module', '/usr/lib/softhsm/libsofthsm2.so'], 2, '--token-label'],
      [
        'a slot id that is no number',
        ['--pkcs11-module', '/usr/lib/softhsm/libsofthsm2.so', '--slot-id', 'x'],
        2,
        'slot ID',
      ],
    ])('refuses %s (exit 2)', async (_name, extra, status, message) => {
      const dir = join(scratch, 'usage');
      const r = await signet(
        ['hsm', 'init', '--dir', dir, '--secret-out', join(token.dir, 'usage.secret'), ...extra],
        env(),
      );
      expect(r.status).toBe(status);
      expect(r.stderr).toContain(message);
      expect(existsSync(dir)).toBe(false);
    });

    test.each([
      [
        'a wrong token PIN',
        ['--token-label', 'unit-token', '--token-pin-file', 'wrong-pin'],
        /CKR_PIN_INCORRECT.*--token-pin-file/,
      ],
      [
        'an unknown token label',
        ['--token-label', 'nope', '--token-pin-file', 'token-pin'],
        /CKR_TOKEN_NOT_PRESENT.*no token labelled 'nope'/,
      ],
    ])(
      'refuses %s with the PKCS#11 code and what to check, creating nothing (exit 1)',
      async (_name, extra, message) => {
        const dir = join(scratch, 'refused');
        const args = extra.map((a) => (a === 'wrong-pin' || a === 'token-pin' ? join(token.dir, a) : a));
        const r = await signet(
          [
            'hsm',
            'init',
            '--dir',
            dir,
            '--secret-out',
            join(token.dir, 'refused.secret'),
            '--pkcs11-module',
            token.module,
            ...args,
          ],
          env(),
        );
        expect(r.status).toBe(1);
        expect(r.stderr).toMatch(message);
        expect(existsSync(dir)).toBe(false);
        expect(existsSync(join(token.dir, 'refused.secret'))).toBe(false);
      },
    );

    it('creates a partition on the token, serves it, shows the backend and keeps key purposes across restarts', async () => {
      const dir = join(scratch, 'issuing');
      const secret = join(token.dir, 'issuing.secret');
      const init = await signet(
        [
          'hsm',
          'init',
          '--dir',
          dir,
          '--secret-out',
          secret,
          '--user-pin-file',
          join(token.dir, 'user-pin'),
          '--pkcs11-module',
          token.module,
          '--token-label',
          token.label,
        ],
        { ...env(), SIGNET_PKCS11_PIN: token.pin },
      );
      expect(init.stderr).toBe('');
      expect(init.status).toBe(0);
      expect(init.stdout).toContain(`its keys live on token ${token.label}`);
      const socket = join(token.dir, 'cli.sock');
      const serveOnce = async () => {
        const { startPartitionProcess } = await import('../../src/hsm/process.ts');
        return startPartitionProcess({
          dir,
          socketPath: socket,
          args: ['--token-pin-file', token.pinFile],
          env: { ...process.env, SOFTHSM2_CONF: token.conf },
        });
      };
      let served = await serveOnce();
      try {
        expect(
          (await signet(['hsm', 'unseal', '--socket', socket, '--secret-file', secret], env())).status,
        ).toBe(0);
        const status = await signet(['hsm', 'status', '--socket', socket], env());
        expect(status.stdout).toContain(`backend    pkcs11 (token ${token.label}, module ${token.module})`);
        const created = await signet(
          [
            'hsm',
            'keys',
            'create',
            '--socket',
            socket,
            '--label',
            'crl-signer',
            '--algorithm',
            'ecdsa-p384',
            '--purpose',
            'crl',
          ],
          env(),
        );
        expect(created.stdout).toContain(`pkcs11:token=${token.label};object=crl-signer`);
        await served.stop();
        served = await serveOnce();
        await signet(['hsm', 'unseal', '--socket', socket, '--secret-file', secret], env());
        const list = await signet(['hsm', 'keys', 'list', '--socket', socket, '--json'], {
          ...env(),
          SIGNET_HSM_PIN: 'ca-user-pin-0001',
        });
        const listed = JSON.parse(list.stdout) as { label: string; purposes: string[]; uri: string }[];
        // Keys another user of the token made (the 'attrs' key above) are not this partition's.
        expect(listed.map((k) => [k.label, k.purposes, k.uri])).toEqual([
          ['crl-signer', ['crl'], `pkcs11:token=${token.label};object=crl-signer`],
        ]);
      } finally {
        await served.stop();
      }
    }, 60_000);

    it('refuses to serve without the token PIN', async () => {
      const dir = join(scratch, 'issuing');
      const { SIGNET_PKCS11_PIN: _drop, ...rest } = process.env;
      const r = await new Promise<{ status: number | null; stderr: string }>((resolve) => {
        const child = spawn(
          process.execPath,
          ['bin/signet.js', 'hsm', 'serve', '--dir', dir, '--socket', join(token.dir, 'x.sock')],
          {
            env: { ...rest, SOFTHSM2_CONF: token.conf },
          },
        );
        let stderr = '';
        child.stderr.on('data', (d) => {
          stderr += d;
        });
        child.on('close', (status) => resolve({ status, stderr }));
      });
      expect(r.status).toBe(2);
      expect(r.stderr).toContain('--token-pin-file FILE or set SIGNET_PKCS11_PIN');
    });
  });
});
