import { createHash } from 'node:crypto';
import { isIP } from 'node:net';
import { createServer, type Server, type TLSSocket } from 'node:tls';
import type { PartitionServer } from './server.ts';

/**
 * A partition member reached over the network (issue #22): TCP with mutual TLS 1.3, the CA node
 * presenting a client certificate issued by the link CA. Above the transport the framed protocol
 * is exactly the Unix socket's: the TLS listener hands each authenticated connection to the
 * partition server, which serves it like any other.
 */

/** `tls://HOST:PORT`, with an IPv6 literal in brackets (`tls://[::1]:7001`). */
export interface LinkAddress {
  host: string;
  port: number;
}

export function parseLinkUrl(url: string): LinkAddress {
  const match = /^tls:\/\/(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):([0-9]{1,5})$/.exec(url);
  const port = match ? Number(match[2]) : Number.NaN;
  if (!match || !(port >= 0 && port <= 65_535)) {
    throw new Error(`${url} is not a link address; write tls://HOST:PORT (IPv6 as tls://[::1]:PORT)`);
  }
  const host = match[1]!.startsWith('[') ? match[1]!.slice(1, -1) : match[1]!;
  if (match[1]!.startsWith('[') && isIP(host) !== 6)
    throw new Error(`${url}: ${host} is not an IPv6 address`);
  return { host, port };
}

export const formatLinkUrl = ({ host, port }: LinkAddress) =>
  `tls://${isIP(host) === 6 ? `[${host}]` : host}:${port}`;

/** PEM text or bytes of the partition's certificate, its key and the CA that issues client certificates. */
export interface LinkListenerOptions extends LinkAddress {
  server: PartitionServer;
  cert: string | Buffer;
  key: string | Buffer;
  clientCa: string | Buffer;
  /** A client must finish the handshake within this long. Default 10 s. */
  handshakeTimeoutMs?: number;
  log?: (line: string) => void;
}

export interface LinkListener {
  /** Where it listens (the port chosen when 0 was asked). */
  readonly address: LinkAddress;
  close(): Promise<void>;
}

/**
 * Listens for members' clients. A client without a certificate from `clientCa` fails the
 * handshake, so its connection closes before the partition reads a single frame of it: the
 * partition server only ever sees connections whose certificate verified.
 */
export async function startLinkListener(options: LinkListenerOptions): Promise<LinkListener> {
  const tls: Server = createServer(
    {
      cert: options.cert,
      key: options.key,
      ca: options.clientCa,
      requestCert: true,
      rejectUnauthorized: true,
      minVersion: 'TLSv1.3',
      maxVersion: 'TLSv1.3',
      handshakeTimeout: options.handshakeTimeoutMs ?? 10_000,
    },
    (socket: TLSSocket) => {
      // rejectUnauthorized already refused unverified peers; this guards a future option change.
      if (!socket.authorized) {
        socket.destroy();
        return;
      }
      const peer = socket.getPeerCertificate();
      options.server.attach(
        socket,
        peer?.raw ? createHash('sha256').update(peer.raw).digest('hex') : undefined,
      );
    },
  );
  tls.on('tlsClientError', (error, socket) => {
    options.log?.(
      `link: refused a connection from ${socket.remoteAddress ?? 'unknown'} (${(error as NodeJS.ErrnoException).code ?? error.message})`,
    );
  });
  tls.on('error', (error) => options.log?.(`link: ${error.message}`));
  await new Promise<void>((resolve, reject) => {
    tls.once('error', reject);
    tls.listen({ host: options.host, port: options.port }, () => {
      tls.off('error', reject);
      resolve();
    });
  });
  const bound = tls.address();
  const address =
    typeof bound === 'object' && bound ? { host: options.host, port: bound.port } : { ...options };
  let closing: Promise<void> | undefined;
  return {
    address: { host: address.host, port: address.port },
    close() {
      closing ??= new Promise<void>((resolve) => tls.close(() => resolve()));
      return closing;
    },
  };
}
