/**
 * bench/x509-tbs: the certificate side of issuance, per operation, on one thread.
 *
 *   node --import tsx bench/x509-tbs.ts [--seconds 2] [--rounds 3]
 *
 * Measures, alternating in each round so a busy machine slows all alike:
 *   parse-csr     parseCsr of an OpenSSL-shaped P-256 request (strict DER, node:crypto verify, key checks)
 *   build-tbs     buildTbsCertificate (cached issuer pieces, SAN, SKI, AKI, KU, EKU, CRL DP, AIA)
 *   lint          lintCertificate of that TBS (41 rules, token minted)
 *   build+lint+sign  the above plus signCertificate with a P-256 Node webcrypto key (sign, assemble, verify)
 *   x509-generator   @peculiar/x509 X509CertificateGenerator.create with the same extensions (signs too)
 * and prints operations per second and CPU µs per operation (medians over rounds).
 */

import 'reflect-metadata';
import { webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import { createIntermediateCertificate, createRootCertificate } from '../src/issuance/ca-certificates.ts';
import { lintCertificate, signCertificate } from '../src/issuance/token.ts';
import { fixedClock } from '../src/lib/clock.ts';
import { buildTbsCertificate, generateSerial } from '../src/x509/certificate.ts';
import { parseCsr } from '../src/x509/csr.ts';
import { createIssuerContext } from '../src/x509/issuer.ts';
import type { CertificateTemplate } from '../src/x509/types.ts';

const argument = (name: string, fallback: number): number => {
  const index = process.argv.indexOf(`--${name}`);
  return index >= 0 ? Number(process.argv[index + 1]) : fallback;
};
const seconds = argument('seconds', 2);
const rounds = argument('rounds', 3);

const clock = fixedClock(new Date());
const ec = { name: 'ECDSA', namedCurve: 'P-256' } as const;
const rootKeys = (await webcrypto.subtle.generateKey(ec, true, [
  'sign',
  'verify',
])) as webcrypto.CryptoKeyPair;
const issuerKeys = (await webcrypto.subtle.generateKey(ec, true, [
  'sign',
  'verify',
])) as webcrypto.CryptoKeyPair;
const leafKeys = (await webcrypto.subtle.generateKey(ec, true, [
  'sign',
  'verify',
])) as webcrypto.CryptoKeyPair;

const root = await createRootCertificate({
  id: 'bench-root',
  crypto: webcrypto,
  signingKey: rootKeys.privateKey,
  publicKey: rootKeys.publicKey,
  subject: [{ type: 'CN', value: 'Bench Root' }],
  clock,
  validitySeconds: 10 * 365 * 86400,
});
const rootContext = createIssuerContext({ id: 'bench-root', certificate: root.der });
const intermediate = await createIntermediateCertificate({
  issuer: rootContext,
  crypto: webcrypto,
  signingKey: rootKeys.privateKey,
  publicKey: issuerKeys.publicKey,
  subject: [{ type: 'CN', value: 'Bench Intermediate' }],
  clock,
  validitySeconds: 5 * 365 * 86400,
  pathLength: 0,
});
const urls = {
  crlUrl: 'http://ca.example.com/crl/bench.crl',
  ocspUrl: 'http://ca.example.com/ocsp',
  caIssuersUrl: 'http://ca.example.com/v1/issuers/bench/certificate',
};
const issuer = createIssuerContext({ id: 'bench', certificate: intermediate.der, ...urls });

const csrPem = (
  await x509.Pkcs10CertificateRequestGenerator.create({
    name: 'CN=www.example.com',
    keys: leafKeys,
    signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
    extensions: [
      new x509.SubjectAlternativeNameExtension([
        { type: 'dns', value: 'www.example.com' },
        { type: 'dns', value: 'example.com' },
      ]),
    ],
  })
).toString('pem');
const csr = parseCsr(csrPem);
const template: CertificateTemplate = {
  policy: 'bench',
  issuer: 'bench',
  subject: csr.subject,
  sans: csr.sans,
  publicKey: csr.publicKey,
  keyAlgorithm: csr.keyAlgorithm,
  validitySeconds: 90 * 86400,
  backdateSeconds: 60,
  keyUsage: ['digitalSignature'],
  extendedKeyUsage: ['serverAuth'],
  policyOids: [],
  ocspMustStaple: false,
  passthroughExtensions: [],
};
const tbs = buildTbsCertificate(template, issuer, { serial: generateSerial(), clock }).der;
const issuerCertificate = new x509.X509Certificate(intermediate.der);
const leafPublicKey = new x509.PublicKey(csr.publicKey);

const operations: Record<string, () => unknown> = {
  'parse-csr': () => parseCsr(csrPem),
  'build-tbs': () => buildTbsCertificate(template, issuer, { serial: generateSerial(), clock }),
  lint: () => lintCertificate(tbs, { issuer, profile: 'leaf' }),
  'build+lint+sign': async () => {
    const built = buildTbsCertificate(template, issuer, { serial: generateSerial(), clock });
    const lint = lintCertificate(built.der, { issuer, profile: 'leaf' });
    if (!lint.ok) throw new Error('lint refused the bench certificate');
    return signCertificate(lint.token, { crypto: webcrypto, key: issuerKeys.privateKey });
  },
  'x509-generator': () =>
    x509.X509CertificateGenerator.create({
      serialNumber: Buffer.from(generateSerial()).toString('hex'),
      issuer: issuerCertificate.subject,
      subject: 'CN=www.example.com',
      notBefore: new Date(clock.now().getTime() - 60_000),
      notAfter: new Date(clock.now().getTime() + 90 * 86400_000),
      publicKey: leafPublicKey,
      signingKey: issuerKeys.privateKey,
      signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
        new x509.SubjectAlternativeNameExtension([
          { type: 'dns', value: 'www.example.com' },
          { type: 'dns', value: 'example.com' },
        ]),
        new x509.SubjectKeyIdentifierExtension(Buffer.from(issuer.subjectKeyIdentifier).toString('hex')),
        new x509.AuthorityKeyIdentifierExtension(Buffer.from(issuer.subjectKeyIdentifier).toString('hex')),
        new x509.CRLDistributionPointsExtension([urls.crlUrl]),
        new x509.AuthorityInfoAccessExtension({ ocsp: [urls.ocspUrl], caIssuers: [urls.caIssuersUrl] }),
      ],
    }),
};

async function measure(operation: () => unknown): Promise<{ rate: number; cpuMicros: number }> {
  const deadline = performance.now() + seconds * 1000;
  const cpuStart = process.cpuUsage();
  const started = performance.now();
  let count = 0;
  while (performance.now() < deadline) {
    for (let i = 0; i < 20; i++) await operation();
    count += 20;
  }
  const elapsed = (performance.now() - started) / 1000;
  const cpu = process.cpuUsage(cpuStart);
  return { rate: count / elapsed, cpuMicros: (cpu.user + cpu.system) / count };
}

const median = (values: number[]): number =>
  [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
const results = new Map<string, { rate: number[]; cpu: number[] }>();
for (const name of Object.keys(operations)) {
  for (let i = 0; i < 50; i++) await operations[name]!(); // warm up
  results.set(name, { rate: [], cpu: [] });
}
for (let round = 0; round < rounds; round++) {
  for (const [name, operation] of Object.entries(operations)) {
    const { rate, cpuMicros } = await measure(operation);
    results.get(name)!.rate.push(rate);
    results.get(name)!.cpu.push(cpuMicros);
  }
}
console.log(`x509-tbs: ${rounds} rounds of ${seconds}s, Node ${process.version}`);
console.log('operation            ops/s    CPU µs/op');
for (const [name, { rate, cpu }] of results) {
  console.log(
    `${name.padEnd(18)} ${median(rate).toFixed(0).padStart(8)} ${median(cpu).toFixed(0).padStart(12)}`,
  );
}
