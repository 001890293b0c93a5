import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { shellQuote, tryItExample } from '../../src/cli/try-it.ts';
import { hasTool } from '../helpers/tools.ts';

/**
 * Issue #33: the example `signet start` prints names the data folder's files by absolute paths
 * (it says "in another terminal", which may be in another folder), the address the server took,
 * and makes curl fail on an HTTP error rather than save a problem document as the certificate.
 * The run of the example against a real CA after a restart is test/slow/quickstart.test.ts.
 */
const commandsOf = (example: string) =>
  example
    .slice(example.indexOf('Try it'))
    .split('\n')
    .slice(1)
    .filter((line) => line.startsWith('  '))
    .map((line) => line.slice(2))
    .join('\n');

describe('the printed example', () => {
  it('names the data folder by absolute paths, even when given a relative one', () => {
    const example = tryItExample({ dataDir: 'data', url: 'http://127.0.0.1:8443' });
    const data = path.resolve('data');
    expect(example).toContain(`export SIGNET_API_KEY="$(cat ${data}/secrets/admin-api-key)"`);
    expect(example).toContain(`-CAfile ${data}/certs/dev-root.pem`);
    expect(example).not.toMatch(/[\s(]data\//);
  });

  it('posts to the address the server took, with curl failing on an HTTP error', () => {
    const example = tryItExample({ dataDir: '/srv/signet', url: 'http://127.0.0.1:18443' });
    expect(example).toContain("'http://127.0.0.1:18443/v1/certificates?policy=web-server'");
    expect(example).toContain('curl --fail-with-body -sS -o www.pem');
    expect(example).not.toContain(':8080');
  });

  it('reaches a server listening on every address through the loopback', () => {
    expect(tryItExample({ dataDir: '/d', url: 'http://0.0.0.0:9000' })).toContain('http://127.0.0.1:9000/');
    expect(tryItExample({ dataDir: '/d', url: 'http://[::]:9000' })).toContain('http://[::1]:9000/');
  });

  it.each([['/srv/signet data'], ["/home/o'brien/signet"], ['/tmp/a$b`c`']])(
    'quotes a folder such as %s so the shell reads it back unchanged',
    (folder) => {
      const echoed = spawnSync('bash', ['-c', `printf %s ${shellQuote(folder)}`], { encoding: 'utf8' });
      expect(echoed.stdout).toBe(folder);
    },
  );
});

describe.skipIf(!(hasTool('curl', ['--version']) && hasTool('openssl', ['version'])))(
  'the printed example against a server that refuses the key',
  () => {
    let dir: string;
    let server: Server;
    let url: string;
    beforeAll(async () => {
      dir = mkdtempSync(path.join(tmpdir(), 'signet try it '));
      mkdirSync(path.join(dir, 'data', 'secrets'), { recursive: true });
      mkdirSync(path.join(dir, 'data', 'certs'));
      mkdirSync(path.join(dir, 'elsewhere'));
      writeFileSync(path.join(dir, 'data', 'secrets', 'admin-api-key'), 'sgk_0123456789abcdef_revoked\n');
      writeFileSync(path.join(dir, 'data', 'certs', 'dev-root.pem'), '');
      server = createServer((request, response) => {
        request.resume();
        response.writeHead(401, { 'content-type': 'application/problem+json' });
        response.end(
          JSON.stringify({ code: 'auth.credential_invalid', detail: 'The API key is not valid.' }),
        );
      });
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      url = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
    });
    afterAll(async () => {
      await new Promise((resolve) => server.close(resolve));
      rmSync(dir, { recursive: true, force: true });
    });

    it('stops at curl with the status, runs no openssl on the answer, and keeps the problem to read', async () => {
      const example = tryItExample({ dataDir: path.join(dir, 'data'), url });
      // Pasted line by line into a shell in another folder: no `set -e`. Asynchronously: the
      // server answering it runs in this process.
      const run = await new Promise<{ status: number | null; stderr: string }>((resolve) => {
        const child = spawn('bash', ['-c', commandsOf(example)], {
          cwd: path.join(dir, 'elsewhere'),
          stdio: ['ignore', 'ignore', 'pipe'],
        });
        let stderr = '';
        child.stderr.on('data', (chunk) => {
          stderr += chunk;
        });
        child.on('close', (status) => resolve({ status, stderr }));
      });
      expect(run.stderr).toContain('curl: (22) The requested URL returned error: 401');
      expect(run.stderr).not.toMatch(/unable to load|Could not (read|find)|decoder/i);
      expect(run.status).toBe(22);
      expect(
        spawnSync('cat', ['www.pem'], { cwd: path.join(dir, 'elsewhere'), encoding: 'utf8' }).stdout,
      ).toContain('auth.credential_invalid');
    });
  },
);
