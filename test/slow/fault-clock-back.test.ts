import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { X509Crl } from '@peculiar/x509';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initDataDir } from '../../src/cli/init.ts';
import { hasTool } from '../helpers/tools.ts';
import { crlFacts, freePort, makeCsrDer, type Node, sleep, startNode } from './helpers/faults.ts';

/**
 * Issue #29, faults: the clock of a running node jumps backwards (an NTP step, an operator's
 * mistake). The node runs under Debian's faketime (libfaketime), its offset read from a file the
 * test rewrites: `faketime` sets LD_PRELOAD, and FAKETIME is then unset so that the library reads
 * FAKETIME_TIMESTAMP_FILE instead of a fixed offset. CRL numbers and thisUpdate of every CRL the
 * node serves never go backwards, and revocations made after the jump still reach the CRL.
 */
const available = hasTool('faketime', ['-f', '+0s', 'true']) && hasTool('openssl', ['version']);

describe.skipIf(!available)('the clock of a node jumps backwards', () => {
  let dir: string;
  let dataDir: string;
  let apiKey: string;
  let node: Node | undefined;
  const offsetFile = () => path.join(dir, 'faketime');

  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'signet-fault-clock-'));
    dataDir = path.join(dir, 'data');
    await initDataDir({ dataDir, port: 8080, publicUrl: 'http://127.0.0.1:8080' });
    apiKey = readFileSync(path.join(dataDir, 'secrets', 'admin-api-key'), 'utf8').trim();
  }, 120_000);

  afterAll(async () => {
    await node?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('never serves a CRL with a lower number or an earlier thisUpdate than one served before', async () => {
    writeFileSync(offsetFile(), '+0\n');
    const env: NodeJS.ProcessEnv = { ...process.env, FAKETIME_TIMESTAMP_FILE: offsetFile() };
    // The embedded database: PGlite's now() is the faked clock too, as one machine's would be.
    delete env.DATABASE_URL;
    // Timers run on the monotonic clock, which a wall-clock step does not move; the offset file is
    // read again at most every second.
    env.FAKETIME_DONT_FAKE_MONOTONIC = '1';
    env.FAKETIME_CACHE_DURATION = '1';
    node = await startNode({
      dataDir,
      port: await freePort(),
      env,
      wrapper: ['faketime', '-f', '+0s', 'env', '-u', 'FAKETIME'],
    });
    const served: { number: bigint; thisUpdate: Date }[] = [];
    const api = (pathname: string, init: RequestInit) =>
      fetch(`${node!.url}${pathname}`, {
        ...init,
        headers: { authorization: `Bearer ${apiKey}`, ...init.headers },
      });
    const csr = makeCsrDer(dir, 'clock.example.com');

    /** Revokes a new certificate and waits until the served CRL lists it; returns that CRL. */
    async function revokeAndWait(): Promise<void> {
      const issued = await api('/v1/certificates?policy=web-server', {
        method: 'POST',
        headers: { 'content-type': 'application/pkcs10' },
        body: csr,
      });
      expect(issued.status).toBe(201);
      const { serialNumber } = (await issued.json()) as { serialNumber: string };
      const revoked = await api(`/v1/certificates/${serialNumber}/revoke`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ reason: 'superseded' }),
      });
      expect(revoked.status).toBe(200);
      const deadline = Date.now() + 15_000;
      for (;;) {
        const response = await fetch(`${node!.url}/crl/dev-intermediate.crl`);
        const der = new Uint8Array(await response.arrayBuffer());
        served.push(crlFacts(der));
        if (new X509Crl(der).entries.some((e) => e.serialNumber.toLowerCase() === serialNumber)) return;
        if (Date.now() > deadline) throw new Error(`the CRL never listed ${serialNumber}:\n${node!.log()}`);
        await sleep(100);
      }
    }

    await revokeAndWait();
    await sleep(1_100);
    await revokeAndWait();
    const beforeJump = served.at(-1)!;
    // The jump: two hours back, then a day back.
    for (const offset of ['-2h', '-1d']) {
      writeFileSync(offsetFile(), `${offset}\n`);
      await sleep(1_500);
      await revokeAndWait();
      await sleep(1_100);
      await revokeAndWait();
    }
    // The node's clock did go back (the Date of its answers says so), else this proves nothing.
    const answered = (await fetch(`${node.url}/healthz`)).headers.get('date');
    expect(Date.now() - new Date(answered ?? 0).getTime()).toBeGreaterThan(20 * 3600_000);
    const lastCrl = served.at(-1)!;
    expect(lastCrl.number).toBeGreaterThan(beforeJump.number);
    for (let i = 1; i < served.length; i++) {
      expect(served[i]!.number >= served[i - 1]!.number, `CRL number went back at ${i}`).toBe(true);
      expect(served[i]!.thisUpdate.getTime(), `thisUpdate went back at ${i}`).toBeGreaterThanOrEqual(
        served[i - 1]!.thisUpdate.getTime(),
      );
    }
  }, 180_000);
});
