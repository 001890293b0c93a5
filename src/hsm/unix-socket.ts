import { chmod, unlink } from 'node:fs/promises';
import type { Server } from 'node:net';

/** A listening socket of the partition (its own protocol, or PKCS#11 RPC) and how to stop it. */
export interface ListeningSocket {
  socketPath: string;
  connectionCount(): number;
  close(): Promise<void>;
}

/**
 * Listens on a Unix socket only its owner can reach, for both of the partition's servers. The
 * socket is created with mode 0600 (umask), not chmod-ed afterwards, so no other user can connect
 * in between (issue #2 item 1). Closing stops accepting, drops every connection and removes the
 * socket file.
 */
export async function listenPrivately(
  server: Server,
  socketPath: string,
  connections: ReadonlySet<{ destroy(): void }>,
): Promise<ListeningSocket> {
  const previous = process.umask(0o177);
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(socketPath, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } finally {
    process.umask(previous);
  }
  await chmod(socketPath, 0o600);
  let closing: Promise<void> | undefined;
  return {
    socketPath,
    connectionCount: () => connections.size,
    close() {
      closing ??= (async () => {
        const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
        for (const connection of connections) connection.destroy();
        await stopped;
        await unlink(socketPath).catch(() => {});
      })();
      return closing;
    },
  };
}
