// How long a full CRL takes to build and sign, by entry count (issue #11).
//   node --import tsx bench/crl-build.ts [entries ...]     default: 10000 100000
// Keys are in-process WebCrypto P-256 (signing a CRL through the partition adds one streamed
// signature, a few ms per MiB); entries arrive in pages of 5000 as from the database cursor.
import 'reflect-metadata';
import { webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import { buildCrl } from '../src/revocation/crl-builder.ts';

const counts = process.argv
  .slice(2)
  .map(Number)
  .filter((n) => Number.isInteger(n) && n >= 0);
const keys = (await webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, false, [
  'sign',
  'verify',
])) as webcrypto.CryptoKeyPair;
const certificate = await x509.X509CertificateGenerator.createSelfSigned(
  {
    serialNumber: '01',
    name: 'CN=Bench CA',
    notBefore: new Date(Date.now() - 3_600_000),
    notAfter: new Date(Date.now() + 86_400_000),
    keys,
    signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
  },
  webcrypto,
);
const issuer = new Uint8Array(certificate.rawData);

async function* pages(count: number) {
  const revokedAt = new Date('2026-03-01T12:00:00Z');
  for (let start = 0; start < count; start += 5000) {
    yield Array.from({ length: Math.min(5000, count - start) }, (_, i) => ({
      // 16-octet serials, like Signet's.
      serial: `4${(start + i + 1).toString(16).padStart(31, '0')}`,
      revokedAt,
      reason: (i % 4 === 0 ? 'keyCompromise' : 'superseded') as 'keyCompromise' | 'superseded',
      ...(i % 10 === 0 ? { invalidityDate: new Date('2026-02-28T00:00:00Z') } : {}),
    }));
  }
}

for (const count of counts.length ? counts : [10_000, 100_000]) {
  const started = performance.now();
  const crl = await buildCrl({
    issuer,
    signer: { crypto: webcrypto, key: keys.privateKey },
    number: 1n,
    thisUpdate: new Date(),
    nextUpdate: new Date(Date.now() + 86_400_000),
    entries: pages(count),
  });
  const ms = performance.now() - started;
  const mib = crl.der.byteLength / 1024 / 1024;
  console.log(
    `${count} entries: ${ms.toFixed(0)} ms, ${mib.toFixed(1)} MiB, ${((count / ms) * 1000).toFixed(0)} entries/s`,
  );
}
