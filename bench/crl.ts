// CRLs at scale (issue #28): building a CRL of N revoked certificates from the database, against
// `openssl ca -gencrl` over the same entries in the same run, and the time from one more
// revocation to the new CRL's bytes being what the CRL route serves.
//
//   node --import tsx bench/crl.ts [--entries 100000,1000000] [--url postgres://...] [--no-latency]
//
// PostgreSQL: --url, else $DATABASE_URL, else $SIGNET_TEST_DATABASE_URL; a throwaway database is
// created in that server and dropped afterwards. Time and peak RSS of both builders are taken by
// GNU time (/usr/bin/time -f '%e %M') around a standalone process: `openssl ca -gencrl`, and this
// script in --child mode, which opens the database, streams the entries through the certificates
// repository, encodes, lints and signs (in-process P-256 key: the partition adds one streamed
// signature) and exits. The child also reports its own build time (without Node's start-up).
import 'reflect-metadata';
import { execFileSync, spawnSync } from 'node:child_process';
import { generateKeyPairSync, webcrypto } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import * as x509 from '@peculiar/x509';
import { sql } from 'drizzle-orm';
import pg from 'pg';
import { latestCrlReader } from '../src/cli/revocation.ts';
import { createCertificatesRepository } from '../src/db/certificates.repository.ts';
import { createCrlsRepository } from '../src/db/crls.repository.ts';
import { openDatabase } from '../src/db/database.ts';
import { createIssuersRepository } from '../src/db/issuers.repository.ts';
import { createCrlScheduler } from '../src/revocation/crl-scheduler.ts';

const ISSUER = 'bench-ca';
const { values } = parseArgs({
  options: {
    entries: { type: 'string', default: '100000,1000000' },
    url: { type: 'string' },
    'no-latency': { type: 'boolean', default: false },
    /** Leave the database for profiling (its URL is printed). */
    keep: { type: 'boolean', default: false },
    /** CPU profile of the one-more-revocation step (top functions by self time). */
    profile: { type: 'boolean', default: false },
    deltas: { type: 'boolean', default: false },
  },
});

async function importKey(dir: string): Promise<webcrypto.CryptoKey> {
  const pem = readFileSync(path.join(dir, 'ca.key'), 'utf8');
  const der = Buffer.from(pem.replace(/-----[^-]+-----|\s/g, ''), 'base64');
  return webcrypto.subtle.importKey('pkcs8', der, { name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign']);
}

/**
 * The standalone builder GNU time measures: opens the database, streams the entries through the
 * certificates repository, builds, lints and signs, writes the DER and exits. It runs the compiled
 * dist/ (as `signet serve` does; tsx alone would add ~70 MiB of transpiler to the figure).
 */
const CHILD = `
import 'reflect-metadata';
import { webcrypto } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { createCertificatesRepository } from './dist/db/certificates.repository.js';
import { openDatabase } from './dist/db/database.js';
import { buildCrl } from './dist/revocation/crl-builder.js';
const [url, dir, issuer] = process.argv.slice(1);
const database = await openDatabase({ url }, { migrate: false, poolSize: 2 });
const certificates = createCertificatesRepository({ db: database.db });
const pem = readFileSync(path.join(dir, 'ca.key'), 'utf8');
const key = await webcrypto.subtle.importKey('pkcs8', Buffer.from(pem.replace(/-----[^-]+-----|\\s/g, ''), 'base64'),
  { name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign']);
const started = performance.now();
const crl = await buildCrl({
  issuer: new Uint8Array(readFileSync(path.join(dir, 'ca.der'))),
  signer: { crypto: webcrypto, key },
  number: 1n,
  thisUpdate: new Date(),
  nextUpdate: new Date(Date.now() + 86400000),
  entries: certificates.streamRevokedForCrl(issuer, { pageSize: 10000 }),
});
const ms = performance.now() - started;
writeFileSync(path.join(dir, 'signet.crl'), crl.der);
console.log(JSON.stringify({ ms, bytes: crl.der.byteLength, entries: crl.entryCount }));
await database.close();
`;

function timed(command: string, args: string[], cwd: string) {
  const result = spawnSync('/usr/bin/time', ['-f', '%e %M', command, ...args], {
    cwd,
    encoding: 'utf8',
    maxBuffer: 1 << 26,
  });
  if (result.status !== 0) throw new Error(`${command} failed: ${result.stderr}`);
  const [seconds, kib] = result.stderr.trim().split('\n').at(-1)!.split(' ').map(Number);
  return { seconds: seconds!, mib: kib! / 1024, stdout: result.stdout };
}

async function makeCa(dir: string) {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  writeFileSync(path.join(dir, 'ca.key'), privateKey.export({ type: 'pkcs8', format: 'pem' }));
  const keys = {
    privateKey: await importKeyFrom(privateKey.export({ type: 'pkcs8', format: 'der' })),
    publicKey: await webcrypto.subtle.importKey(
      'jwk',
      { ...(privateKey.export({ format: 'jwk' }) as webcrypto.JsonWebKey), d: undefined },
      { name: 'ECDSA', namedCurve: 'P-256' },
      true,
      ['verify'],
    ),
  };
  const certificate = await x509.X509CertificateGenerator.createSelfSigned(
    {
      serialNumber: '01',
      name: 'CN=Bench CRL CA',
      notBefore: new Date(Date.now() - 3_600_000),
      notAfter: new Date(Date.now() + 365 * 86_400_000),
      keys: keys as webcrypto.CryptoKeyPair,
      signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
      extensions: [
        new x509.BasicConstraintsExtension(true, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      ],
    },
    webcrypto,
  );
  writeFileSync(path.join(dir, 'ca.der'), new Uint8Array(certificate.rawData));
  writeFileSync(path.join(dir, 'ca.pem'), certificate.toString('pem'));
  return new Uint8Array(certificate.rawData);
}

function importKeyFrom(der: Buffer) {
  return webcrypto.subtle.importKey('pkcs8', der, { name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign']);
}

/** `count` revoked certificates (serials 4000...0001 up), in the database and in openssl's index.txt. */
async function seed(url: string, dir: string, count: number) {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  await client.query(
    'delete from crls; delete from crl_numbers; delete from owed_work; delete from certificates',
  );
  await client.query(
    `insert into certificates (serial, issuer_id, policy, requester, subject, not_before, not_after, status,
       crl_shard, tbs_sha256, created_at, revoked_at, revocation_reason, invalidity_date, status_changed_at)
     select '4' || lpad(to_hex(i), 31, '0'), $1, 'bench', 'bench', 'CN=bench', now() - interval '1 day',
       now() + interval '90 days', 'revoked', 0, sha256(int8send(i)), now() - interval '1 day',
       timestamptz '2026-03-01 12:00:00Z', case when i % 4 = 0 then 'keyCompromise' else 'superseded' end,
       case when i % 10 = 0 then timestamptz '2026-02-28 00:00:00Z' end, now() - interval '1 hour'
     from generate_series(1, $2::int) as i`,
    [ISSUER, count],
  );
  await client.query('analyze certificates');
  await client.end();
  // openssl's CA database: R, expiry, revocation date[,reason[,invalidity]], serial, file, subject.
  const expiry = openSslTime(new Date(Date.now() + 90 * 86_400_000));
  const lines: string[] = [];
  for (let i = 1; i <= count; i++) {
    const reason = i % 4 === 0 ? 'keyCompromise' : 'superseded';
    const revocation = `260301120000Z,${reason}${i % 10 === 0 ? ',20260228000000Z' : ''}`;
    lines.push(
      `R\t${expiry}\t${revocation}\t4${i.toString(16).padStart(31, '0').toUpperCase()}\tunknown\t/CN=bench`,
    );
  }
  writeFileSync(path.join(dir, 'index.txt'), `${lines.join('\n')}\n`);
  writeFileSync(path.join(dir, 'index.txt.attr'), 'unique_subject = no\n');
  writeFileSync(path.join(dir, 'crlnumber'), '01\n');
}

function openSslTime(date: Date): string {
  return `${date.toISOString().slice(2, 19).replace(/[-T:]/g, '')}Z`;
}

const OPENSSL_CONFIG = `[ ca ]
default_ca = CA_default
[ CA_default ]
dir = .
database = index.txt
crlnumber = crlnumber
certificate = ca.pem
private_key = ca.key
default_md = sha256
default_crl_days = 1
crl_extensions = crl_ext
[ crl_ext ]
authorityKeyIdentifier = keyid:always
`;

let oneMore = 1;

/** Starts the V8 CPU profiler; the function it answers stops it and lists the top self times. */
async function startProfile(): Promise<() => Promise<string>> {
  const session = new Session();
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.setSamplingInterval', { interval: 200 });
  await session.post('Profiler.start');
  return async () => {
    const { profile } = await session.post('Profiler.stop');
    session.disconnect();
    const interval = (profile.endTime - profile.startTime) / Math.max(1, profile.samples?.length ?? 1);
    const self = new Map<string, number>();
    for (const node of profile.nodes) {
      const frame = node.callFrame;
      const where = `${frame.functionName || '(anonymous)'} ${frame.url.replace(/^.*\/(src|node_modules)\//, '$1/')}:${frame.lineNumber + 1}`;
      self.set(where, (self.get(where) ?? 0) + (node.hitCount ?? 0) * interval);
    }
    const total = [...self.values()].reduce((a, b) => a + b, 0);
    return [...self.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, 15)
      .map(
        ([where, us]) =>
          `    ${(us / 1000).toFixed(0).padStart(6)} ms ${((100 * us) / total).toFixed(1).padStart(5)}%  ${where}`,
      )
      .join('\n');
  };
}

/** One more revocation until the CRL route's source (crls.getLatest) serves the CRL listing it. */
async function revocationLatency(url: string, certificateDer: Uint8Array, dir: string, deltas: boolean) {
  const database = await openDatabase({ url }, { migrate: false });
  const certificates = createCertificatesRepository({ db: database.db });
  const crls = createCrlsRepository({ db: database.db });
  const key = await importKey(dir);
  const scheduler = createCrlScheduler({
    issuers: {
      listCrlIssuers: async () => [
        {
          id: ISSUER,
          certificate: certificateDer,
          signer: { crypto: webcrypto, key },
          issuing: true,
          lastCertificateExpiry: null,
          crlUrl: 'http://ca.example.com/crl/bench-ca.crl',
        },
      ],
    },
    entries: certificates,
    store: crls,
    clock: { now: () => new Date() },
    // The coalescing window is excluded from the measure.
    debounceMs: 0,
    onError: (error) => console.error('CRL scheduler:', error),
    ...(deltas ? { deltaIntervalMs: 3_600_000 } : {}),
  });
  let started = performance.now();
  await scheduler.start();
  await scheduler.publishNow(ISSUER, 0);
  await scheduler.idle();
  const first = performance.now() - started;
  const kind = deltas ? 'delta' : 'full';
  const before = (await crls.getLatestInfo(ISSUER, 0, kind))!;
  const serial = `5${(oneMore++).toString(16).padStart(31, '0')}`;
  await database.db.execute(sql`insert into certificates (serial, issuer_id, policy, requester, subject, not_before,
    not_after, status, crl_shard, tbs_sha256, der, created_at, status_changed_at)
    values (${serial}, ${ISSUER}, 'bench', 'bench', 'CN=bench', now() - interval '1 day', now() + interval '90 days',
      'good', 0, sha256(${serial}::bytea), '\\x00'::bytea, now(), now())`);
  const profiler = values.profile ? await startProfile() : undefined;
  started = performance.now();
  await certificates.revoke(serial, { reason: 'keyCompromise', revokedAt: new Date() });
  scheduler.notifyRevocation(ISSUER, 0);
  // What the CRL route calls (src/cli/revocation.ts): the number and hash, then the DER once.
  const read = latestCrlReader(crls);
  let served: Awaited<ReturnType<typeof crls.getLatest>>;
  for (;;) {
    served = await read(ISSUER, 0, kind);
    if (served && served.crlNumber !== before.crlNumber) break;
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
  const latency = performance.now() - started;
  if (profiler) console.log(await profiler());
  await scheduler.stop();
  await database.close();
  return { first, latency, bytes: served.der.byteLength };
}

async function main() {
  const adminUrl = values.url ?? process.env.DATABASE_URL ?? process.env.SIGNET_TEST_DATABASE_URL;
  if (!adminUrl) throw new Error('no PostgreSQL: pass --url or set DATABASE_URL');
  const name = `signet_bench_crl_${process.pid}`;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  await admin.query(`create database ${name}`);
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  const dir = mkdtempSync(path.join(tmpdir(), 'signet-bench-crl-'));
  const load = () => readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
  try {
    const database = await openDatabase({ url: url.toString() });
    const certificateDer = await makeCa(dir);
    await createIssuersRepository({ db: database.db }).create({
      id: ISSUER,
      name: 'Bench CA',
      certificateDer,
      keyUri: 'hsm:partition=bench;label=bench',
    });
    await database.close();
    writeFileSync(path.join(dir, 'openssl.cnf'), OPENSSL_CONFIG);
    console.log(
      `openssl: ${execFileSync('openssl', ['version'], { encoding: 'utf8' }).trim()}; load ${load()}`,
    );
    for (const count of values.entries.split(',').map(Number)) {
      const seeding = performance.now();
      await seed(url.toString(), dir, count);
      console.log(
        `\n${count} revoked entries (seeded in ${((performance.now() - seeding) / 1000).toFixed(1)} s)`,
      );
      const openssl = timed(
        'openssl',
        ['ca', '-gencrl', '-config', 'openssl.cnf', '-out', 'openssl.crl', '-batch'],
        dir,
      );
      const signet = timed(
        process.execPath,
        ['--input-type=module', '-e', CHILD, url.toString(), dir, ISSUER],
        process.cwd(),
      );
      const inner = JSON.parse(signet.stdout.trim().split('\n').at(-1)!) as { ms: number; bytes: number };
      const opensslBytes = readFileSync(path.join(dir, 'openssl.crl'), 'utf8').length;
      console.log(
        `  openssl ca -gencrl   ${openssl.seconds.toFixed(2)} s  ${openssl.mib.toFixed(0)} MiB peak RSS  (PEM ${(opensslBytes / 1048576).toFixed(1)} MiB)`,
      );
      console.log(
        `  signet (process)     ${signet.seconds.toFixed(2)} s  ${signet.mib.toFixed(0)} MiB peak RSS  (DER ${(inner.bytes / 1048576).toFixed(1)} MiB; build ${(inner.ms / 1000).toFixed(2)} s without start-up)`,
      );
      console.log(
        `  ratio signet/openssl time ${(signet.seconds / openssl.seconds).toFixed(2)} (build only ${(inner.ms / 1000 / openssl.seconds).toFixed(2)}), memory ${(signet.mib / openssl.mib).toFixed(2)}   load ${load()}`,
      );
      if (!values['no-latency']) {
        for (const deltas of [false, true]) {
          const measured = await revocationLatency(url.toString(), certificateDer, dir, deltas);
          console.log(
            `  one more revocation -> served (${deltas ? 'delta CRL' : 'full CRL'}): ${measured.latency.toFixed(0)} ms (${(measured.bytes / 1048576).toFixed(2)} MiB; first CRLs at start ${(measured.first / 1000).toFixed(2)} s)`,
          );
        }
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
    if (values.keep) console.log(`kept ${url.toString().replace(/:[^:@/]*@/, ':***@')}`);
    else await admin.query(`drop database if exists ${name} with (force)`);
    await admin.end();
  }
}

if (!existsSync('dist/revocation/crl-builder.js'))
  throw new Error('run `npm run build` first (the child runs dist/)');
await main();
