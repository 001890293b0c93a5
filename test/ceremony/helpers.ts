import { spawnSync } from 'node:child_process';
import { generateKeyPairSync, type webcrypto } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RemotePartition } from '../../src/hsm/client.ts';
import { initPartition } from '../../src/hsm/custody/index.ts';
import { startPartitionProcess, temporarySocketPath } from '../../src/hsm/process.ts';
import { createPartitionCrypto, getCryptoKey } from '../../src/hsm/webcrypto.ts';
import { lintCertificate, signCertificate } from '../../src/issuance/token.ts';
import { fixedClock } from '../../src/lib/clock.ts';
import { runLint } from '../../src/lint/lint.ts';
import { ecdsaP1363ToDer } from '../../src/x509/algorithms.ts';
import { assembleCertificate, buildTbsCertificate, generateSerial } from '../../src/x509/certificate.ts';
import { createIssuerContext } from '../../src/x509/issuer.ts';
import { certificateToPem } from '../../src/x509/pem.ts';
import type { CertificateTemplate, San } from '../../src/x509/types.ts';

export const EXAMPLES = new URL('../../ceremonies/examples/', import.meta.url).pathname;
export const OFFICER_PIN = 'officer-pin-0123';
export const USER_PIN = 'user-pin-456789';

export function tempDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), `signet-${prefix}-`));
}

/** Runs the real CLI in its own process, as an operator would. */
export function signet(args: string[], { timeout = 120_000 }: { timeout?: number } = {}) {
  const result = spawnSync(process.execPath, ['bin/signet.js', ...args], { encoding: 'utf8', timeout });
  return {
    status: result.status,
    stdout: result.stdout,
    stderr: result.stderr,
    output: result.stdout + result.stderr,
  };
}

export function openssl(args: string[]) {
  const result = spawnSync('openssl', args, { encoding: 'utf8' });
  return { status: result.status, output: result.stdout + result.stderr };
}

/** Writes the two PIN files a ceremony reads. */
export function pinFiles(dir: string): { officer: string; user: string } {
  const officer = join(dir, 'officer.pin');
  const user = join(dir, 'user.pin');
  writeFileSync(officer, `${OFFICER_PIN}\n`, { mode: 0o600 });
  writeFileSync(user, `${USER_PIN}\n`, { mode: 0o600 });
  return { officer, user };
}

/** An online (issuing) partition sealed under one secret, made with the HSM module's own initPartition. */
export async function createOnlinePartition(dir: string, name: string, secretFile: string): Promise<void> {
  const secrets = await initPartition({
    dir,
    name,
    sealing: { kind: 'secret' },
    officerPin: OFFICER_PIN,
    userPin: USER_PIN,
  });
  writeFileSync(secretFile, secrets.secret!, { mode: 0o600 });
}

/** A served partition (own process), unsealed, with a client logged in as the crypto user. */
export async function servePartition(
  dir: string,
  name: string,
  unseal: { secret?: Uint8Array; shares?: Uint8Array[] },
) {
  const socket = await temporarySocketPath();
  const child = await startPartitionProcess({ socketPath: socket.socketPath, dir, name });
  const control = await RemotePartition.connect({ socketPath: socket.socketPath });
  await control.unseal(unseal);
  await control.close();
  const client = await RemotePartition.connect({
    socketPath: socket.socketPath,
    onConnect: async (p) => {
      await p.login({ user: 'ca', pin: USER_PIN });
    },
  });
  return {
    client,
    async stop() {
      await client.close();
      await child.stop();
      await socket.cleanup();
    },
  };
}

export interface LeafOptions {
  intermediatePem: string;
  keys: RemotePartition;
  keyLabel: string;
  sans: San[];
  /** When the certificate goes around the linter (to show what openssl makes of it). */
  skipLint?: boolean;
  at?: string;
}

/**
 * A TLS leaf signed by the intermediate's key through the partition, built the way the online CA
 * builds one (src/x509's buildTbsCertificate, src/lint's token). Returns the PEM and the lint findings.
 */
export async function signLeaf(options: LeafOptions) {
  const issuer = createIssuerContext({ id: 'intermediate', certificate: options.intermediatePem });
  const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const template: CertificateTemplate = {
    policy: 'test',
    issuer: 'intermediate',
    subject: [],
    sans: options.sans,
    publicKey: new Uint8Array(publicKey.export({ type: 'spki', format: 'der' })),
    keyAlgorithm: 'ecdsa-p256',
    validitySeconds: 30 * 86_400,
    backdateSeconds: 0,
    keyUsage: ['digitalSignature'],
    extendedKeyUsage: ['serverAuth'],
    policyOids: [],
    ocspMustStaple: false,
    passthroughExtensions: [],
  };
  const tbs = buildTbsCertificate(template, issuer, {
    serial: generateSerial(),
    clock: fixedClock(options.at ?? '2026-06-01T00:00:00Z'),
  });
  const findings = runLint(tbs.der, { issuer, profile: 'leaf' });
  if (options.skipLint) {
    const raw = await options.keys.sign({
      key: { label: options.keyLabel },
      mechanism: 'ecdsa-sha256',
      purpose: 'certificate',
      data: tbs.der,
    });
    const der = assembleCertificate(tbs.der, issuer.signatureAlgorithm.identifier, ecdsaP1363ToDer(raw));
    return { pem: certificateToPem(der), findings };
  }
  const lint = lintCertificate(tbs.der, { issuer, profile: 'leaf' });
  if (!lint.ok) throw new Error(`leaf refused by lint: ${JSON.stringify(lint.findings)}`);
  const key = await getCryptoKey(options.keys, { label: options.keyLabel }, { purpose: 'certificate' });
  const der = await signCertificate(lint.token, {
    crypto: createPartitionCrypto(options.keys),
    key: key as unknown as webcrypto.CryptoKey,
  });
  return { pem: certificateToPem(der), findings };
}
