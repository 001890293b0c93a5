import { readFileSync } from 'node:fs';
import { connect as connectTcp, createServer as createTcpServer } from 'node:net';
import path from 'node:path';
import { connect as connectTls } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type LinkFiles, writeLinkCertificates } from '../../src/cli/link-certs.ts';
import { RemotePartition, type TlsEndpoint } from '../../src/hsm/client.ts';
import { type LinkListener, parseLinkUrl, startLinkListener } from '../../src/hsm/link.ts';
import { startPartitionProcess } from '../../src/hsm/process.ts';
import { callFrame, PROTOCOL_NAME, SUPPORTED_VERSIONS, setFrameId } from '../../src/hsm/protocol.ts';
import { type PartitionServer, startPartitionServer } from '../../src/hsm/server.ts';
import { CA_USER, OFFICER, openMemoryPartition, tempDir, temporarySocketPath } from './helpers.ts';

/**
 * Issue #22: a partition member over TCP with mutual TLS 1.3. The framed protocol is the Unix
 * socket's; a client without a certificate from the link CA is cut off before any frame is answered.
 */

const helloFrame = () => {
  const frame = callFrame('hello', { protocol: PROTOCOL_NAME, versions: [...SUPPORTED_VERSIONS] });
  setFrameId(frame, 1);
  return frame;
};

/** Connects, sends a hello as soon as it can, and reports what came back before the connection closed. */
function probe(connect: () => ReturnType<typeof connectTcp>, ready: 'connect' | 'secureConnect') {
  return new Promise<{ received: number; error?: string; closed: boolean }>((resolve) => {
    let received = 0;
    let error: string | undefined;
    const socket = connect();
    socket.on(ready, () => socket.write(helloFrame()));
    socket.on('data', (chunk: Buffer) => {
      received += chunk.length;
    });
    socket.on('error', (e: NodeJS.ErrnoException) => {
      error = e.code ?? e.message;
    });
    socket.on('close', () => resolve({ received, closed: true, ...(error ? { error } : {}) }));
    setTimeout(() => {
      socket.destroy();
      resolve({ received, closed: false, ...(error ? { error } : {}) });
    }, 5000).unref();
  });
}

describe('a partition member over mutual TLS', () => {
  const scratch = tempDir();
  let link: LinkFiles;
  let stranger: LinkFiles;
  let server: PartitionServer;
  let listener: LinkListener;
  let cleanupSocket: () => Promise<void>;
  let endpoint: TlsEndpoint;

  beforeAll(async () => {
    link = await writeLinkCertificates({ dir: path.join(scratch.dir, 'link'), hosts: ['127.0.0.1'] });
    stranger = await writeLinkCertificates({ dir: path.join(scratch.dir, 'other'), hosts: ['127.0.0.1'] });
    const { partition } = await openMemoryPartition();
    const { socketPath, cleanup } = await temporarySocketPath();
    cleanupSocket = cleanup;
    server = await startPartitionServer({ partition, socketPath });
    listener = await startLinkListener({
      host: '127.0.0.1',
      port: 0,
      server,
      cert: readFileSync(link.serverCert),
      key: readFileSync(link.serverKey),
      clientCa: readFileSync(link.caCert),
    });
    endpoint = {
      host: '127.0.0.1',
      port: listener.address.port,
      cert: readFileSync(link.clientCert),
      key: readFileSync(link.clientKey),
      ca: readFileSync(link.caCert),
    };
  });

  afterAll(async () => {
    await listener.close();
    await server.close();
    await cleanupSocket();
    scratch.cleanup();
  });

  it('serves the framed protocol to a client with a link certificate: log in, make a key, sign', async () => {
    const officer = await RemotePartition.connect({
      tls: endpoint,
      onConnect: (p) => p.login({ user: OFFICER.name, pin: OFFICER.pin }).then(() => {}),
    });
    const key = await officer.createKey({ label: 'over-tls', algorithm: 'ecdsa-p256' });
    await officer.close();
    const user = await RemotePartition.connect({
      tls: endpoint,
      onConnect: (p) => p.login({ user: CA_USER.name, pin: CA_USER.pin }).then(() => {}),
    });
    expect(user.endpoint).toBe(`tls://127.0.0.1:${listener.address.port}`);
    const signature = await user.sign({
      key: { id: key.id },
      mechanism: 'ecdsa-sha256',
      purpose: 'other',
      data: Buffer.from('over mutual TLS'),
    });
    expect(signature).toHaveLength(64);
    expect((await user.status()).state).toBe('unsealed');
    await user.close();
  });

  it('closes on a TLS client without a certificate before answering any frame', async () => {
    const result = await probe(
      () =>
        connectTls({
          host: '127.0.0.1',
          port: listener.address.port,
          ca: readFileSync(link.caCert),
          minVersion: 'TLSv1.3',
        }),
      'secureConnect',
    );
    expect(result.closed).toBe(true);
    expect(result.received).toBe(0);
    expect(result.error).toMatch(/CERTIFICATE_REQUIRED|ECONNRESET/);
  });

  it('closes on a client whose certificate comes from another CA before answering any frame', async () => {
    const result = await probe(
      () =>
        connectTls({
          host: '127.0.0.1',
          port: listener.address.port,
          ca: readFileSync(link.caCert),
          cert: readFileSync(stranger.clientCert),
          key: readFileSync(stranger.clientKey),
          minVersion: 'TLSv1.3',
        }),
      'secureConnect',
    );
    expect(result.closed).toBe(true);
    expect(result.received).toBe(0);
    // The client of the partition says so as an unavailable member, not a hang.
    await expect(
      RemotePartition.connect({
        tls: { ...endpoint, cert: readFileSync(stranger.clientCert), key: readFileSync(stranger.clientKey) },
        connectTimeoutMs: 3000,
      }),
    ).rejects.toMatchObject({ rv: 'CKR_DEVICE_REMOVED' });
  });

  it('answers nothing to a plain TCP client that sends a frame', async () => {
    const result = await probe(
      () => connectTcp({ host: '127.0.0.1', port: listener.address.port }),
      'connect',
    );
    expect(result.received).toBe(0);
  });

  it('is refused by the client when the partition certificate is not from the link CA', async () => {
    await expect(
      RemotePartition.connect({
        tls: { ...endpoint, ca: readFileSync(stranger.caCert) },
        connectTimeoutMs: 3000,
      }),
    ).rejects.toMatchObject({ rv: 'CKR_DEVICE_REMOVED' });
  });

  it('refuses TLS below 1.3', async () => {
    const result = await probe(
      () =>
        connectTls({
          host: '127.0.0.1',
          port: listener.address.port,
          ca: readFileSync(link.caCert),
          cert: readFileSync(link.clientCert),
          key: readFileSync(link.clientKey),
          maxVersion: 'TLSv1.2',
        }),
      'secureConnect',
    );
    expect(result.received).toBe(0);
    expect(result.error).toBeDefined();
  });

  it.each([
    ['tls://127.0.0.1:7001', { host: '127.0.0.1', port: 7001 }],
    ['tls://[::1]:7001', { host: '::1', port: 7001 }],
    ['tls://hsm-1.example.com:443', { host: 'hsm-1.example.com', port: 443 }],
  ])('reads the link address %s', (url, expected) => {
    expect(parseLinkUrl(url)).toEqual(expected);
  });

  it.each([['http://127.0.0.1:7001'], ['tls://127.0.0.1'], ['tls://127.0.0.1:70000'], ['tls://[nope]:1']])(
    'refuses the link address %s',
    (url) => {
      expect(() => parseLinkUrl(url)).toThrow(/tls:\/\/HOST:PORT|IPv6/);
    },
  );
});

describe('signet hsm serve --listen', () => {
  it('serves the same partition on its socket and over mutual TLS', async () => {
    const scratch = tempDir();
    const link = await writeLinkCertificates({ dir: path.join(scratch.dir, 'link'), hosts: ['127.0.0.1'] });
    const { socketPath, cleanup } = await temporarySocketPath();
    // A port the kernel picks for a moment, then given to the partition.
    const port = await new Promise<number>((resolve) => {
      const probeServer = createTcpServer();
      probeServer.listen(0, '127.0.0.1', () => {
        const chosen = (probeServer.address() as { port: number }).port;
        probeServer.close(() => resolve(chosen));
      });
    });
    const child = await startPartitionProcess({
      socketPath,
      name: 'linked',
      ephemeral: { users: [OFFICER, CA_USER] },
      args: [
        '--listen',
        `tls://127.0.0.1:${port}`,
        '--tls-cert',
        link.serverCert,
        '--tls-key',
        link.serverKey,
        '--client-ca',
        link.caCert,
      ],
    });
    try {
      const overTls = await RemotePartition.connect({
        tls: {
          host: '127.0.0.1',
          port,
          cert: readFileSync(link.clientCert),
          key: readFileSync(link.clientKey),
          ca: readFileSync(link.caCert),
        },
        onConnect: (p) => p.login({ user: OFFICER.name, pin: OFFICER.pin }).then(() => {}),
      });
      const key = await overTls.createKey({ label: 'both-ways', algorithm: 'ecdsa-p256' });
      const overSocket = await RemotePartition.connect({ socketPath });
      expect((await overSocket.status()).name).toBe('linked');
      await overSocket.close();
      expect((await overTls.findKey({ label: 'both-ways' }))?.id).toBe(key.id);
      await overTls.close();
    } finally {
      await child.stop();
      await cleanup();
      scratch.cleanup();
    }
  });
});
