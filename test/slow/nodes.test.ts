import { spawnSync } from 'node:child_process';
import { createHash, X509Certificate } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { X509Crl } from '@peculiar/x509';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { postgresAvailable } from '../helpers/database.ts';
import { newKeyAndCsr } from '../helpers/openssl-csr.ts';
import { hasTool } from '../helpers/tools.ts';
import { createNodes, type Nodes } from './helpers/nodes.ts';

/**
 * Issue #29, several nodes: two `signet serve --workers 2` on one PostgreSQL database and one
 * partition cluster (each node spawns one member; both list both). Unique serials from parallel
 * issuance on both; a revocation on one node in the other's OCSP within 1 s and in its CRL within
 * the documented bound; CRL numbers that only increase, one CRL per number; an API key revoked on
 * one node refused by both within 1 s; rate limits per credential and per address across nodes;
 * OCSP signatures on the spot (nonces) per address across nodes; /metrics summed over a node's workers; /readyz naming a member it cannot use.
 */
const CI = process.env.CI === 'true';
const haveOpenssl = hasTool('openssl', ['version']);
const PER_MINUTE = 120;
const FAILED_AUTH_PER_MINUTE = 30;
const OCSP_NONCE_PER_MINUTE = 20;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe.skipIf(!postgresAvailable() || (!haveOpenssl && !CI))(
  'two nodes on one PostgreSQL and one partition cluster',
  () => {
    let cluster: Nodes;
    let a: Nodes['nodes'][number];
    let b: Nodes['nodes'][number];
    let csr: Buffer;
    let issuerPem: string;
    const call = (url: string, init: RequestInit & { key?: string } = {}) =>
      fetch(url, {
        ...init,
        headers: {
          // A fresh connection per request, so that requests spread over a node's workers.
          connection: 'close',
          authorization: `Bearer ${init.key ?? cluster.apiKey}`,
          ...(init.headers as Record<string, string>),
        },
      });

    beforeAll(async () => {
      cluster = await createNodes({
        rateLimit: { perMinute: PER_MINUTE, failedAuthPerMinute: FAILED_AUTH_PER_MINUTE },
        configure: (config) => {
          const ocsp = (config.ocsp ?? {}) as Record<string, unknown>;
          config.ocsp = { ...ocsp, nonceRateLimit: { perMinute: OCSP_NONCE_PER_MINUTE } };
        },
      });
      [a, b] = cluster.nodes as [typeof a, typeof b];
      await a.start();
      // Node B's member is not served yet: node A is ready on its own member and says which it lacks.
      const readyA = (await (await fetch(`${a.url}/readyz`)).json()) as { checks: Record<string, string> };
      expect(readyA.checks).toMatchObject({ database: 'ok', partition: 'ok', keys: 'ok' });
      expect(readyA.checks.members).toContain(`${b.memberUrl} down`);
      await b.start();
      csr = newKeyAndCsr({
        keyFile: path.join(cluster.dir, 'k.pem'),
        subject: '/CN=nodes.example.com',
        sans: ['DNS:nodes.example.com'],
      });
      const der = Buffer.from(
        await (await fetch(`${a.url}/v1/issuers/dev-intermediate/certificate`)).arrayBuffer(),
      );
      issuerPem = new X509Certificate(der).toString();
      writeFileSync(path.join(cluster.dir, 'issuer.pem'), issuerPem);
    }, 240_000);

    afterAll(async () => {
      await cluster?.close();
    });

    const issue = async (url: string) => {
      const response = await call(`${url}/v1/certificates?policy=web-server`, {
        method: 'POST',
        headers: { 'content-type': 'application/pkcs10' },
        body: csr,
      });
      return { status: response.status, body: (await response.json()) as { serialNumber: string } };
    };
    const revoke = async (url: string, serial: string) =>
      (
        await call(`${url}/v1/certificates/${serial}/revoke`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ reason: 'keyCompromise' }),
        })
      ).status;

    it('uses both members from both nodes, and /readyz says so', async () => {
      for (const node of [a, b]) {
        let checks: Record<string, string> = {};
        for (let i = 0; i < 50; i++) {
          checks = ((await (await fetch(`${node.url}/readyz`)).json()) as { checks: Record<string, string> })
            .checks;
          if (checks.members === 'ok') break;
          await sleep(200);
        }
        expect(checks).toEqual({ database: 'ok', partition: 'ok', members: 'ok', keys: 'ok' });
      }
    });

    let serials: string[] = [];
    it('issues from both nodes in parallel with unique serials', async () => {
      const results = await Promise.all(Array.from({ length: 40 }, (_, i) => issue(i % 2 ? b.url : a.url)));
      expect(results.map((r) => r.status)).toEqual(Array(40).fill(201));
      serials = results.map((r) => r.body.serialNumber);
      expect(new Set(serials).size).toBe(40);
    });

    it("shows a revocation on one node in the other node's OCSP within 1 s and its CRL within the bound", async () => {
      const ocspStatus = (url: string, serial: string) => {
        const out = spawnSync(
          'openssl',
          [
            'ocsp',
            '-issuer',
            path.join(cluster.dir, 'issuer.pem'),
            '-serial',
            `0x${serial}`,
            '-url',
            `${url}/ocsp`,
            '-no_nonce',
            '-noverify',
          ],
          { encoding: 'utf8' },
        );
        return /: (good|revoked|unknown)/.exec(out.stdout)?.[1] ?? `error ${out.stderr}`;
      };
      const serial = serials[0]!;
      expect(ocspStatus(b.url, serial)).toBe('good'); // now cached on node B
      expect(await revoke(a.url, serial)).toBe(200);
      const revokedAt = Date.now();
      let ocspSeen = Number.POSITIVE_INFINITY;
      let crlSeen = Number.POSITIVE_INFINITY;
      while (
        Date.now() - revokedAt < 5000 &&
        (ocspSeen === Number.POSITIVE_INFINITY || crlSeen === Number.POSITIVE_INFINITY)
      ) {
        if (ocspSeen === Number.POSITIVE_INFINITY && ocspStatus(b.url, serial) === 'revoked')
          ocspSeen = Date.now() - revokedAt;
        if (crlSeen === Number.POSITIVE_INFINITY && (await crlOf(b.url)).serials.has(serial))
          crlSeen = Date.now() - revokedAt;
        await sleep(25);
      }
      console.log(
        `revocation on node A: in node B's OCSP after ${ocspSeen} ms, in its CRL after ${crlSeen} ms`,
      );
      expect(ocspSeen).toBeLessThanOrEqual(1000);
      // README "Several nodes": on the CRL within crl.debounce (here 100 ms) plus the time to sign it.
      expect(crlSeen).toBeLessThanOrEqual(2000);
    });

    it('numbers CRLs strictly upwards, one CRL per number, whichever node writes and serves them', async () => {
      const seen = new Map<bigint, string>();
      const byNode = { a: [] as bigint[], b: [] as bigint[] };
      let polling = true;
      const poll = (async () => {
        while (polling) {
          for (const [name, node] of [
            ['a', a],
            ['b', b],
          ] as const) {
            const crl = await crlOf(node.url);
            const known = seen.get(crl.number);
            expect(known === undefined || known === crl.sha256, `two CRLs numbered ${crl.number}`).toBe(true);
            seen.set(crl.number, crl.sha256);
            byNode[name].push(crl.number);
          }
          await sleep(20);
        }
      })();
      // Revocations through both nodes, close together.
      for (let i = 1; i <= 8; i++) {
        expect(await revoke(i % 2 ? a.url : b.url, serials[i]!)).toBe(200);
        await sleep(60);
      }
      await sleep(1000);
      polling = false;
      await poll;
      for (const numbers of Object.values(byNode)) {
        for (let i = 1; i < numbers.length; i++) expect(numbers[i]! >= numbers[i - 1]!).toBe(true);
      }
      expect(seen.size).toBeGreaterThan(1);
      const last = await crlOf(b.url);
      for (const serial of serials.slice(0, 9)) expect(last.serials.has(serial)).toBe(true);
    });

    // Failed authentication from this address (127.0.0.1) all along: a revoked key counts too.
    let failures = 0;
    let firstFailureAt = 0;
    const countFailures = (statuses: number[]) => {
      const now = statuses.filter((s) => s === 401).length;
      if (now > 0 && failures === 0) firstFailureAt = Date.now();
      failures += now;
    };

    it('refuses an API key revoked on one node on every node within 1 s', async () => {
      const created = await call(`${a.url}/v1/apikeys`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ roles: ['auditor'], description: 'nodes test' }),
      });
      expect(created.status).toBe(201);
      const { id, key } = (await created.json()) as { id: string; key: string };
      const statuses = async () =>
        Promise.all(
          [a.url, b.url, a.url, b.url, a.url, b.url].map(
            async (url) => (await call(`${url}/v1/policies`, { key })).status,
          ),
        );
      expect(await statuses()).toEqual(Array(6).fill(200)); // in every worker's memory now
      expect((await call(`${b.url}/v1/apikeys/${id}`, { method: 'DELETE' })).status).toBeLessThan(300);
      const revokedAt = Date.now();
      let refusedAfter = Number.POSITIVE_INFINITY;
      while (Date.now() - revokedAt < 3000) {
        const now = await statuses();
        countFailures(now);
        if (now.every((s) => s === 401)) {
          refusedAfter = Date.now() - revokedAt;
          break;
        }
      }
      console.log(
        `API key revoked on node B: refused by every worker of both nodes after ${refusedAfter} ms`,
      );
      expect(refusedAfter).toBeLessThanOrEqual(1000);
    });

    it('holds a credential to its rate limit across both nodes, not once per node or worker', async () => {
      const created = await call(`${a.url}/v1/apikeys`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ roles: ['auditor'], description: 'rate limit' }),
      });
      const { key } = (await created.json()) as { key: string };
      const started = Date.now();
      const results: { node: 'a' | 'b'; status: number }[] = [];
      for (let round = 0; round < 15; round++) {
        results.push(
          ...(await Promise.all(
            Array.from({ length: 20 }, async (_, i) => {
              const node = i % 2 ? 'b' : 'a';
              const response = await call(`${(node === 'a' ? a : b).url}/v1/policies`, { key });
              await response.arrayBuffer();
              return { node, status: response.status } as const;
            }),
          )),
        );
      }
      const seconds = (Date.now() - started) / 1000;
      expect(results.filter((r) => r.status !== 200 && r.status !== 429)).toEqual([]);
      const allowed = results.filter((r) => r.status === 200);
      console.log(
        `rate limit ${PER_MINUTE}/min over 2 nodes x 2 workers: ${allowed.length} of 300 allowed in ${seconds.toFixed(1)} s`,
      );
      // The bucket plus its refill meanwhile; per node it would be twice, per worker four times.
      expect(allowed.length).toBeLessThanOrEqual(PER_MINUTE + Math.ceil((seconds * PER_MINUTE) / 60));
      // Leases that lapse unspent cost at most one lease (12 tokens at 120/min: 1) per other worker.
      expect(allowed.length).toBeGreaterThanOrEqual(PER_MINUTE - 4);
      expect(allowed.filter((r) => r.node === 'a').length).toBeGreaterThan(0);
      expect(allowed.filter((r) => r.node === 'b').length).toBeGreaterThan(0);
    });

    it('holds the OCSP nonce budget of an address across both nodes', async () => {
      // Each request carries a fresh nonce (openssl's default): signed on the spot while the
      // address has budget, then answered with the pre-signed response without the nonce.
      const issued = await issue(a.url);
      expect(issued.status).toBe(201);
      const serial = issued.body.serialNumber;
      const started = Date.now();
      let echoed = 0;
      for (let i = 0; i < 3 * OCSP_NONCE_PER_MINUTE; i++) {
        const node = [a, b][i % 2]!;
        const out = spawnSync(
          'openssl',
          [
            'ocsp',
            '-issuer',
            path.join(cluster.dir, 'issuer.pem'),
            '-serial',
            `0x${serial}`,
            '-url',
            `${node.url}/ocsp`,
            '-noverify',
            '-resp_text',
          ],
          { encoding: 'utf8' },
        );
        expect(out.stdout, out.stderr).toMatch(/: good/);
        // The response's extensions as openssl prints them (-resp_text): the nonce when echoed.
        if (/OCSP Nonce/.test(out.stdout)) echoed += 1;
      }
      const seconds = (Date.now() - started) / 1000;
      console.log(
        `OCSP nonce budget ${OCSP_NONCE_PER_MINUTE}/min over 2 nodes x 2 workers: ${echoed} of ${3 * OCSP_NONCE_PER_MINUTE} signed with the nonce in ${seconds.toFixed(1)} s`,
      );
      expect(echoed).toBeGreaterThanOrEqual(OCSP_NONCE_PER_MINUTE);
      expect(echoed).toBeLessThanOrEqual(
        OCSP_NONCE_PER_MINUTE + Math.ceil((seconds * OCSP_NONCE_PER_MINUTE) / 60),
      );
    });

    it("sums a node's counters over its workers in one scrape", async () => {
      const created = await call(`${a.url}/v1/apikeys`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ roles: ['auditor'], description: 'metrics' }),
      });
      const { key } = (await created.json()) as { key: string };
      const answered = async (node: typeof a) => {
        const text = await (await call(`${node.url}/metrics`)).text();
        const line = text
          .split('\n')
          .find(
            (l) =>
              l.startsWith('signet_http_request_duration_seconds_count{') &&
              l.includes('route="/v1/policies"') &&
              l.includes('status="200"'),
          );
        return Number(line?.split(' ').pop() ?? 0);
      };
      for (const node of [a, b]) {
        const before = await answered(node);
        // A fresh connection each: the node's primary hands them to its two workers in turn.
        const statuses = await Promise.all(
          Array.from({ length: 20 }, async () => (await call(`${node.url}/v1/policies`, { key })).status),
        );
        expect(statuses).toEqual(Array(20).fill(200));
        // One scrape (answered by one worker) counts all 20, whichever worker answered them.
        expect((await answered(node)) - before).toBe(20);
      }
    });

    it('holds the failed-authentication budget of an address across both nodes', async () => {
      const statuses: number[] = [];
      for (let i = 0; i < 3 * FAILED_AUTH_PER_MINUTE; i++) {
        const response = await call(`${(i % 2 ? b : a).url}/v1/policies`, { key: 'sk_not_a_key' });
        statuses.push(response.status);
      }
      expect(statuses.filter((s) => s !== 401 && s !== 429)).toEqual([]);
      countFailures(statuses);
      // The budget plus its refill since the first failure, never once per node or per worker.
      const seconds = (Date.now() - firstFailureAt) / 1000;
      console.log(
        `failed authentication ${FAILED_AUTH_PER_MINUTE}/min over 2 nodes x 2 workers: ${failures} answered 401 in ${seconds.toFixed(1)} s`,
      );
      expect(failures).toBeLessThanOrEqual(
        FAILED_AUTH_PER_MINUTE + Math.ceil((seconds * FAILED_AUTH_PER_MINUTE) / 60),
      );
      expect(failures).toBeGreaterThanOrEqual(FAILED_AUTH_PER_MINUTE);
      expect(statuses.at(-1)).toBe(429);
      // Both nodes refuse the address now, each of its workers included.
      for (const node of [a, b, a, b]) {
        expect((await call(`${node.url}/v1/policies`, { key: 'sk_not_a_key' })).status).toBe(429);
      }
    });
  },
);

/** A node's served CRL of dev-intermediate: its number, SHA-256 and revoked serials (lowercase hex). */
async function crlOf(url: string): Promise<{ number: bigint; sha256: string; serials: Set<string> }> {
  const response = await fetch(`${url}/crl/dev-intermediate.crl`, { headers: { connection: 'close' } });
  const der = new Uint8Array(await response.arrayBuffer());
  const crl = new X509Crl(der);
  const extension = crl.getExtension('2.5.29.20');
  if (!extension) throw new Error('CRL without a CRL number');
  // RFC 5280 §5.2.3: an INTEGER; the extension's value is its DER.
  const value = new Uint8Array(extension.value);
  let number = 0n;
  for (const byte of value.subarray(2, 2 + value[1]!)) number = (number << 8n) | BigInt(byte);
  return {
    number,
    sha256: createHash('sha256').update(der).digest('hex'),
    serials: new Set(crl.entries.map((e) => e.serialNumber.toLowerCase().replace(/^(00)+/, ''))),
  };
}
