import { spawnSync } from 'node:child_process';
import { createPublicKey } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RemotePartition } from '../../src/hsm/client.ts';
import { MECHANISM_SPECS } from '../../src/hsm/mechanisms.ts';
import {
  createMemoryStore,
  createMemoryVault,
  createScryptPinHasher,
  MemoryAuditSink,
  verifyPinScrypt,
} from '../../src/hsm/memory-store.ts';
import { EmulatedPartition, type EmulatedPartitionOptions } from '../../src/hsm/partition.ts';
import { type PartitionProcess, startPartitionProcess, temporarySocketPath } from '../../src/hsm/process.ts';
import type { UserRecord } from '../../src/hsm/store.ts';
import type { SignMechanism } from '../../src/hsm/types.ts';

/** The users every test partition is provisioned with. */
export const OFFICER = { name: 'officer', role: 'officer' as const, pin: 'officer-pin-1234' };
export const CA_USER = { name: 'ca', role: 'user' as const, pin: 'ca-user-pin-5678' };

/** scrypt at a low cost: these tests are about the partition's logic, not the hash's strength. */
export const cheapPinHash = createScryptPinHasher({ N: 1024 });

export async function userRecords(users = [OFFICER, CA_USER]): Promise<UserRecord[]> {
  return Promise.all(
    users.map(async (u) => ({
      name: u.name,
      role: u.role,
      pinHash: await cheapPinHash(u.pin),
      failedLogins: 0,
      locked: false,
    })),
  );
}

/** An in-process partition over the memory store, for tests of the logic without a socket. */
export async function openMemoryPartition(
  options: Partial<EmulatedPartitionOptions> & { secret?: Uint8Array } = {},
): Promise<{ partition: EmulatedPartition; audit: MemoryAuditSink }> {
  const audit = new MemoryAuditSink();
  const store = createMemoryStore({ users: await userRecords() });
  const { secret, ...rest } = options;
  const partition = await EmulatedPartition.open({
    name: 'test',
    vault: createMemoryVault({ store, ...(secret ? { secret } : {}) }),
    audit,
    verifyPin: verifyPinScrypt,
    hashPin: cheapPinHash,
    ...rest,
  });
  return { partition, audit };
}

export interface TestPartition {
  socketPath: string;
  process: PartitionProcess;
  /** A client logged in as the officer. */
  officer(): Promise<RemotePartition>;
  /** A client logged in as the crypto user 'ca' (re-logs in on reconnect). */
  user(): Promise<RemotePartition>;
  stop(): Promise<void>;
}

/** A real `signet hsm serve --ephemeral` child process on a fresh socket. */
export async function startTestPartition(
  options: { name?: string; unsealSecret?: Uint8Array } = {},
): Promise<TestPartition> {
  const { socketPath, cleanup } = await temporarySocketPath();
  const process = await startPartitionProcess({
    socketPath,
    name: options.name ?? 'test',
    ephemeral: {
      users: [OFFICER, CA_USER],
      ...(options.unsealSecret ? { unsealSecret: options.unsealSecret } : {}),
    },
  });
  const clients: RemotePartition[] = [];
  const client = async (who: { name: string; pin: string }) => {
    const c = await RemotePartition.connect({
      socketPath,
      onConnect: (p) => p.login({ user: who.name, pin: who.pin }).then(() => {}),
    });
    clients.push(c);
    return c;
  };
  return {
    socketPath,
    process,
    officer: () => client(OFFICER),
    user: () => client(CA_USER),
    async stop() {
      await Promise.all(clients.map((c) => c.close()));
      await process.stop();
      await cleanup();
    },
  };
}

export function spkiPem(spki: Uint8Array): string {
  return createPublicKey({ key: Buffer.from(spki), format: 'der', type: 'spki' })
    .export({ format: 'pem', type: 'spki' })
    .toString();
}

/** IEEE P1363 r||s to the DER ECDSA-Sig-Value (RFC 3279 §2.2.3) that openssl dgst reads. */
export function p1363ToDer(signature: Uint8Array): Buffer {
  const half = signature.length / 2;
  const integer = (bytes: Uint8Array) => {
    let i = 0;
    while (i < bytes.length - 1 && bytes[i] === 0) i++;
    let body = Buffer.from(bytes.subarray(i));
    if (body[0]! & 0x80) body = Buffer.concat([Buffer.from([0]), body]);
    return Buffer.concat([Buffer.from([0x02, body.length]), body]);
  };
  const content = Buffer.concat([integer(signature.subarray(0, half)), integer(signature.subarray(half))]);
  const length = content.length < 128 ? Buffer.from([content.length]) : Buffer.from([0x81, content.length]);
  return Buffer.concat([Buffer.from([0x30]), length, content]);
}

/** Verifies a signature with the openssl command line; true when openssl says it verified. */
export function opensslVerify(args: {
  mechanism: SignMechanism;
  spki: Uint8Array;
  data: Uint8Array;
  signature: Uint8Array;
  saltLength?: number;
}): boolean {
  const dir = mkdtempSync(join(tmpdir(), 'ossl-'));
  try {
    const pub = join(dir, 'pub.pem');
    const data = join(dir, 'data');
    const sig = join(dir, 'sig');
    writeFileSync(pub, spkiPem(args.spki));
    writeFileSync(data, args.data);
    const spec = MECHANISM_SPECS[args.mechanism];
    if (spec.family === 'ed25519') {
      writeFileSync(sig, args.signature);
      const r = spawnSync(
        'openssl',
        ['pkeyutl', '-verify', '-pubin', '-inkey', pub, '-rawin', '-in', data, '-sigfile', sig],
        {
          encoding: 'utf8',
        },
      );
      return r.status === 0 && r.stdout.includes('Signature Verified Successfully');
    }
    writeFileSync(sig, spec.family === 'ec' ? p1363ToDer(args.signature) : args.signature);
    const extra =
      spec.padding === 'pss'
        ? [
            '-sigopt',
            'rsa_padding_mode:pss',
            '-sigopt',
            `rsa_pss_saltlen:${args.saltLength ?? spec.hashLength}`,
          ]
        : [];
    const r = spawnSync(
      'openssl',
      ['dgst', `-${spec.hash}`, '-verify', pub, ...extra, '-signature', sig, data],
      {
        encoding: 'utf8',
      },
    );
    return r.status === 0 && r.stdout.includes('Verified OK');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Runs openssl with arguments and returns { status, output } (stdout and stderr together). */
export function openssl(args: string[], input?: string): { status: number | null; output: string } {
  const r = spawnSync('openssl', args, { encoding: 'utf8', ...(input !== undefined ? { input } : {}) });
  return { status: r.status, output: `${r.stdout}${r.stderr}` };
}

export function tempDir(): { dir: string; cleanup(): void } {
  const dir = mkdtempSync(join(tmpdir(), 'hsm-test-'));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export { temporarySocketPath };
