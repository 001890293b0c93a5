import { createServer, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RemotePartition } from '../../src/hsm/client.ts';
import { FrameReader } from '../../src/hsm/protocol.ts';
import { HsmError } from '../../src/hsm/types.ts';
import { CA_USER, startTestPartition, type TestPartition, temporarySocketPath } from './helpers.ts';

async function refusal(promise: Promise<unknown>): Promise<HsmError> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof HsmError) return error;
    throw error;
  }
  throw new Error('expected a refusal');
}

/** A listener that reads frames and answers only those `answer` picks; the rest hang forever. */
async function fakePartition(answer: (op: string) => boolean) {
  const { socketPath, cleanup } = await temporarySocketPath();
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    const reader = new FrameReader();
    socket.on('data', (chunk: Buffer) =>
      reader.push(
        chunk,
        (payload) => {
          const op = payload[0] === 1 ? JSON.parse(payload.toString('utf8', 5)).op : 'sign';
          if (!answer(op)) return;
          const body = Buffer.from(
            JSON.stringify({ version: 1, partition: 'fake', backend: 'fake', maxFrame: 1 << 20 }),
          );
          const frame = Buffer.alloc(9 + body.length);
          frame.writeUInt32BE(5 + body.length, 0);
          frame[4] = 0;
          frame.writeUInt32BE(payload.readUInt32BE(1), 5);
          body.copy(frame, 9);
          socket.write(frame);
        },
        () => {},
      ),
    );
    socket.on('error', () => {});
  });
  await new Promise<void>((resolve) => server.listen(socketPath, resolve));
  return {
    socketPath,
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
      await cleanup();
    },
  };
}

describe('RemotePartition when the partition fails', () => {
  it('fails calls in flight and later calls with CKR_DEVICE_REMOVED when the partition dies, then reconnects to a new one', async () => {
    const partition = await startTestPartition();
    const officer = await partition.officer();
    await officer.createKey({ label: 'k', algorithm: 'ecdsa-p256' });
    let logins = 0;
    const user = await RemotePartition.connect({
      socketPath: partition.socketPath,
      onConnect: async (p) => {
        logins++;
        await p.login({ user: CA_USER.name, pin: CA_USER.pin });
      },
    });
    const request = { key: { label: 'k' }, mechanism: 'ecdsa-sha256' as const, purpose: 'ocsp' as const };
    expect(await user.sign({ ...request, data: Buffer.from('before') })).toHaveLength(64);

    // Many signatures in flight when the process is killed outright.
    const inFlight = Array.from({ length: 200 }, (_, i) =>
      user.sign({ ...request, data: Buffer.from(`${i}`) }),
    );
    partition.process.child.kill('SIGKILL');
    const settled = await Promise.allSettled(inFlight);
    const failures = settled.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    expect(failures.length).toBeGreaterThan(0);
    for (const failure of failures) {
      expect(failure.reason).toBeInstanceOf(HsmError);
      expect((failure.reason as HsmError).code).toBe('hsm.unavailable');
    }
    await partition.process.exited;
    const started = Date.now();
    expect((await refusal(user.status())).code).toBe('hsm.unavailable');
    expect(Date.now() - started).toBeLessThan(2000);

    // A new partition on the same socket: the next call connects and logs in again by itself.
    const { startPartitionProcess } = await import('../../src/hsm/process.ts');
    const { OFFICER } = await import('./helpers.ts');
    const revived = await startPartitionProcess({
      socketPath: partition.socketPath,
      name: 'test',
      ephemeral: { users: [OFFICER, CA_USER] },
    });
    try {
      expect((await user.status()).user).toEqual({ name: 'ca', role: 'user' });
      expect(logins).toBe(2);
    } finally {
      await user.close();
      await revived.stop();
      await partition.stop();
    }
  });

  it('fails a call the partition never answers with CKR_DEVICE_REMOVED after its timeout, instead of hanging', async () => {
    const fake = await fakePartition((op) => op === 'hello');
    try {
      const client = await RemotePartition.connect({ socketPath: fake.socketPath, requestTimeoutMs: 300 });
      const started = Date.now();
      const failure = await refusal(client.status());
      expect(failure.code).toBe('hsm.unavailable');
      expect(Date.now() - started).toBeGreaterThanOrEqual(250);
      expect(Date.now() - started).toBeLessThan(3000);
      await client.close();
    } finally {
      await fake.close();
    }
  });

  it('fails to connect with CKR_DEVICE_REMOVED when the listener never completes the hello', async () => {
    const fake = await fakePartition(() => false);
    try {
      const failure = await refusal(
        RemotePartition.connect({ socketPath: fake.socketPath, connectTimeoutMs: 300 }),
      );
      expect(failure.code).toBe('hsm.unavailable');
    } finally {
      await fake.close();
    }
  });

  it('fails with CKR_DEVICE_REMOVED when nothing listens on the socket', async () => {
    const { socketPath, cleanup } = await temporarySocketPath();
    expect((await refusal(RemotePartition.connect({ socketPath }))).code).toBe('hsm.unavailable');
    await cleanup();
  });

  describe('with a healthy partition', () => {
    let partition: TestPartition;
    beforeAll(async () => {
      partition = await startTestPartition();
    });
    afterAll(() => partition?.stop());

    it('refuses every call after close', async () => {
      const client = await partition.user();
      await client.close();
      expect((await refusal(client.status())).code).toBe('hsm.unavailable');
    });

    it('does not retry a refused login on every call (which would lock the user) until reconnect()', async () => {
      let pin = CA_USER.pin;
      const client = await RemotePartition.connect({
        socketPath: partition.socketPath,
        onConnect: async (p) => {
          await p.login({ user: 'ca', pin });
        },
      });
      const officer = await partition.officer();
      try {
        await officer.setUserPin({ name: 'ca', pin: 'rotated-pin-4321' });
        expect((await refusal(client.reconnect())).code).toBe('hsm.pin_incorrect');
        for (let i = 0; i < 6; i++) expect((await refusal(client.status())).code).toBe('hsm.pin_incorrect');
        const ca = (await officer.listUsers()).find((u) => u.name === 'ca');
        expect(ca).toMatchObject({ failedLogins: 1, locked: false });
        pin = 'rotated-pin-4321';
        await client.reconnect();
        expect((await client.status()).user).toEqual({ name: 'ca', role: 'user' });
      } finally {
        await officer.setUserPin({ name: 'ca', pin: CA_USER.pin });
        await client.close();
      }
    });

    it('surfaces a failing onConnect (a wrong PIN) as the partition refusal', async () => {
      const failure = await refusal(
        RemotePartition.connect({
          socketPath: partition.socketPath,
          onConnect: async (p) => {
            await p.login({ user: 'ca', pin: 'not-the-pin' });
          },
        }),
      );
      expect(failure.code).toBe('hsm.pin_incorrect');
    });
  });
});
