import { afterEach, describe, expect, it } from 'vitest';
import { RemotePartition } from '../../src/hsm/client.ts';
import { PartitionSupervisor } from '../../src/hsm/supervisor.ts';
import { CA_USER, OFFICER, temporarySocketPath } from './helpers.ts';

/** Issue #22: the supervisor starts a dead partition process again and says how it died. */

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function until(what: string, condition: () => boolean, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('PartitionSupervisor', () => {
  it('reports a SIGKILL and an exit code, restarts the process each time, and backs off on repeated deaths', async () => {
    const { socketPath, cleanup } = await temporarySocketPath();
    cleanups.push(cleanup);
    const died: { how: string; restartInMs: number }[] = [];
    const restarted: number[] = [];
    const supervisor = await PartitionSupervisor.start({
      socketPath,
      name: 'supervised',
      ephemeral: { users: [OFFICER, CA_USER] },
      initialDelayMs: 50,
      events: {
        died: (event) => died.push(event),
        restarted: ({ attempt }) => restarted.push(attempt),
        startFailed: ({ error }) => {
          throw error;
        },
      },
    });
    cleanups.push(() => supervisor.stop());
    const first = supervisor.pid!;
    process.kill(first, 'SIGKILL');
    await until('the first restart', () => restarted.length === 1);
    expect(died[0]).toMatchObject({ how: 'signal SIGKILL', restartInMs: 50 });
    const second = supervisor.pid!;
    expect(second).not.toBe(first);
    // The restarted process serves the same socket.
    const client = await RemotePartition.connect({ socketPath });
    expect((await client.status()).name).toBe('supervised');
    await client.close();

    process.kill(second, 'SIGTERM');
    await until('the second restart', () => restarted.length === 2);
    // SIGTERM makes `signet hsm serve` stop cleanly, with exit code 0; a quick second death waits longer.
    expect(died[1]).toMatchObject({ how: 'exit code 0', restartInMs: 100 });
    expect(supervisor.restarts).toBe(2);
  });

  it('stops the process and starts no other once stopped', async () => {
    const { socketPath, cleanup } = await temporarySocketPath();
    cleanups.push(cleanup);
    let deaths = 0;
    const supervisor = await PartitionSupervisor.start({
      socketPath,
      name: 'supervised',
      ephemeral: { users: [OFFICER] },
      events: { died: () => deaths++, restarted: () => {}, startFailed: () => {} },
    });
    const pid = supervisor.pid!;
    await supervisor.stop();
    expect(() => process.kill(pid, 0)).toThrow();
    await new Promise((r) => setTimeout(r, 400));
    expect(deaths).toBe(0);
  });
});
