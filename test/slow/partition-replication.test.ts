import { spawnSync } from 'node:child_process';
import { createPublicKey, verify, webcrypto } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as x509 from '@peculiar/x509';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { issueMemberCertificate, writeLinkCertificates } from '../../src/cli/link-certs.ts';
import { RemotePartition } from '../../src/hsm/client.ts';
import { createBackup, initPartition, restoreBackup } from '../../src/hsm/custody/index.ts';
import { type PartitionProcess, startPartitionProcess } from '../../src/hsm/process.ts';
import { isHsmError } from '../../src/hsm/types.ts';

/**
 * Issue #23: members of one partition keep themselves in sync over their mutual-TLS links. One
 * cluster (m1, m2, m3, later m4) serves every test in order; m5 is a partition of another cluster.
 */
const SIGNET = path.resolve('bin/signet.js');
const OFFICER_PIN = 'officer-pin-1234';
const CA_PIN = 'ca-user-pin-5678';
const CLERK_PIN = 'clerk-pin-24680';
const INTERVAL_MS = 300;

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer();
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

async function eventually<T>(
  what: string,
  probe: () => Promise<T | undefined>,
  timeoutMs = 20_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe().catch(() => undefined);
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

interface Member {
  name: string;
  dir: string;
  socket: string;
  url: string;
  certFile: string;
  secret: Buffer;
  process?: PartitionProcess;
  log: string[];
  clients: RemotePartition[];
}

describe('a partition cluster that keeps itself in sync', () => {
  let root: string;
  let linkCa: string;
  let backupBlob: Uint8Array;
  const members = new Map<string, Member>();
  const officerPinFile = () => path.join(root, 'officer.pin');

  const m = (name: string) => members.get(name)!;

  async function start(member: Member, { unseal = true } = {}): Promise<void> {
    const { port } = new URL(member.url.replace('tls:', 'http:'));
    member.process = await startPartitionProcess({
      dir: member.dir,
      socketPath: member.socket,
      onLog: (line) => member.log.push(line),
      args: [
        '--listen',
        `tls://127.0.0.1:${port}`,
        '--tls-cert',
        member.certFile,
        '--tls-key',
        `${member.certFile}.key`,
        '--client-ca',
        linkCa,
        '--sync-interval-ms',
        String(INTERVAL_MS),
      ],
    });
    if (!unseal) return;
    const client = await RemotePartition.connect({ socketPath: member.socket });
    await client.unseal({ secret: member.secret });
    await client.close();
  }

  async function stop(member: Member): Promise<void> {
    await Promise.all(member.clients.splice(0).map((c) => c.close()));
    await member.process?.stop();
    member.process = undefined;
  }

  /** A client of the member logged in as `user` (again after each reconnect). */
  async function as(member: Member, user: string, pin: string): Promise<RemotePartition> {
    const client = await RemotePartition.connect({
      socketPath: member.socket,
      onConnect: (p) => p.login({ user, pin }).then(() => {}),
    });
    member.clients.push(client);
    return client;
  }
  const officer = (member: Member) => as(member, 'officer', OFFICER_PIN);

  function cluster(args: string[]) {
    const run = spawnSync(
      process.execPath,
      [SIGNET, 'hsm', 'cluster', ...args, '--pin-file', officerPinFile()],
      {
        encoding: 'utf8',
        timeout: 120_000,
      },
    );
    return run;
  }

  async function member(name: string, dir: string, secret: Buffer, { cli = false } = {}): Promise<Member> {
    const port = await freePort();
    const certFile = path.join(root, `${name}.crt`);
    if (cli) {
      // As an operator would: `signet hsm cluster member-cert` from the dev link CA.
      const run = spawnSync(
        process.execPath,
        [
          SIGNET,
          'hsm',
          'cluster',
          'member-cert',
          '--link-dir',
          path.join(root, 'link'),
          '--host',
          '127.0.0.1',
          '--out',
          path.join(root, name),
        ],
        { encoding: 'utf8', timeout: 120_000 },
      );
      expect(run.status, run.stderr).toBe(0);
      writeFileSync(`${certFile}.key`, readFileSync(path.join(root, `${name}.key`)), { mode: 0o600 });
    } else {
      const issued = issueMemberCertificate({
        caCert: readFileSync(linkCa, 'utf8'),
        caKey: readFileSync(path.join(root, 'link', 'ca.key'), 'utf8'),
        name: `member ${name}`,
        hosts: ['127.0.0.1'],
      });
      writeFileSync(certFile, issued.cert);
      writeFileSync(`${certFile}.key`, issued.key, { mode: 0o600 });
    }
    const made: Member = {
      name,
      dir,
      socket: path.join(root, `${name}.sock`),
      url: `tls://127.0.0.1:${port}`,
      certFile,
      secret,
      log: [],
      clients: [],
    };
    members.set(name, made);
    return made;
  }

  async function newPartition(dir: string): Promise<Buffer> {
    const secrets = await initPartition({
      dir,
      name: 'issuing',
      sealing: { kind: 'secret' },
      officerPin: OFFICER_PIN,
      userPin: CA_PIN,
      pinHash: { ln: 10, r: 8, p: 1 },
    });
    return Buffer.from(secrets.secret!);
  }

  beforeAll(async () => {
    root = mkdtempSync(path.join(tmpdir(), 'signet-replication-'));
    writeFileSync(officerPinFile(), OFFICER_PIN, { mode: 0o600 });
    const link = await writeLinkCertificates({ dir: path.join(root, 'link'), hosts: ['127.0.0.1'] });
    linkCa = link.caCert;
    const secret = await newPartition(path.join(root, 'm1'));
    const m1 = await member('m1', path.join(root, 'm1'), secret);
    await start(m1);
    const o1 = await officer(m1);
    await o1.createKey({ label: 'issuer-p256', algorithm: 'ecdsa-p256' });
    await o1.createKey({ label: 'issuer-ed25519', algorithm: 'ed25519' });
    backupBlob = await createBackup({ dir: m1.dir });
    for (const name of ['m2', 'm3', 'm4']) {
      await restoreBackup({ blob: backupBlob, dir: path.join(root, name), material: { secret } });
      const made = await member(name, path.join(root, name), secret, { cli: name === 'm4' });
      if (name !== 'm4') await start(made);
    }
    const added = cluster([
      'add-member',
      '--socket',
      m1.socket,
      '--url',
      m('m2').url,
      '--cert',
      m('m2').certFile,
    ]);
    expect(added.status, added.stderr).toBe(0);
    await o1.call('cluster.addMember', { url: m('m3').url, cert: readFileSync(m('m3').certFile, 'utf8') });
  }, 180_000);

  afterAll(async () => {
    for (const member of members.values()) await stop(member);
    rmSync(root, { recursive: true, force: true });
  });

  it('lists every member: reachable, unsealed, its keys, the digest of its key set and its audit head', () => {
    const run = cluster(['status', '--socket', m('m2').socket, '--json']);
    expect(run.status, run.stderr).toBe(0);
    const status = JSON.parse(run.stdout) as {
      version: number;
      quorum: number;
      members: {
        id: string;
        reachable: boolean;
        state: string;
        keys: number;
        keySetDigest: string;
        auditHead: { seq: number };
      }[];
    };
    expect(status.version).toBe(2);
    expect(status.quorum).toBe(2);
    expect(status.members.map((row) => row.id)).toEqual(['m1', 'm2', 'm3'].map((n) => m(n).url.slice(6)));
    for (const row of status.members) {
      expect(row).toMatchObject({ reachable: true, state: 'unsealed', keys: 2 });
      expect(row.keySetDigest).toBe(status.members[0]!.keySetDigest);
      expect(row.auditHead.seq).toBeGreaterThan(0);
    }
  });

  it('refuses a member restored from another cluster’s backup, saying why', async () => {
    const foreignSecret = await newPartition(path.join(root, 'other'));
    const blob = await createBackup({ dir: path.join(root, 'other') });
    await restoreBackup({ blob, dir: path.join(root, 'm5'), material: { secret: foreignSecret } });
    const m5 = await member('m5', path.join(root, 'm5'), foreignSecret);
    await start(m5);
    const run = cluster(['add-member', '--socket', m('m1').socket, '--url', m5.url, '--cert', m5.certFile]);
    expect(run.status).toBe(1);
    expect(run.stderr).toMatch(
      /refused: the member at tls:\/\/127\.0\.0\.1:\d+ holds partition issuing \([0-9a-f]+\), not this cluster's/,
    );
    const status = (await (await officer(m('m1'))).call('cluster.status')) as { members: unknown[] };
    expect(status.members).toHaveLength(3);
    await stop(m5);
  });

  it('acknowledges a key once a quorum holds it, and a member that was down has it when it returns, without a command', async () => {
    await stop(m('m3'));
    const o1 = await officer(m('m1'));
    await o1.createKey({ label: 'while-down', algorithm: 'ecdsa-p256' });
    // Acknowledged means the quorum (m1 and m2) holds it already.
    expect(await (await officer(m('m2'))).findKey({ label: 'while-down' })).toBeDefined();
    await start(m('m3'));
    const o3 = await officer(m('m3'));
    const key = await eventually('m3 holds the key', () => o3.findKey({ label: 'while-down' }));
    expect(key.id).toBe((await o1.findKey({ label: 'while-down' }))!.id);
  }, 60_000);

  it('does not acknowledge a key fewer than the quorum hold; the members that were down get it when they return', async () => {
    await Promise.all([stop(m('m2')), stop(m('m3'))]);
    const o1 = await officer(m('m1'));
    const refusal = await o1
      .createKey({ label: 'no-quorum', algorithm: 'ecdsa-p256' })
      .catch((error: unknown) => error);
    expect(isHsmError(refusal) && refusal.code).toBe('hsm.device_error');
    expect(String(refusal)).toMatch(/only 1 of the 2 members the quorum needs hold it/);
    const kept = await o1.findKey({ label: 'no-quorum' });
    expect(kept).toBeDefined();
    // m2 back but still sealed: status says so, and it catches up only once unsealed.
    await start(m('m2'), { unseal: false });
    const status = await o1.call<{ members: { url: string; reachable: boolean; state: string }[] }>(
      'cluster.status',
    );
    expect(status.members.find((row) => row.url === m('m2').url)).toMatchObject({
      reachable: true,
      state: 'sealed',
    });
    expect(status.members.find((row) => row.url === m('m3').url)).toMatchObject({
      reachable: false,
      state: 'unreachable',
    });
    const unseal = await RemotePartition.connect({ socketPath: m('m2').socket });
    await unseal.unseal({ secret: m('m2').secret });
    await unseal.close();
    await start(m('m3'));
    for (const name of ['m2', 'm3']) {
      const client = await officer(m(name));
      const key = await eventually(`${name} holds the key`, () => client.findKey({ label: 'no-quorum' }));
      expect(key.id).toBe(kept!.id);
    }
  }, 60_000);

  it('destroys a key on a member that was down when it was destroyed, and never brings it back', async () => {
    await stop(m('m3'));
    const o1 = await officer(m('m1'));
    await o1.destroyKey({ label: 'while-down' });
    const o2 = await officer(m('m2'));
    expect(await o2.findKey({ label: 'while-down' })).toBeUndefined();
    await start(m('m3'));
    const o3 = await officer(m('m3'));
    await eventually('m3 destroyed the key', async () =>
      (await o3.findKey({ label: 'while-down' })) === undefined ? true : undefined,
    );
    // Several rounds later, no member has taken it back from another.
    await new Promise((r) => setTimeout(r, 4 * INTERVAL_MS));
    for (const client of [o1, o2, o3]) expect(await client.findKey({ label: 'while-down' })).toBeUndefined();
  }, 60_000);

  it('stores a certificate beside a key on every member', async () => {
    const o1 = await officer(m('m1'));
    const key = await o1.createKey({ label: 'tls-other', algorithm: 'ecdsa-p256', purposes: ['other'] });
    const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
    const ca = (await webcrypto.subtle.generateKey(alg, false, [
      'sign',
      'verify',
    ])) as webcrypto.CryptoKeyPair;
    const certificate = await x509.X509CertificateGenerator.create(
      {
        serialNumber: '01',
        subject: 'CN=www.example.com',
        issuer: 'CN=Throwaway CA',
        notBefore: new Date('2026-01-01T00:00:00Z'),
        notAfter: new Date('2027-01-01T00:00:00Z'),
        publicKey: new x509.PublicKey(Buffer.from(key.publicKey)),
        signingKey: ca.privateKey,
        signingAlgorithm: alg,
      },
      webcrypto as unknown as webcrypto.Crypto,
    );
    const der = Buffer.from(certificate.rawData);
    await o1.call('storeCertificate', { key: { label: 'tls-other' }, der: der.toString('base64') });
    for (const name of ['m2', 'm3']) {
      const stored = await (await officer(m(name))).call<{ keyId: string; der: string }[]>(
        'listCertificates',
      );
      expect(stored.map((c) => [c.keyId, c.der])).toEqual([[key.id, der.toString('base64')]]);
    }
  }, 60_000);

  it('locks a user on all three members after five wrong PINs spread over them, and unlocking replicates', async () => {
    await (await officer(m('m1'))).createUser({ name: 'clerk', role: 'user', pin: CLERK_PIN });
    const clients = await Promise.all(
      ['m1', 'm2', 'm3'].map(async (name) => {
        const client = await RemotePartition.connect({ socketPath: m(name).socket });
        m(name).clients.push(client);
        return client;
      }),
    );
    const attempt = async (client: RemotePartition, pin: string) =>
      client.login({ user: 'clerk', pin }).then(
        () => 'ok',
        (error: unknown) => (isHsmError(error) ? error.code : String(error)),
      );
    const order = [0, 1, 2, 0, 1];
    const answers: string[] = [];
    for (const i of order) answers.push(await attempt(clients[i]!, 'wrong-pin-000000'));
    expect(answers).toEqual([
      'hsm.pin_incorrect',
      'hsm.pin_incorrect',
      'hsm.pin_incorrect',
      'hsm.pin_incorrect',
      'hsm.pin_locked',
    ]);
    for (const client of clients) expect(await attempt(client, CLERK_PIN)).toBe('hsm.pin_locked');

    await (await officer(m('m2'))).unlockUser({ name: 'clerk' });
    expect(await attempt(clients[0]!, CLERK_PIN)).toBe('ok');
    expect(await attempt(clients[2]!, CLERK_PIN)).toBe('ok');
  }, 60_000);

  it('adds a fourth member from a backup of the cluster, which then holds and signs with every key', async () => {
    const m4 = m('m4');
    await start(m4);
    const added = await (await officer(m('m2'))).call<{ version: number; missed: string[] }>(
      'cluster.addMember',
      {
        url: m4.url,
        cert: readFileSync(m4.certFile, 'utf8'),
      },
    );
    expect(added.missed).toEqual([]);
    const expected = (await (await officer(m('m1'))).listKeys()).map((k) => k.id).sort();
    const o4 = await officer(m4);
    await eventually('m4 holds every key', async () => {
      const ids = (await o4.listKeys()).map((k) => k.id).sort();
      return JSON.stringify(ids) === JSON.stringify(expected) ? true : undefined;
    });
    const user = await as(m4, 'ca', CA_PIN);
    const data = Buffer.from('to be signed by the fourth member');
    for (const key of await o4.listKeys()) {
      const mechanism = key.algorithm === 'ed25519' ? 'ed25519' : 'ecdsa-sha256';
      const signature = await user.sign({ key: { label: key.label }, mechanism, purpose: 'other', data });
      const publicKey = createPublicKey({ key: Buffer.from(key.publicKey), format: 'der', type: 'spki' });
      const ok =
        mechanism === 'ed25519'
          ? verify(null, data, publicKey, signature)
          : verify('sha256', data, { key: publicKey, dsaEncoding: 'ieee-p1363' }, signature);
      expect(ok, key.label).toBe(true);
    }
    // Users travelled too: the clerk created after the backup logs in on m4.
    const clerk = await RemotePartition.connect({ socketPath: m4.socket });
    m4.clients.push(clerk);
    await expect(clerk.login({ user: 'clerk', pin: CLERK_PIN })).resolves.toMatchObject({ user: 'clerk' });
  }, 60_000);

  it('removes a member: the others stop talking to it and it receives nothing more', async () => {
    const m4 = m('m4');
    const run = cluster(['remove-member', '--socket', m('m1').socket, '--id', m4.url]);
    expect(run.status, run.stderr).toBe(0);
    const o1 = await officer(m('m1'));
    await o1.createKey({ label: 'after-removal', algorithm: 'ecdsa-p256' });
    await eventually('m3 holds the new key', async () =>
      (await officer(m('m3'))).findKey({ label: 'after-removal' }),
    );
    await new Promise((r) => setTimeout(r, 5 * INTERVAL_MS));
    const o4 = await officer(m4);
    expect(await o4.findKey({ label: 'after-removal' })).toBeUndefined();
    const status = (await o1.call('cluster.status')) as { members: { url: string }[] };
    expect(status.members.map((row) => row.url)).not.toContain(m4.url);
    // m4 still believes in the old membership, and the members it asks refuse it.
    expect(m4.log.join('\n')).toMatch(/refused to share its state: .*not a member's/);
  }, 60_000);
});
