import { execFile } from 'node:child_process';
import { createPublicKey, verify } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it, test } from 'vitest';
import { openPartitionVault } from '../../../src/hsm/custody/index.ts';
import { keyForms, newPartition, tempDir } from './helpers.ts';
import { CA, OFFICER, type Served, secretFile, serve, signet, unsealWith } from './served.ts';

const CLIENT = fileURLToPath(new URL('./fixtures/ca-client.ts', import.meta.url));
const running: Served[] = [];
async function started(dir: string): Promise<Served> {
  const served = await serve(dir);
  running.push(served);
  return served;
}
afterEach(async () => {
  await Promise.all(running.splice(0).map((served) => served.stop()));
});

function filesUnder(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .map((name) => join(dir, name))
    .filter((path) => statSync(path).isFile());
}

async function privateKeysOf(dir: string, secret: string) {
  const folder = await openPartitionVault({ dir });
  await folder.unseal({ secret });
  const keys = await folder.store!.listKeys();
  await folder.close();
  return keys;
}

describe('key custody (issue #4)', () => {
  it('leaves no trace of a CA key outside the partition: folder, audit log, client heap and logs', async () => {
    const { dir, secrets } = await newPartition();
    const served = await started(dir);
    await unsealWith(served, secrets);
    const snapshot = join(tempDir(), 'client.heapsnapshot');
    const client = await promisify(execFile)(
      process.execPath,
      [
        '--import',
        'tsx',
        CLIENT,
        served.socketPath,
        secretFile(OFFICER.pin, 'o'),
        secretFile(CA.pin, 'c'),
        snapshot,
      ],
      { maxBuffer: 16 * 1024 * 1024, timeout: 120_000 },
    );
    expect(client.stdout).toContain('self-signature verifies: true');
    await running.pop()!.stop();

    const [key] = await privateKeysOf(dir, secrets.secret!);
    expect(key!.label).toBe('custody-root');
    // The certificate the client logged carries the public half of exactly this key.
    const pem = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(client.stdout)![0];
    expect(
      Buffer.from(
        new (await import('node:crypto')).X509Certificate(pem).publicKey.export({
          type: 'spki',
          format: 'der',
        }),
      ),
    ).toEqual(Buffer.from(key!.publicKey));
    const needles = keyForms(key!.privateKey);
    const haystacks: [string, Buffer][] = [
      ...filesUnder(dir).map((path): [string, Buffer] => [path, readFileSync(path)]),
      ['client heap snapshot', readFileSync(snapshot)],
      ['client stdout', Buffer.from(client.stdout)],
      ['client stderr', Buffer.from(client.stderr)],
      ['partition log', Buffer.from(served.logs.join('\n'))],
    ];
    expect(haystacks.some(([name]) => name.endsWith('audit.log'))).toBe(true);
    expect(readFileSync(snapshot).length).toBeGreaterThan(1_000_000);
    for (const [name, bytes] of haystacks) {
      for (const needle of needles)
        expect(bytes.includes(needle), `${name} holds the private key`).toBe(false);
    }
    // The search finds what is there: the key's label in the client's heap, its public key in the folder.
    expect(readFileSync(snapshot).includes(Buffer.from('custody-root'))).toBe(true);
    expect(
      readFileSync(join(dir, 'keys', `${key!.id}.key`)).includes(
        Buffer.from(Buffer.from(key!.publicKey).toString('base64')),
      ),
    ).toBe(true);
  });
});

describe('signet hsm audit verify', () => {
  async function partitionWithHistory() {
    const { dir, secrets } = await newPartition();
    const folder = await openPartitionVault({ dir });
    await folder.unseal({ secret: secrets.secret! });
    for (let i = 0; i < 5; i++) {
      await folder.audit.append({
        time: new Date().toISOString(),
        user: 'ca',
        op: 'sign',
        purpose: 'certificate',
        digest: 'cd'.repeat(32),
        result: 'ok',
      });
    }
    await folder.close();
    return dir;
  }
  const edit = (lines: string[]) => {
    lines[3] = lines[3]!.replace('"purpose":"certificate"', '"purpose":"crl"');
  };

  test.each([
    ['an edit', edit, /BROKEN \(edited, record 4, line 4\)/],
    ['a deletion', (lines: string[]) => void lines.splice(2, 1), /BROKEN \(deleted, record 3, line 3\)/],
    [
      'a reordering',
      (lines: string[]) => void lines.splice(1, 2, lines[2]!, lines[1]!),
      /BROKEN \(reordered, record 3, line 2\)/,
    ],
    ['a truncation', (lines: string[]) => void lines.splice(4), /BROKEN \(truncated, record 5/],
  ])('names the first broken record after %s and exits 1', async (_name, tamper, expected) => {
    const dir = await partitionWithHistory();
    const path = join(dir, 'audit.log');
    const lines = readFileSync(path, 'utf8').split('\n').slice(0, -1);
    tamper(lines);
    writeFileSync(path, lines.map((line) => `${line}\n`).join(''));
    const result = signet(['hsm', 'audit', 'verify', '--dir', dir]);
    expect(result.stdout).toMatch(expected);
    expect(result.code).toBe(1);
  });

  it('answers OK and exports JSON lines for an untouched log', async () => {
    const dir = await partitionWithHistory();
    const verified = signet(['hsm', 'audit', 'verify', '--dir', dir]);
    expect(verified.stdout).toMatch(/^OK: 6 records, signed head at record 6/);
    expect(verified.code).toBe(0);
    const out = join(tempDir(), 'audit.jsonl');
    const exported = signet(['hsm', 'audit', 'export', '--dir', dir, '--out', out]);
    expect(exported.code).toBe(0);
    const records = readFileSync(out, 'utf8')
      .trimEnd()
      .split('\n')
      .map((line) => JSON.parse(line));
    expect(records.map((r) => r.op)).toEqual(['initPartition', 'sign', 'sign', 'sign', 'sign', 'sign']);
    expect(signet(['hsm', 'audit', 'export', '--dir', dir, '--out', out]).code).toBe(1);
  });
});

describe('signet hsm backup, restore and sync', () => {
  it('clones a partition into another folder that signs with the same keys, and syncs keys created since', async () => {
    const { dir, secrets } = await newPartition();
    const source = await started(dir);
    await unsealWith(source, secrets);
    const original = await (await source.connect(OFFICER)).createKey({
      label: 'ca-2026',
      algorithm: 'ecdsa-p256',
    });

    const blob = join(tempDir(), 'partition.backup');
    const backup = signet(['hsm', 'backup', '--dir', dir, '--out', blob]);
    expect(backup.code).toBe(0);
    expect(statSync(blob).mode & 0o777).toBe(0o600);

    const clone = join(tempDir(), 'clone');
    const other = await newPartition();
    const refused = signet([
      'hsm',
      'restore',
      '--in',
      blob,
      '--dir',
      clone,
      '--secret-file',
      secretFile(other.secrets.secret!),
    ]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/hsm\.unseal_failed/);
    expect(existsSync(clone)).toBe(false);
    const restored = signet([
      'hsm',
      'restore',
      '--in',
      blob,
      '--dir',
      clone,
      '--secret-file',
      secretFile(secrets.secret!),
    ]);
    expect(restored.stderr).toBe('');
    expect(restored.code).toBe(0);

    let copy = await started(clone);
    await unsealWith(copy, secrets);
    const data = Buffer.from('to be signed by the clone');
    const signature = await (await copy.connect(CA)).sign({
      key: { label: 'ca-2026' },
      mechanism: 'ecdsa-sha256',
      purpose: 'certificate',
      data,
    });
    const publicKey = createPublicKey({ key: Buffer.from(original.publicKey), format: 'der', type: 'spki' });
    expect(verify('sha256', data, { key: publicKey, dsaEncoding: 'ieee-p1363' }, signature)).toBe(true);
    await running.pop()!.stop();

    await (await source.connect(OFFICER)).createKey({ label: 'ca-2027', algorithm: 'ed25519' });
    const newer = join(tempDir(), 'newer.backup');
    expect(signet(['hsm', 'backup', '--dir', dir, '--out', newer]).code).toBe(0);
    const synced = signet([
      'hsm',
      'sync',
      '--in',
      newer,
      '--dir',
      clone,
      '--secret-file',
      secretFile(secrets.secret!),
    ]);
    expect(synced.stdout).toMatch(/1 keys added .*1 already there/);
    expect(synced.code).toBe(0);
    copy = await started(clone);
    await unsealWith(copy, secrets);
    expect((await (await copy.connect(CA)).listKeys()).map((k) => k.label).sort()).toEqual([
      'ca-2026',
      'ca-2027',
    ]);
  });
});
