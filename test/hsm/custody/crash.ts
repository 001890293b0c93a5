import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { openPartitionVault, verifyAuditLog } from '../../../src/hsm/custody/index.ts';

const WRITER = fileURLToPath(new URL('./fixtures/key-writer.ts', import.meta.url));

/**
 * One round of the crash test: a child process creates keys until it has acknowledged at least
 * `after` of them, then is killed with SIGKILL at an arbitrary point of its next writes. Returns
 * the ids it acknowledged.
 */
export async function killDuringKeyCreation(
  dir: string,
  secret: string,
  after: number,
): Promise<Set<string>> {
  const secretFile = join(dir, '..', 'secret');
  writeFileSync(secretFile, secret, { mode: 0o600 });
  const child = spawn(process.execPath, ['--import', 'tsx', WRITER, dir, secretFile, '4'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const acked = new Set<string>();
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  await new Promise<void>((resolve, reject) => {
    let buffered = '';
    child.stdout.on('data', (chunk: Buffer) => {
      buffered += chunk.toString();
      const lines = buffered.split('\n');
      buffered = lines.pop()!;
      for (const line of lines) {
        if (line.startsWith('ack ')) acked.add(line.slice(4));
        if (acked.size >= after && !child.killed) {
          // A few more milliseconds of writing, so the kill lands at an arbitrary point.
          setTimeout(() => child.kill('SIGKILL'), Math.floor(Math.random() * 15));
        }
      }
    });
    child.on('exit', (code, signal) =>
      signal === 'SIGKILL' ? resolve() : reject(new Error(`writer exited ${code}: ${stderr}`)),
    );
  });
  return acked;
}

/** Reopens the partition after a crash: every acknowledged key must be there, the audit log sound. */
export async function checkAfterCrash(dir: string, secret: string, acked: Set<string>) {
  const folder = await openPartitionVault({ dir });
  await folder.unseal({ secret });
  const ids = new Set((await folder.store!.listKeys()).map((key) => key.id));
  await folder.audit.append({ time: new Date().toISOString(), op: 'check', result: 'ok' });
  await folder.close();
  const missing = [...acked].filter((id) => !ids.has(id));
  return { missing, keys: ids.size, audit: await verifyAuditLog({ dir }) };
}
