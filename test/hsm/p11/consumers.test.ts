import { spawn, spawnSync } from 'node:child_process';
import { createHash, X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RemotePartition } from '../../../src/hsm/client.ts';
import { type PartitionProcess, startPartitionProcess } from '../../../src/hsm/process.ts';
import type { KeyInfo } from '../../../src/hsm/types.ts';
import { hasFile } from '../../helpers/tools.ts';
import { CA_USER, OFFICER, spkiPem } from '../helpers.ts';
import {
  haveConsumers,
  openssl,
  opensslEngine,
  P11_KIT_CLIENT,
  p11Env,
  pkcs11Tool,
  writeOpensslConf,
} from './consumers.ts';

/**
 * The partition's PKCS#11 socket as real programs use it: pkcs11-tool and OpenSSL's pkcs11 engine
 * from Debian, on Debian's p11-kit-client.so, against a `signet hsm serve --p11-socket` process.
 * (nginx and a certificate Signet issues are in test/slow/p11-nginx.test.ts.)
 */
const ready = haveConsumers();
const havePyKcs11 = ready && hasFile('/usr/lib/python3/dist-packages/PyKCS11/__init__.py', 'python3-pykcs11');

/** Asks for CKA_VALUE of a private key with the raw C_GetAttributeValue and prints the CK_RV's name. */
const LEAK_SCRIPT = `
import sys
import PyKCS11
import PyKCS11.LowLevel as LowLevel
lib = PyKCS11.PyKCS11Lib()
lib.load(sys.argv[1])
session = lib.openSession(lib.getSlotList(tokenPresent=True)[0])
session.login(sys.argv[2])
key = session.findObjects([(PyKCS11.CKA_CLASS, PyKCS11.CKO_PRIVATE_KEY), (PyKCS11.CKA_LABEL, sys.argv[3])])[0]
template = LowLevel.ckattrlist(1)
template[0].SetType(PyKCS11.CKA_VALUE)
print(PyKCS11.CKR[session.lib.C_GetAttributeValue(session.session, key, template)])
`;

let dir: string;
let partition: PartitionProcess;
let p11: string;
let conf: string;
let officer: RemotePartition;
const keys: Record<string, KeyInfo> = {};

function signet(
  args: string[],
  env: NodeJS.ProcessEnv = {},
): Promise<{ status: number | null; output: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['bin/signet.js', ...args], { env: { ...process.env, ...env } });
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

const file = (name: string) => join(dir, name);
const write = (name: string, data: string | Buffer) => {
  writeFileSync(file(name), data);
  return file(name);
};
const login = ['--login', '--pin', CA_USER.pin];
const publicPem = (label: string) => write(`${label}.pub.pem`, spkiPem(keys[label]!.publicKey));

describe.skipIf(!ready)('PKCS#11 consumers through p11-kit-client.so', () => {
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'signet-p11c-'));
    p11 = file('p11.sock');
    conf = writeOpensslConf(dir);
    partition = await startPartitionProcess({
      socketPath: file('partition.sock'),
      name: 'web',
      ephemeral: { users: [OFFICER, CA_USER] },
      args: ['--p11-socket', p11],
    });
    officer = await RemotePartition.connect({ socketPath: partition.socketPath });
    await officer.login({ user: OFFICER.name, pin: OFFICER.pin });
    keys.web = await officer.createKey({ label: 'web', algorithm: 'ecdsa-p256', purposes: ['other'] });
    keys.rsa = await officer.createKey({ label: 'rsa', algorithm: 'rsa-2048', purposes: ['other'] });
    keys.intermediate = await officer.createKey({
      label: 'intermediate',
      algorithm: 'ecdsa-p256',
      purposes: ['certificate', 'crl', 'ocsp'],
    });
    keys.edwards = await officer.createKey({ label: 'edwards', algorithm: 'ed25519', purposes: ['other'] });
    writeFileSync(file('officer.pin'), OFFICER.pin);
  }, 60_000);

  afterAll(async () => {
    await officer?.close();
    await partition?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('pkcs11-tool lists one slot whose token is the partition', () => {
    const { status, output } = pkcs11Tool(p11, ['--list-slots']);
    expect(status).toBe(0);
    expect(output).toMatch(/token label\s+: web/);
    expect(output).toMatch(/token flags\s+: login required/);
  });

  it("pkcs11-tool --login --list-objects shows the keys of purpose other and none of the CA's", () => {
    const { status, output } = pkcs11Tool(p11, [...login, '--list-objects']);
    expect(status).toBe(0);
    expect(output).toContain(`ID:         ${keys.web!.id}`);
    expect(output).toContain(`ID:         ${keys.rsa!.id}`);
    expect(output.match(/Private Key Object/g)).toHaveLength(2);
    expect(output).toMatch(/Access:\s+sensitive, always sensitive, never extractable/);
    for (const hidden of ['intermediate', 'edwards']) {
      expect(output).not.toContain(hidden);
      expect(output).not.toContain(keys[hidden]!.id);
    }
  });

  describe('pkcs11-tool --sign, verified by openssl with the public key', () => {
    const data = Buffer.from('signed inside the partition\n');
    const digest = createHash('sha256').update(data).digest();

    it('ECDSA P-256 over a SHA-256 digest (CKM_ECDSA)', () => {
      const sig = file('ec.sig');
      const run = pkcs11Tool(p11, [
        ...login,
        '--sign',
        '-m',
        'ECDSA',
        '--id',
        keys.web!.id,
        '-i',
        write('ec.in', digest),
        '-o',
        sig,
        '--signature-format',
        'openssl',
      ]);
      expect(run.status, run.output).toBe(0);
      const verify = openssl([
        'dgst',
        '-sha256',
        '-verify',
        publicPem('web'),
        '-signature',
        sig,
        write('data', data),
      ]);
      expect(verify.output).toContain('Verified OK');
    });

    it('RSA-2048 PKCS#1 v1.5, hashed by the partition (CKM_SHA256_RSA_PKCS)', () => {
      const sig = file('rsa.sig');
      const run = pkcs11Tool(p11, [
        ...login,
        '--sign',
        '-m',
        'SHA256-RSA-PKCS',
        '--id',
        keys.rsa!.id,
        '-i',
        write('data', data),
        '-o',
        sig,
      ]);
      expect(run.status, run.output).toBe(0);
      expect(
        openssl(['dgst', '-sha256', '-verify', publicPem('rsa'), '-signature', sig, file('data')]).output,
      ).toContain('Verified OK');
    });

    it('RSA-2048 PKCS#1 v1.5 over a DigestInfo the caller built (CKM_RSA_PKCS)', () => {
      const digestInfo = Buffer.concat([
        Buffer.from('3031300d060960864801650304020105000420', 'hex'),
        digest,
      ]);
      const sig = file('rsa-raw.sig');
      const run = pkcs11Tool(p11, [
        ...login,
        '--sign',
        '-m',
        'RSA-PKCS',
        '--id',
        keys.rsa!.id,
        '-i',
        write('di', digestInfo),
        '-o',
        sig,
      ]);
      expect(run.status, run.output).toBe(0);
      expect(
        openssl(['dgst', '-sha256', '-verify', publicPem('rsa'), '-signature', sig, write('data', data)])
          .output,
      ).toContain('Verified OK');
    });

    it('RSA-2048 PSS over a pre-hashed input (CKM_RSA_PKCS_PSS)', () => {
      const sig = file('pss.sig');
      const run = pkcs11Tool(p11, [
        ...login,
        '--sign',
        '-m',
        'RSA-PKCS-PSS',
        '--hash-algorithm',
        'SHA256',
        '--mgf',
        'MGF1-SHA256',
        '--salt-len',
        '32',
        '--id',
        keys.rsa!.id,
        '-i',
        write('pss.in', digest),
        '-o',
        sig,
      ]);
      expect(run.status, run.output).toBe(0);
      const verify = openssl([
        'dgst',
        '-sha256',
        '-verify',
        publicPem('rsa'),
        '-sigopt',
        'rsa_padding_mode:pss',
        '-sigopt',
        'rsa_pss_saltlen:32',
        '-signature',
        sig,
        write('data', data),
      ]);
      expect(verify.output).toContain('Verified OK');
    });

    it("refuses the CA's key: pkcs11-tool cannot even find it", () => {
      const run = pkcs11Tool(p11, [
        ...login,
        '--sign',
        '-m',
        'ECDSA',
        '--id',
        keys.intermediate!.id,
        '-i',
        write('ec.in', digest),
        '-o',
        file('x.sig'),
      ]);
      expect(run.status).not.toBe(0);
      expect(run.output).toContain('Private key not found');
    });

    it.skipIf(!havePyKcs11)('refuses CKA_VALUE of a private key to PyKCS11 (CKR_ATTRIBUTE_SENSITIVE)', () => {
      const script = write('leak.py', LEAK_SCRIPT);
      for (const label of ['web', 'rsa']) {
        const run = spawnSync('/usr/bin/python3', [script, P11_KIT_CLIENT, CA_USER.pin, label], {
          encoding: 'utf8',
          env: p11Env(p11),
        });
        expect(run.stdout.trim(), run.stderr).toBe('CKR_ATTRIBUTE_SENSITIVE');
      }
    });
  });

  it('the OpenSSL engine signs a CSR and a certificate with the key inside; the certificate is stored beside it and listed', async () => {
    const uri = `pkcs11:token=web;object=web;type=private;pin-value=${CA_USER.pin}`;
    const csr = opensslEngine(p11, conf, [
      'req',
      '-new',
      '-engine',
      'pkcs11',
      '-keyform',
      'engine',
      '-key',
      uri,
      '-subj',
      '/CN=www.example.com',
      '-out',
      file('web.csr'),
    ]);
    expect(csr.status, csr.output).toBe(0);
    expect(openssl(['req', '-in', file('web.csr'), '-noout', '-verify']).output).toContain('verify OK');
    const csrKey = openssl(['req', '-in', file('web.csr'), '-noout', '-pubkey']).output;
    expect(csrKey).toContain(spkiPem(keys.web!.publicKey).trim());
    // A self-signed certificate made by the engine, stored with the key by the officer.
    const self = opensslEngine(p11, conf, [
      'req',
      '-x509',
      '-new',
      '-engine',
      'pkcs11',
      '-keyform',
      'engine',
      '-key',
      uri,
      '-subj',
      '/CN=www.example.com',
      '-days',
      '2',
      '-out',
      file('web.pem'),
    ]);
    expect(self.status, self.output).toBe(0);
    expect(openssl(['verify', '-CAfile', file('web.pem'), file('web.pem')]).output).toContain('OK');
    const imported = await signet([
      'hsm',
      'certificate',
      'import',
      '--socket',
      partition.socketPath,
      '--pin-file',
      file('officer.pin'),
      '--key',
      keys.web!.uri,
      file('web.pem'),
    ]);
    expect(imported.status, imported.output).toBe(0);
    expect(imported.output).toContain(`stored certificate web beside key web (id ${keys.web!.id})`);
    const listed = pkcs11Tool(p11, ['--list-objects', '--type', 'cert']);
    expect(listed.output).toContain('Certificate Object; type = X.509 cert');
    expect(listed.output).toContain('subject:    DN: CN=www.example.com');
    expect(listed.output).toContain(`ID:         ${keys.web!.id}`);
    const read = pkcs11Tool(p11, [
      '--read-object',
      '--type',
      'cert',
      '--id',
      keys.web!.id,
      '-o',
      file('back.der'),
    ]);
    expect(read.status, read.output).toBe(0);
    expect(new X509Certificate(readFileSync(file('back.der'))).fingerprint256).toBe(
      new X509Certificate(readFileSync(file('web.pem'))).fingerprint256,
    );
  });

  it('pkcs11-tool logged in as the officer stores a certificate with --write-object (C_CreateObject)', () => {
    const uri = `pkcs11:token=web;object=rsa;type=private;pin-value=${CA_USER.pin}`;
    const self = opensslEngine(p11, conf, [
      'req',
      '-x509',
      '-new',
      '-engine',
      'pkcs11',
      '-keyform',
      'engine',
      '-key',
      uri,
      '-subj',
      '/CN=rsa.example.com',
      '-days',
      '2',
      '-outform',
      'DER',
      '-out',
      file('rsa.der'),
    ]);
    expect(self.status, self.output).toBe(0);
    const write = pkcs11Tool(p11, [
      '--login',
      '--login-type',
      'so',
      '--so-pin',
      OFFICER.pin,
      '--write-object',
      file('rsa.der'),
      '--type',
      'cert',
      '--id',
      keys.rsa!.id,
      '--label',
      'rsa-cert',
    ]);
    expect(write.status, write.output).toBe(0);
    const listed = pkcs11Tool(p11, ['--list-objects', '--type', 'cert']);
    expect(listed.output).toContain('label:      rsa-cert');
    expect(listed.output).toContain('subject:    DN: CN=rsa.example.com');
  });

  it('refuses to store a certificate for the wrong key or beside a CA key', async () => {
    const wrongKey = await signet([
      'hsm',
      'certificate',
      'import',
      '--socket',
      partition.socketPath,
      '--pin-file',
      file('officer.pin'),
      '--key',
      'rsa',
      file('web.pem'),
    ]);
    expect(wrongKey.status).toBe(1);
    expect(wrongKey.output).toContain(
      "hsm.attribute_value_invalid: the certificate's public key is not this key's",
    );
    const caKey = await signet([
      'hsm',
      'certificate',
      'import',
      '--socket',
      partition.socketPath,
      '--pin-file',
      file('officer.pin'),
      '--key',
      'intermediate',
      file('web.pem'),
    ]);
    expect(caKey.status).toBe(1);
    expect(caKey.output).toContain('hsm.key_function_not_permitted');
    const notCertificate = await signet([
      'hsm',
      'certificate',
      'import',
      '--socket',
      partition.socketPath,
      '--pin-file',
      file('officer.pin'),
      '--key',
      'web',
      write('junk', 'not a certificate'),
    ]);
    expect(notCertificate.status).toBe(1);
    expect(notCertificate.output).toContain('hsm.arguments_bad: not one DER X.509 certificate');
  });

  it('pkcs11-tool logged in as the officer (CKU_SO) generates a key pair, always of purpose other', async () => {
    const run = pkcs11Tool(p11, [
      '--login',
      '--login-type',
      'so',
      '--so-pin',
      OFFICER.pin,
      '--keypairgen',
      '--key-type',
      'EC:prime256v1',
      '--label',
      'api',
    ]);
    expect(run.status, run.output).toBe(0);
    const made = await officer.findKey({ label: 'api' });
    expect(made).toMatchObject({ algorithm: 'ecdsa-p256', purposes: ['other'], extractable: false });
    const asUser = pkcs11Tool(p11, [
      ...login,
      '--keypairgen',
      '--key-type',
      'EC:prime256v1',
      '--label',
      'user-made',
    ]);
    expect(asUser.status).not.toBe(0);
    expect(await officer.findKey({ label: 'user-made' })).toBeUndefined();
  });

  it('five wrong PINs through pkcs11-tool lock the user for the partition protocol too; the officer unlocks', async () => {
    const results: string[] = [];
    for (let i = 0; i < 5; i++) {
      const run = pkcs11Tool(p11, ['--login', '--pin', 'wrong-pin-0000', '--list-objects']);
      results.push(/rv = (CKR_\w+)/.exec(run.output)?.[1] ?? run.output);
    }
    expect(results).toEqual([
      'CKR_PIN_INCORRECT',
      'CKR_PIN_INCORRECT',
      'CKR_PIN_INCORRECT',
      'CKR_PIN_INCORRECT',
      'CKR_PIN_LOCKED',
    ]);
    expect(/rv = (CKR_\w+)/.exec(pkcs11Tool(p11, [...login, '--list-objects']).output)?.[1]).toBe(
      'CKR_PIN_LOCKED',
    );
    const native = await RemotePartition.connect({ socketPath: partition.socketPath });
    try {
      await expect(native.login({ user: CA_USER.name, pin: CA_USER.pin })).rejects.toMatchObject({
        code: 'hsm.pin_locked',
      });
    } finally {
      await native.close();
    }
    await officer.unlockUser({ name: CA_USER.name });
    expect(pkcs11Tool(p11, [...login, '--list-objects']).status).toBe(0);
  });
});
