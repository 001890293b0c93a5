/**
 * What an ACME client serves for validation, for tests and bench/acme: an http-01 responder
 * (RFC 8555 §8.3) and a tls-alpn-01 responder (RFC 8737) whose certificates a test may bend.
 */
import 'reflect-metadata';
import { createHash, webcrypto } from 'node:crypto';
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createSecureContext, createServer as createTlsServer, type SecureContext } from 'node:tls';
import * as x509 from '@peculiar/x509';

export interface Http01Responder {
  port: number;
  /** token -> key authorization, or a function answering the request itself. */
  answers: Map<string, string | ((res: ServerResponse) => void)>;
  requests: { path: string; host: string | undefined }[];
  close(): Promise<void>;
}

export async function startHttp01Responder(host = '127.0.0.1', port = 0): Promise<Http01Responder> {
  const answers: Http01Responder['answers'] = new Map();
  const requests: Http01Responder['requests'] = [];
  const server: Server = createServer((req, res) => {
    requests.push({ path: req.url ?? '', host: req.headers.host });
    const token = /^\/\.well-known\/acme-challenge\/([A-Za-z0-9_-]+)$/.exec(req.url ?? '')?.[1];
    const answer = token ? answers.get(token) : undefined;
    if (typeof answer === 'function') return answer(res);
    if (answer === undefined) {
      res.writeHead(404).end('no such token');
      return;
    }
    res.writeHead(200, { 'content-type': 'text/plain' }).end(answer);
  });
  server.keepAliveTimeout = 1000;
  await new Promise<void>((resolve) => server.listen(port, host, resolve));
  return {
    port: (server.address() as AddressInfo).port,
    answers,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

export interface TlsAlpnVariant {
  /** Mark acmeIdentifier non-critical (refused by RFC 8737 §3). */
  nonCritical?: boolean;
  /** Another digest than SHA-256 of the key authorization. */
  digest?: Uint8Array;
  /** Further SAN entries beside the identifier. */
  extraSans?: { type: 'dns' | 'ip'; value: string }[];
  /** No acmeIdentifier extension at all. */
  omitExtension?: boolean;
}

/** A self-signed tls-alpn-01 certificate (RFC 8737 §3) for the identifier, PEM. */
export async function tlsAlpnCertificate(
  identifier: { type: 'dns' | 'ip'; value: string },
  keyAuthorization: string,
  variant: TlsAlpnVariant = {},
): Promise<{ key: string; cert: string }> {
  const algorithm = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
  const keys = (await webcrypto.subtle.generateKey(algorithm, true, [
    'sign',
    'verify',
  ])) as webcrypto.CryptoKeyPair;
  const digest = variant.digest ?? createHash('sha256').update(keyAuthorization).digest();
  const extensions: x509.Extension[] = [
    new x509.SubjectAlternativeNameExtension([identifier, ...(variant.extraSans ?? [])]),
  ];
  if (!variant.omitExtension) {
    // extnValue is the DER OCTET STRING of the digest (RFC 8737 §3).
    const value = new Uint8Array([0x04, digest.length, ...digest]);
    extensions.push(new x509.Extension('1.3.6.1.5.5.7.1.31', !variant.nonCritical, value));
  }
  const certificate = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: '01',
    name: 'CN=ACME TLS-ALPN-01 challenge',
    notBefore: new Date(Date.now() - 3600_000),
    notAfter: new Date(Date.now() + 86_400_000),
    keys,
    signingAlgorithm: algorithm,
    extensions,
  });
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey));
  const key = `-----BEGIN PRIVATE KEY-----\n${pkcs8.toString('base64').replace(/(.{64})/g, '$1\n')}\n-----END PRIVATE KEY-----\n`;
  return { key, cert: certificate.toString('pem') };
}

export interface TlsAlpnResponder {
  port: number;
  /** SNI name -> the certificate to present. */
  contexts: Map<string, SecureContext>;
  /** The SNI of each handshake. */
  servernames: string[];
  set(servername: string, material: { key: string; cert: string }): void;
  close(): Promise<void>;
}

export async function startTlsAlpnResponder(
  host = '127.0.0.1',
  port = 0,
  alpn: string[] = ['acme-tls/1'],
): Promise<TlsAlpnResponder> {
  const contexts = new Map<string, SecureContext>();
  const servernames: string[] = [];
  const fallback = await tlsAlpnCertificate({ type: 'dns', value: 'unknown.invalid' }, 'none');
  const server = createTlsServer(
    {
      ...fallback,
      ALPNProtocols: alpn,
      SNICallback: (name, callback) => {
        servernames.push(name);
        callback(null, contexts.get(name) ?? createSecureContext(fallback));
      },
    },
    (socket) => socket.end(),
  );
  server.on('tlsClientError', () => {});
  await new Promise<void>((resolve) => server.listen(port, host, resolve));
  return {
    port: (server.address() as AddressInfo).port,
    contexts,
    servernames,
    set: (servername, material) => contexts.set(servername, createSecureContext(material)),
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
