import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { isIP } from 'node:net';
import { AcmeError, acmeError } from '../errors.ts';
import { allowedAddresses, type ValidationNetwork } from './network.ts';

/**
 * http-01 (RFC 8555 §8.3): GET http://{identifier}:{port}/.well-known/acme-challenge/{token}
 * must answer 200 with the key authorization (whitespace at the end ignored). Redirects are
 * followed (at most ten) to http and https URLs only, each hop's address checked against the
 * denied networks before connecting; an https hop's certificate is not checked (§8.3: the
 * server validates control of the name, not a certificate that may not exist yet).
 */

const MAX_REDIRECTS = 10;
/** A key authorization is 87 characters; a body far larger is not one. */
const MAX_BODY = 8 * 1024;
const REDIRECTS = new Set([301, 302, 303, 307, 308]);

export interface Http01Input {
  identifier: { type: 'dns' | 'ip'; value: string };
  token: string;
  keyAuthorization: string;
  port: number;
  network: ValidationNetwork;
  signal: AbortSignal;
}

export async function validateHttp01(input: Http01Input): Promise<void> {
  const { identifier, token, keyAuthorization, port, network, signal } = input;
  const host =
    identifier.type === 'ip' && identifier.value.includes(':') ? `[${identifier.value}]` : identifier.value;
  let url = new URL(`http://${host}:${port}/.well-known/acme-challenge/${token}`);
  for (let hop = 0; ; hop++) {
    const response = await fetchOnce(url, network, signal);
    if (REDIRECTS.has(response.status)) {
      if (hop >= MAX_REDIRECTS)
        throw acmeError('connection', `more than ${MAX_REDIRECTS} redirects from ${identifier.value}`);
      let next: URL;
      try {
        next = new URL(response.location ?? '', url);
      } catch (error) {
        throw acmeError('connection', `${url.href} redirected to a location that is not a URL`, {
          cause: error,
        });
      }
      if (!response.location)
        throw acmeError('connection', `${url.href} answered ${response.status} without a Location`);
      if (next.protocol !== 'http:' && next.protocol !== 'https:') {
        throw acmeError(
          'connection',
          `${url.href} redirected to a ${next.protocol.replace(':', '')} URL; only http and https are followed`,
        );
      }
      url = next;
      continue;
    }
    if (response.status !== 200) {
      throw acmeError(
        'unauthorized',
        `${url.href} answered HTTP ${response.status}, not 200 with the key authorization`,
      );
    }
    if (response.body.replace(/[\s]+$/, '') !== keyAuthorization) {
      throw acmeError(
        'incorrectResponse',
        `${url.href} did not answer the key authorization of this challenge`,
      );
    }
    return;
  }
}

interface HopResponse {
  status: number;
  location: string | undefined;
  body: string;
}

async function fetchOnce(url: URL, network: ValidationNetwork, signal: AbortSignal): Promise<HopResponse> {
  const hostname = url.hostname.replace(/^\[|\]$/g, '');
  const literal = isIP(hostname) !== 0;
  const resolved = literal ? [hostname] : await network.addresses(hostname);
  const addresses = allowedAddresses(network, hostname, resolved);
  let lastError: unknown;
  for (const address of addresses) {
    try {
      return await requestAt(url, address, literal ? undefined : hostname, signal);
    } catch (error) {
      if (error instanceof AcmeError || signal.aborted) throw error;
      lastError = error;
    }
  }
  const reason =
    (lastError as NodeJS.ErrnoException | undefined)?.code ?? (lastError as Error | undefined)?.message;
  throw acmeError(
    'connection',
    `could not connect to ${url.host} (${addresses.join(', ')}): ${reason ?? 'error'}`,
    {
      cause: lastError,
    },
  );
}

function requestAt(
  url: URL,
  address: string,
  servername: string | undefined,
  signal: AbortSignal,
): Promise<HopResponse> {
  const https = url.protocol === 'https:';
  const port = url.port ? Number(url.port) : https ? 443 : 80;
  return new Promise<HopResponse>((resolve, reject) => {
    const options = {
      host: address,
      port,
      path: `${url.pathname}${url.search}`,
      method: 'GET',
      // The Host header names what is validated, while the connection goes to the checked address.
      headers: { host: url.host, 'user-agent': 'signet-acme-validation', accept: '*/*' },
      agent: false as const,
      signal,
      ...(https ? { rejectUnauthorized: false, ...(servername ? { servername } : {}) } : {}),
    };
    const request = (https ? httpsRequest : httpRequest)(options, (response: IncomingMessage) => {
      const status = response.statusCode ?? 0;
      const location = response.headers.location;
      if (REDIRECTS.has(status) || status !== 200) {
        response.resume();
        resolve({ status, location, body: '' });
        return;
      }
      const chunks: Buffer[] = [];
      let size = 0;
      response.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > MAX_BODY) {
          request.destroy();
          reject(acmeError('incorrectResponse', `${url.href} answered more than ${MAX_BODY} bytes`));
          return;
        }
        chunks.push(chunk);
      });
      response.on('end', () => resolve({ status, location, body: Buffer.concat(chunks).toString('utf8') }));
      response.on('error', reject);
    });
    request.on('error', reject);
    request.end();
  });
}
