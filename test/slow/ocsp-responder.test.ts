import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { AsnConvert } from '@peculiar/asn1-schema';
import * as x509 from '@peculiar/x509';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { run as ocspResponderCommand } from '../../src/cli/commands/ocsp-responder.ts';
import { initDataDir } from '../../src/cli/init.ts';
import { type Serving, serveDataDir } from '../../src/cli/serve.ts';
import { fixedClock } from '../../src/lib/clock.ts';
import { readCertificateSpki } from '../../src/revocation/issuer.ts';
import { hasTool } from '../helpers/tools.ts';
import { buildOcspRequest, decodeOcspResponse } from '../revocation/helpers/ocsp.ts';
import type { TestCa } from '../revocation/helpers/pki.ts';

/**
 * Delegated OCSP responders on the real service (issue #27): `signet init` makes one for
 * dev-intermediate; the server re-issues its certificate for the same key once half its validity
 * has passed (a fake clock moves four days on), with no operator; `signet ocsp-responder rotate`
 * (officer PIN) makes a new key; openssl verifies every response with only the root as anchor.
 */
const execFileAsync = promisify(execFile);
const DAY = 86_400_000;

describe.skipIf(!hasTool('openssl', ['version']))('delegated OCSP responders on the real service', () => {
  let dir: string;
  let dataDir: string;
  let serving: Serving | undefined;
  const clock = fixedClock(new Date());
  let rootFile: string;
  let intermediateFile: string;

  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'signet-ocsp-responder-'));
    dataDir = path.join(dir, 'data');
    const init = await initDataDir({ dataDir, port: 0, publicUrl: 'http://127.0.0.1:8080', log: () => {} });
    rootFile = init.rootCertificateFile;
    intermediateFile = path.join(dataDir, 'certs', 'dev-intermediate.pem');
    process.env.SIGNET_LOG_LEVEL = 'silent';
  }, 180_000);

  afterAll(async () => {
    await serving?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  /** A response signed now (a nonce: never a pre-signed one), for the intermediate's own certificate. */
  async function respond(name: string) {
    const intermediate = new x509.X509Certificate(readFileSync(intermediateFile, 'utf8'));
    // Any serial the CA stored will do: the responder's own certificate is one.
    const [responder] = await serving!.runtime.repositories.ocspResponders.listForIssuer('dev-intermediate');
    const serial = new X509Certificate(Buffer.from(responder!.certificateDer)).serialNumber.toLowerCase();
    const request = buildOcspRequest({
      certIds: [{ issuer: { certificate: intermediate } as TestCa, serial }],
      nonce: Uint8Array.of(1, 2, 3),
    });
    const answer = await serving!.runtime.revocation!.ocsp.answer(request);
    expect(answer.status).toBe('successful');
    const file = path.join(dir, `${name}.der`);
    writeFileSync(file, answer.der);
    const { basic } = decodeOcspResponse(answer.der);
    const certificate = new X509Certificate(Buffer.from(AsnConvert.serialize(basic!.certs![0]!)));
    const { stdout, stderr } = await execFileAsync('openssl', [
      'ocsp',
      '-respin',
      file,
      '-CAfile',
      rootFile,
      '-issuer',
      intermediateFile,
      '-attime',
      String(Math.floor(clock.now().getTime() / 1000)),
    ]);
    return { certificate, verify: `${stdout}${stderr}` };
  }

  it('renews the responder certificate for the same key past half its validity, with a fake clock', async () => {
    serving = await serveDataDir({ dataDir, port: 0, clock });
    const responders = serving.runtime.repositories.ocspResponders;
    const first = (await responders.findActive('dev-intermediate', clock.now()))!;
    expect(first.notAfter.getTime() - first.notBefore.getTime()).toBeGreaterThan(7 * DAY - 120_000);
    const before = await respond('before');
    expect(before.verify).toContain('Response verify OK');
    expect(Buffer.from(before.certificate.raw).equals(Buffer.from(first.certificateDer))).toBe(true);

    clock.advance(3 * DAY);
    expect(await serving.runtime.revocation!.ocspResponders.renewDue()).toBe(0);
    clock.advance(DAY);
    expect(await serving.runtime.revocation!.ocspResponders.renewDue()).toBe(1);
    const second = (await responders.findActive('dev-intermediate', clock.now()))!;
    expect(second.id).not.toBe(first.id);
    expect(second.keyUri).toBe(first.keyUri);
    expect(readCertificateSpki(second.certificateDer)).toEqual(readCertificateSpki(first.certificateDer));
    expect(second.notAfter.getTime()).toBeGreaterThan(first.notAfter.getTime());
    expect((await responders.get(first.id))!.status).toBe('retired');
    const after = await respond('after');
    expect(after.verify).toContain('Response verify OK');
    expect(Buffer.from(after.certificate.raw).equals(Buffer.from(second.certificateDer))).toBe(true);
    await serving.stop();
    serving = undefined;
  }, 120_000);

  it('rotates to a new key with the officer PIN, and the server signs with it', async () => {
    const pinFile = path.join(dataDir, 'secrets', 'offline', 'pin-issuing-officer');
    const lines: string[] = [];
    const log = console.log;
    console.log = (line: string) => lines.push(line);
    try {
      expect(
        await ocspResponderCommand([
          'rotate',
          '--issuer',
          'dev-intermediate',
          '--pin-file',
          pinFile,
          '--data',
          dataDir,
        ]),
      ).toBe(0);
    } finally {
      console.log = log;
    }
    expect(lines.join('\n')).toMatch(
      /dev-intermediate-ocsp-\S+: key hsm:partition=issuing;label=dev-intermediate-ocsp-\d{14}/,
    );
    serving = await serveDataDir({ dataDir, port: 0 });
    clock.set(new Date());
    const rotated = await respond('rotated');
    expect(rotated.verify).toContain('Response verify OK');
    const active = (await serving.runtime.repositories.ocspResponders.findActive('dev-intermediate'))!;
    expect(active.keyUri).toMatch(/label=dev-intermediate-ocsp-\d{14}$/);
    expect(Buffer.from(rotated.certificate.raw).equals(Buffer.from(active.certificateDer))).toBe(true);
  }, 120_000);

  it('refuses to rotate with a wrong officer PIN', async () => {
    await serving?.stop();
    serving = undefined;
    const wrong = path.join(dir, 'wrong-pin');
    writeFileSync(wrong, 'not-the-pin\n');
    await expect(
      ocspResponderCommand([
        'rotate',
        '--issuer',
        'dev-intermediate',
        '--pin-file',
        wrong,
        '--data',
        dataDir,
      ]),
    ).rejects.toThrow(/pin_incorrect/);
  }, 120_000);
});
