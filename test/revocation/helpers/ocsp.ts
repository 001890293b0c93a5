import { createHash } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  BasicOCSPResponse,
  CertID,
  id_pkix_ocsp_nonce,
  OCSPRequest,
  OCSPResponse,
  Request,
  TBSRequest,
} from '@peculiar/asn1-ocsp';
import { AsnConvert, OctetString } from '@peculiar/asn1-schema';
import { AlgorithmIdentifier, Extension, SubjectPublicKeyInfo } from '@peculiar/asn1-x509';
import type { OcspResponder } from '../../../src/revocation/ocsp-responder.ts';
import type { TestCa } from './pki.ts';

const HASH_OID = { sha1: '1.3.14.3.2.26', sha256: '2.16.840.1.101.3.4.2.1' } as const;

/** Builds a DER OCSPRequest the way clients do (for cases openssl cannot be made to send). */
export function buildOcspRequest({
  certIds,
  nonce,
  extensions = [],
}: {
  certIds: { issuer: TestCa; serial: string; hash?: 'sha1' | 'sha256' }[];
  nonce?: Uint8Array;
  extensions?: Extension[];
}): Uint8Array {
  const requestExtensions = [...extensions];
  if (nonce) {
    requestExtensions.push(
      new Extension({
        extnID: id_pkix_ocsp_nonce,
        critical: false,
        extnValue: new OctetString(AsnConvert.serialize(new OctetString(nonce))),
      }),
    );
  }
  const request = new OCSPRequest({
    tbsRequest: new TBSRequest({
      requestList: certIds.map(({ issuer, serial, hash = 'sha1' }) => {
        const spki = issuer.certificate.publicKey.rawData;
        const bits = new Uint8Array(AsnConvert.parse(spki, SubjectPublicKeyInfo).subjectPublicKey);
        return new Request({
          reqCert: new CertID({
            hashAlgorithm: new AlgorithmIdentifier({ algorithm: HASH_OID[hash], parameters: null }),
            issuerNameHash: new OctetString(
              createHash(hash)
                .update(new Uint8Array(issuer.certificate.subjectName.toArrayBuffer()))
                .digest(),
            ),
            issuerKeyHash: new OctetString(createHash(hash).update(bits).digest()),
            serialNumber: Uint8Array.from(Buffer.from(serial, 'hex')).buffer,
          }),
        });
      }),
      ...(requestExtensions.length ? { requestExtensions } : {}),
    }),
  });
  return new Uint8Array(AsnConvert.serialize(request));
}

export interface DecodedOcspResponse {
  status: number;
  basic?: BasicOCSPResponse;
  basicDer?: Uint8Array;
}

export function decodeOcspResponse(der: Uint8Array): DecodedOcspResponse {
  const response = AsnConvert.parse(der, OCSPResponse);
  if (!response.responseBytes) return { status: response.responseStatus };
  const basicDer = new Uint8Array(response.responseBytes.response.buffer);
  return { status: response.responseStatus, basic: AsnConvert.parse(basicDer, BasicOCSPResponse), basicDer };
}

/** A tiny OCSP HTTP server on 127.0.0.1 (RFC 6960 Appendix A): POST / and GET /{base64}. */
export async function serveOcsp(
  responder: OcspResponder,
): Promise<{ url: string; close(): Promise<void>; server: Server }> {
  const server = createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const answer =
      req.method === 'POST'
        ? await responder.answer(new Uint8Array(Buffer.concat(chunks)))
        : await responder.answerGetPath((req.url ?? '/').replace(/^\/ocsp\//, '').replace(/^\//, ''));
    res.writeHead(200, {
      'content-type': 'application/ocsp-response',
      'content-length': answer.der.byteLength,
    });
    res.end(Buffer.from(answer.der));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    server,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
