import { afterEach, describe, expect, it } from 'vitest';
import { RemotePartition } from '../../src/hsm/client.ts';
import { type MemberStateEvent, PartitionCluster } from '../../src/hsm/cluster.ts';
import { type PartitionProcess, startPartitionProcess } from '../../src/hsm/process.ts';
import type { SignRequest } from '../../src/hsm/types.ts';
import { CA_USER, OFFICER, temporarySocketPath } from './helpers.ts';

/**
 * Issue #22: the CA's client of several partition members. Real partition processes
 * (`signet hsm serve --ephemeral`); each gets a key under the same label, as clones would hold.
 */

interface Member {
  socketPath: string;
  process: PartitionProcess;
  cleanup(): Promise<void>;
}

const SECRET = new Uint8Array(32).fill(7);
const started: Member[] = [];
const clusters: PartitionCluster[] = [];

async function startMember(
  options: { key?: boolean; socketPath?: string; sealed?: boolean } = {},
): Promise<Member> {
  const temporary = options.socketPath ? undefined : await temporarySocketPath();
  const socketPath = options.socketPath ?? temporary!.socketPath;
  const process = await startPartitionProcess({
    socketPath,
    name: 'issuing',
    ephemeral: { users: [OFFICER, CA_USER], ...(options.sealed ? { unsealSecret: SECRET } : {}) },
  });
  if (options.key !== false && !options.sealed) {
    const officer = await RemotePartition.connect({
      socketPath,
      onConnect: (p) => p.login({ user: OFFICER.name, pin: OFFICER.pin }).then(() => {}),
    });
    await officer.createKey({ label: 'shared', algorithm: 'ecdsa-p256' });
    await officer.close();
  }
  const member = { socketPath, process, cleanup: async () => temporary?.cleanup() };
  started.push(member);
  return member;
}

function cluster(members: Member[], events: MemberStateEvent[] = [], secret?: Uint8Array) {
  return PartitionCluster.connect({
    name: 'issuing',
    members: members.map((m) => ({ socketPath: m.socketPath, requestTimeoutMs: 5000 })),
    healthIntervalMs: 100,
    onConnect: async (p) => {
      if (secret && (await p.status()).state === 'sealed') await p.unseal({ secret });
      await p.login({ user: CA_USER.name, pin: CA_USER.pin });
    },
    onMemberState: (event) => events.push(event),
  }).then((c) => {
    clusters.push(c);
    return c;
  });
}

const signRequest = (i: number): SignRequest => ({
  key: { label: 'shared' },
  mechanism: 'ecdsa-sha256',
  purpose: 'other',
  data: Buffer.from(`tbs ${i}`),
});

async function until(what: string, condition: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

afterEach(async () => {
  for (const c of clusters.splice(0)) await c.close();
  for (const m of started.splice(0)) {
    await m.process.stop();
    await m.cleanup();
  }
});

describe('the client of a partition cluster', () => {
  it('spreads signatures over every healthy member', async () => {
    const members = [await startMember(), await startMember()];
    const client = await cluster(members);
    const signatures = await Promise.all(Array.from({ length: 200 }, (_, i) => client.sign(signRequest(i))));
    expect(signatures.every((s) => s.length === 64)).toBe(true);
    const snapshot = client.snapshot();
    expect(snapshot.map((m) => m.state)).toEqual(['up', 'up']);
    for (const member of snapshot) expect(member.signatures).toBeGreaterThan(20);
    expect(snapshot.reduce((sum, m) => sum + m.signatures, 0)).toBe(200);
  });

  it('retries on another member the requests of a member killed with SIGKILL, then uses it again once it is back', async () => {
    const [first, second] = [await startMember(), await startMember()];
    const events: MemberStateEvent[] = [];
    const client = await cluster([first!, second!], events);
    let stop = false;
    let failures = 0;
    let signed = 0;
    const worker = async (w: number) => {
      for (let i = 0; !stop; i++) {
        try {
          await client.sign(signRequest(w * 1_000_000 + i));
          signed += 1;
        } catch {
          failures += 1;
        }
      }
    };
    const workers = Array.from({ length: 32 }, (_, w) => worker(w));
    await until('signing under way', () => signed > 200);
    first!.process.child.kill('SIGKILL');
    await first!.process.exited;
    const atKill = signed;
    await until('signing on after the kill', () => signed > atKill + 300);
    const downed = client.snapshot()[0]!;
    expect(downed.state).toBe('down');
    expect(downed.failovers).toBeGreaterThan(0);
    expect(failures).toBe(0);

    // The same socket served again (a restarted member): a health check brings it back into use.
    const revived = await startMember({ socketPath: first!.socketPath });
    await until('the member up again', () => client.snapshot()[0]!.state === 'up');
    const before = client.snapshot()[0]!.signatures;
    await until('the member used again', () => client.snapshot()[0]!.signatures > before + 20);
    stop = true;
    await Promise.all(workers);
    expect(failures).toBe(0);
    expect(events.map((e) => `${e.member === first!.socketPath ? 'first' : 'second'} ${e.state}`)).toEqual(
      expect.arrayContaining(['first down', 'first up']),
    );
    expect(revived.socketPath).toBe(first!.socketPath);
  });

  it('fails cleanly with CKR_DEVICE_REMOVED when every member is gone, and says unreachable', async () => {
    const [only] = [await startMember()];
    const client = await cluster([only!]);
    only!.process.child.kill('SIGKILL');
    await only!.process.exited;
    await expect(client.sign(signRequest(1))).rejects.toMatchObject({ rv: 'CKR_DEVICE_REMOVED' });
    expect(await client.readiness()).toEqual({ state: 'unreachable' });
  });

  it('does not use a member that lacks a key the node needs', async () => {
    const withKey = await startMember();
    const withoutKey = await startMember({ key: false });
    const client = await cluster([withoutKey, withKey]);
    client.requireKeys([{ label: 'shared' }]);
    await until('the member without the key set aside', () => client.snapshot()[0]!.state === 'missing-keys');
    await Promise.all(Array.from({ length: 50 }, (_, i) => client.sign(signRequest(i))));
    expect(client.snapshot()[0]!.signatures).toBe(0);
    expect(client.snapshot()[1]!.signatures).toBe(50);
  });

  it('reports a sealed member as waiting for custodians, and uses it once unsealed', async () => {
    const sealed = await startMember({ sealed: true });
    await expect(cluster([sealed])).rejects.toMatchObject({ rv: 'CKR_TOKEN_SEALED' });
    const events: MemberStateEvent[] = [];
    const healthy = await startMember();
    const client = await cluster([sealed, healthy], events);
    expect(client.snapshot().map((m) => m.state)).toEqual(['sealed', 'up']);
    expect(await client.readiness()).toEqual({ state: 'unsealed' });
    // The custodians unseal it (here: the secret, over its socket); the next health check finds it.
    const custodian = await RemotePartition.connect({ socketPath: sealed.socketPath });
    await custodian.unseal({ secret: SECRET });
    await custodian.close();
    await until('the unsealed member up', () => client.snapshot()[0]!.state !== 'sealed');
    // Unsealed, but a fresh in-memory partition holds no key yet: it is set aside for that, not used.
    client.requireKeys([{ label: 'shared' }]);
    await until('checked for keys', () => client.snapshot()[0]!.state === 'missing-keys');
  });

  it('says waiting for custodians when the only member is sealed', async () => {
    const healthy = await startMember();
    const client = await cluster([healthy]);
    healthy.process.child.kill('SIGKILL');
    await healthy.process.exited;
    await startMember({ socketPath: healthy.socketPath, sealed: true });
    await until('sealed seen', () => client.snapshot()[0]!.state === 'sealed');
    expect(await client.readiness()).toEqual({ state: 'sealed, waiting for custodians (signet hsm unseal)' });
    await expect(client.sign(signRequest(1))).rejects.toMatchObject({ rv: 'CKR_TOKEN_SEALED' });
  });
});
