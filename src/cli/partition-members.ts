import type { Logger } from 'pino';
import { resolveIn, type SignetConfig } from '../config/config.ts';
import { PartitionSupervisor } from '../hsm/supervisor.ts';

type PartitionConfig = SignetConfig['partitions'][string];
type MemberConfig = PartitionConfig['members'][number];

/** A supervised member; `events` may be set once the node's client of it exists. */
export interface SpawnedMember {
  readonly pid: number | undefined;
  events: { onDied?(memberName: string, how: string): void; onRestarted?(): void };
  stop(): Promise<void>;
}

/**
 * Starts and supervises the partition member a node spawns (`spawn: true`): by the runtime of a
 * single-process `signet serve`, or by the primary process of `serve --workers N`, whose HTTP
 * workers then reach it through its socket like any other member.
 */
export async function startSpawnedMember(options: {
  dataDir: string;
  name: string;
  partition: PartitionConfig;
  index: number;
  /** How the node's client names it (its socket path or URL), for the logs and memberDown. */
  memberName: string;
  logger: Logger;
  /** The node unseals it after a restart (unsealSecretFile); else custodians must. */
  selfUnseals?: boolean;
}): Promise<SpawnedMember> {
  const { dataDir, name, partition, memberName, logger } = options;
  const handle: SpawnedMember & { supervisor?: PartitionSupervisor } = {
    get pid() {
      return handle.supervisor?.pid;
    },
    events: {},
    stop: async () => handle.supervisor?.stop(),
  };
  const member = partition.members[options.index]!;
  const socketPath = resolveIn(dataDir, member.socket!);
  const supervisor = await PartitionSupervisor.start({
    dir: resolveIn(dataDir, member.dir!),
    socketPath,
    name,
    args: [
      ...p11Arguments(dataDir, partition),
      ...listenArguments(dataDir, member),
      // A cluster member acknowledges a key once this many members hold it (issue #23).
      ...(partition.quorum !== undefined && member.listen ? ['--quorum', String(partition.quorum)] : []),
      ...(partition.tokenPinFile !== undefined
        ? ['--token-pin-file', resolveIn(dataDir, partition.tokenPinFile)]
        : []),
    ],
    onLog: (line) => logger.info({ partition: name }, line),
    events: {
      died: ({ how, pid, uptimeMs, restartInMs }) => {
        handle.events.onDied?.(memberName, how);
        logger.error(
          { partition: name, member: memberName, pid, exit: how, uptimeMs, restartInMs },
          `partition process died (${how}); restarting it in ${restartInMs} ms`,
        );
      },
      restarted: ({ pid, attempt }) => {
        logger.warn(
          { partition: name, member: memberName, pid, restarts: attempt },
          options.selfUnseals
            ? 'partition process restarted; the node unseals it (unsealSecretFile)'
            : 'partition process restarted sealed: it waits for custodians (signet hsm unseal)',
        );
        handle.events.onRestarted?.();
      },
      startFailed: ({ error, attempt, retryInMs }) =>
        logger.error(
          { partition: name, member: memberName, attempt, retryInMs, err: error },
          'partition process did not start; trying again',
        ),
    },
  });
  logger.info(
    { partition: name, member: memberName, socket: socketPath, pid: supervisor.pid },
    'partition process started',
  );
  handle.supervisor = supervisor;
  return handle;
}

/** Every member signet.yaml marks `spawn: true`, started; for the primary of `serve --workers N`. */
export async function startSpawnedMembers(
  dataDir: string,
  config: SignetConfig,
  logger: Logger,
): Promise<SpawnedMember[]> {
  const started: SpawnedMember[] = [];
  try {
    for (const [name, partition] of Object.entries(config.partitions)) {
      const index = partition.members.findIndex((m) => m.spawn);
      if (index < 0) continue;
      const member = partition.members[index]!;
      const memberName = member.url ?? resolveIn(dataDir, member.socket!);
      started.push(
        await startSpawnedMember({
          dataDir,
          name,
          partition,
          index,
          memberName,
          logger,
          ...(partition.unsealSecretFile ? { selfUnseals: true } : {}),
        }),
      );
    }
    return started;
  } catch (error) {
    await Promise.all(started.map((s) => s.stop()));
    throw error;
  }
}

/** `signet hsm serve --listen` arguments for the spawned member that also serves mutual TLS. */
function listenArguments(dataDir: string, member: MemberConfig): string[] {
  if (!member.listen || member.url === undefined) return [];
  return [
    '--listen',
    member.url,
    '--tls-cert',
    resolveIn(dataDir, member.listen.cert),
    '--tls-key',
    resolveIn(dataDir, member.listen.key),
    '--client-ca',
    resolveIn(dataDir, member.listen.clientCa),
  ];
}

/** `signet hsm serve` arguments for a partition's PKCS#11 socket (partitions.<name>.p11Socket). */
function p11Arguments(dataDir: string, partition: PartitionConfig): string[] {
  if (partition.p11Socket === undefined) return [];
  return [
    '--p11-socket',
    resolveIn(dataDir, partition.p11Socket),
    ...(partition.p11SocketGroup !== undefined ? ['--p11-socket-group', partition.p11SocketGroup] : []),
    ...(partition.p11User !== undefined ? ['--p11-user', partition.p11User] : []),
  ];
}
