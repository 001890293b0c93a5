/**
 * Shared by the benchmarks: what a run leaves behind (child processes, clusters, folders) cleaned
 * up however it ends, a free loopback port, and a throwaway PostgreSQL 15 cluster on
 * 127.0.0.1 ($DATABASE_URL wins when set). Initdb refuses root, so as root the cluster runs as
 * the `postgres` user. fsync stays on: the benchmarks measure durable commits, as production
 * has them.
 */
import { type ChildProcess, execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chownSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { CertID, id_pkix_ocsp_nonce, OCSPRequest, Request, TBSRequest } from '@peculiar/asn1-ocsp';
import { AsnConvert, OctetString } from '@peculiar/asn1-schema';
import { AlgorithmIdentifier, Certificate, Extension } from '@peculiar/asn1-x509';

/**
 * What a benchmark started and must not leave running or on disk: children are killed, stops
 * called (a daemonised PostgreSQL cluster is not a child), folders removed, at exit, on SIGINT
 * and SIGTERM, or when the script calls cleanup() itself.
 */
export const scratch = {
  children: new Set<ChildProcess>(),
  stops: new Set<() => void>(),
  folders: [] as string[],
  /** Tracks a child until it exits. */
  track(child: ChildProcess): ChildProcess {
    scratch.children.add(child);
    child.once('exit', () => scratch.children.delete(child));
    return child;
  },
  tempDir(prefix: string): string {
    const dir = mkdtempSync(path.join(tmpdir(), prefix));
    scratch.folders.push(dir);
    return dir;
  },
  cleanup(): void {
    for (const child of scratch.children)
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    for (const stop of scratch.stops) {
      try {
        stop();
      } catch {
        // Already stopped.
      }
    }
    scratch.stops.clear();
    for (const dir of scratch.folders.splice(0)) rmSync(dir, { recursive: true, force: true });
  },
};
process.on('exit', scratch.cleanup);
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    scratch.cleanup();
    process.exit(130);
  });
}

export async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer();
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/**
 * Undefined when there is neither $DATABASE_URL nor a PostgreSQL 15 installation. `pid` is the
 * postmaster's (its backends are its children), for CPU read from /proc; unknown for $DATABASE_URL.
 */
export async function throwawayPostgres(): Promise<
  { url: string; stop(): void; pid?: () => number | undefined; dataDir?: string } | undefined
> {
  if (process.env.DATABASE_URL) return { url: process.env.DATABASE_URL, stop() {} };
  const bin = '/usr/lib/postgresql/15/bin';
  if (spawnSync(`${bin}/initdb`, ['--version']).status !== 0) return undefined;
  const dir = mkdtempSync(path.join(tmpdir(), 'signet-bench-pg-'));
  const asPostgres = process.getuid?.() === 0 ? ['runuser', '-u', 'postgres', '--'] : [];
  if (asPostgres.length) {
    const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }));
    const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }));
    chownSync(dir, uid, gid);
  }
  const run = (cmd: string, args: string[]) =>
    execFileSync(asPostgres[0] ?? cmd, asPostgres.length ? [...asPostgres.slice(1), cmd, ...args] : args, {
      stdio: 'ignore',
    });
  const port = await freePort();
  run(`${bin}/initdb`, ['-D', `${dir}/data`, '-A', 'trust', '-U', 'signet']);
  run(`${bin}/pg_ctl`, [
    '-D',
    `${dir}/data`,
    '-l',
    `${dir}/log`,
    '-w',
    '-o',
    `-c listen_addresses=127.0.0.1 -p ${port} -k ${dir}`,
    'start',
  ]);
  let stopped = false;
  return {
    url: `postgres://signet@127.0.0.1:${port}/postgres`,
    dataDir: `${dir}/data`,
    pid: () => {
      try {
        return Number(readFileSync(`${dir}/data/postmaster.pid`, 'utf8').split('\n')[0]);
      } catch {
        return undefined;
      }
    },
    stop() {
      if (stopped) return;
      stopped = true;
      run(`${bin}/pg_ctl`, ['-D', `${dir}/data`, '-m', 'immediate', 'stop']);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** What a SHA-1 CertID names of its issuer (RFC 6960 §4.1.1), as `openssl ocsp` sends it. */
export interface OcspIssuerHashes {
  nameHash: Buffer;
  keyHash: Buffer;
}

export function ocspIssuerHashes(certificateDer: Uint8Array): OcspIssuerHashes {
  const certificate = AsnConvert.parse(certificateDer, Certificate);
  const sha1 = (bytes: Uint8Array) => createHash('sha1').update(bytes).digest();
  return {
    nameHash: sha1(new Uint8Array(AsnConvert.serialize(certificate.tbsCertificate.subject))),
    keyHash: sha1(new Uint8Array(certificate.tbsCertificate.subjectPublicKeyInfo.subjectPublicKey)),
  };
}

/** An OCSPRequest for one certificate (serial in hex), with a nonce (RFC 8954) or without. */
export function ocspRequestDer(issuer: OcspIssuerHashes, serialHex: string, nonce?: Uint8Array): Buffer {
  const request = new OCSPRequest({
    tbsRequest: new TBSRequest({
      requestList: [
        new Request({
          reqCert: new CertID({
            hashAlgorithm: new AlgorithmIdentifier({ algorithm: '1.3.14.3.2.26', parameters: null }),
            issuerNameHash: new OctetString(issuer.nameHash),
            issuerKeyHash: new OctetString(issuer.keyHash),
            serialNumber: Uint8Array.from(Buffer.from(serialHex, 'hex')).buffer,
          }),
        }),
      ],
      ...(nonce
        ? {
            requestExtensions: [
              new Extension({
                extnID: id_pkix_ocsp_nonce,
                critical: false,
                extnValue: new OctetString(AsnConvert.serialize(new OctetString(nonce))),
              }),
            ],
          }
        : {}),
    }),
  });
  return Buffer.from(AsnConvert.serialize(request));
}
