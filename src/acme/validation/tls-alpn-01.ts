import { createHash } from 'node:crypto';
import { connect } from 'node:tls';
import { AsnConvert } from '@peculiar/asn1-schema';
import { Certificate } from '@peculiar/asn1-x509';
import { decodeGeneralNames } from '../../x509/names.ts';
import { AcmeError, acmeError } from '../errors.ts';
import { reverseName } from '../identifiers.ts';
import { allowedAddresses, type ValidationNetwork } from './network.ts';

/**
 * tls-alpn-01 (RFC 8737 §3): a TLS connection to {identifier}:{port} offering only ALPN
 * `acme-tls/1`, with the identifier as SNI (for an IP identifier, its reverse-mapping name,
 * RFC 8738 §6), must negotiate `acme-tls/1` and present a certificate whose subjectAltName holds
 * exactly that identifier and whose critical acmeIdentifier extension is the SHA-256 of the key
 * authorization.
 */

export const ACME_TLS_ALPN = 'acme-tls/1';
/** id-pe-acmeIdentifier (RFC 8737 §6.1). */
const ACME_IDENTIFIER_OID = '1.3.6.1.5.5.7.1.31';
const SUBJECT_ALT_NAME_OID = '2.5.29.17';

export interface TlsAlpn01Input {
  identifier: { type: 'dns' | 'ip'; value: string };
  keyAuthorization: string;
  port: number;
  network: ValidationNetwork;
  signal: AbortSignal;
}

export async function validateTlsAlpn01(input: TlsAlpn01Input): Promise<void> {
  const { identifier, keyAuthorization, port, network, signal } = input;
  const resolved = identifier.type === 'ip' ? [identifier.value] : await network.addresses(identifier.value);
  const addresses = allowedAddresses(network, identifier.value, resolved);
  const servername = identifier.type === 'ip' ? reverseName(identifier.value) : identifier.value;
  let lastError: unknown;
  for (const address of addresses) {
    let der: Uint8Array;
    try {
      der = await handshake(address, port, servername, signal);
    } catch (error) {
      if (error instanceof AcmeError || signal.aborted) throw error;
      lastError = error;
      continue;
    }
    checkCertificate(der, identifier, keyAuthorization);
    return;
  }
  const reason =
    (lastError as NodeJS.ErrnoException | undefined)?.code ?? (lastError as Error | undefined)?.message;
  throw acmeError(
    'connection',
    `could not connect to ${identifier.value} port ${port} (${addresses.join(', ')}): ${reason ?? 'error'}`,
    {
      cause: lastError,
    },
  );
}

function handshake(
  address: string,
  port: number,
  servername: string,
  signal: AbortSignal,
): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    const socket = connect({
      host: address,
      port,
      servername,
      ALPNProtocols: [ACME_TLS_ALPN],
      // The certificate is self-signed by design; what it says is checked below.
      rejectUnauthorized: false,
    });
    const abort = () => socket.destroy(new Error('validation timed out'));
    signal.addEventListener('abort', abort, { once: true });
    socket.once('secureConnect', () => {
      signal.removeEventListener('abort', abort);
      const protocol = socket.alpnProtocol;
      const certificate = socket.getPeerX509Certificate();
      socket.end();
      if (protocol !== ACME_TLS_ALPN) {
        reject(
          acmeError(
            'tls',
            `the TLS server did not negotiate ALPN ${ACME_TLS_ALPN} (it chose ${protocol || 'none'})`,
          ),
        );
        return;
      }
      if (!certificate) {
        reject(acmeError('tls', 'the TLS server presented no certificate'));
        return;
      }
      resolve(new Uint8Array(certificate.raw));
    });
    socket.once('error', (error: NodeJS.ErrnoException) => {
      signal.removeEventListener('abort', abort);
      socket.destroy();
      // A refused or reset connection may succeed on another address; a TLS alert will not.
      if (/^ERR_SSL|^ERR_TLS/.test(error.code ?? ''))
        reject(acmeError('tls', `TLS handshake failed: ${error.code}`, { cause: error }));
      else reject(error);
    });
  });
}

function checkCertificate(
  der: Uint8Array,
  identifier: { type: 'dns' | 'ip'; value: string },
  keyAuthorization: string,
): void {
  let certificate: Certificate;
  try {
    certificate = AsnConvert.parse(der, Certificate);
  } catch (error) {
    throw acmeError('tls', 'the certificate presented could not be parsed', { cause: error });
  }
  const extensions = certificate.tbsCertificate.extensions ?? [];
  const acmeIdentifier = extensions.filter((e) => e.extnID === ACME_IDENTIFIER_OID);
  const san = extensions.filter((e) => e.extnID === SUBJECT_ALT_NAME_OID);
  if (acmeIdentifier.length !== 1 || !acmeIdentifier[0]!.critical) {
    throw acmeError(
      'incorrectResponse',
      'the certificate needs exactly one critical acmeIdentifier extension (RFC 8737 §3)',
    );
  }
  const expected = Buffer.concat([
    Buffer.from([0x04, 0x20]),
    createHash('sha256').update(keyAuthorization).digest(),
  ]);
  if (!Buffer.from(acmeIdentifier[0]!.extnValue.buffer).equals(expected)) {
    throw acmeError(
      'incorrectResponse',
      'the acmeIdentifier extension is not the SHA-256 of this challenge key authorization',
    );
  }
  let names: { type: string; value: string }[];
  try {
    names = san.length === 1 ? decodeGeneralNames(new Uint8Array(san[0]!.extnValue.buffer)) : [];
  } catch (error) {
    throw acmeError('incorrectResponse', 'the certificate subjectAltName could not be read', {
      cause: error,
    });
  }
  const wanted = identifier.value.toLowerCase();
  if (names.length !== 1 || names[0]!.type !== identifier.type || names[0]!.value !== wanted) {
    throw acmeError(
      'incorrectResponse',
      `the certificate subjectAltName must hold exactly ${identifier.type === 'ip' ? 'the iPAddress' : 'the dNSName'} ${identifier.value}`,
    );
  }
}
