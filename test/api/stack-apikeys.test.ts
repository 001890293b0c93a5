import { describe, expect, it } from 'vitest';
import {
  adminKeyFile,
  call,
  dataDir,
  execFileAsync,
  haveTools,
  itClosesCleanly,
  keys,
  serving,
  useStack,
} from './helpers/stack.ts';

/** The apikey routes driven by `signet apikey` through the running server (the service: helpers/stack.ts). */
describe.skipIf(!haveTools)('the API on the real service: signet apikey', () => {
  useStack();

  describe('signet apikey through the running server', () => {
    const signet = async (args: string[], env: Record<string, string> = {}) => {
      try {
        const { stdout, stderr } = await execFileAsync(
          process.execPath,
          ['bin/signet.js', 'apikey', ...args, '--url', serving.server.url],
          {
            encoding: 'utf8',
            timeout: 60_000,
            env: { ...process.env, SIGNET_API_KEY: '', ...env },
          },
        );
        return { status: 0, stdout, stderr };
      } catch (error) {
        const failed = error as { code: number; stdout: string; stderr: string };
        return { status: failed.code, stdout: failed.stdout, stderr: failed.stderr };
      }
    };

    it('creates a key that works, lists it without its secret, and revokes it', async () => {
      const created = await signet([
        'create',
        '--role',
        'auditor',
        '--description',
        'from the CLI',
        '--expires-in',
        'P1D',
        '--api-key-file',
        adminKeyFile,
      ]);
      expect(created.stderr).toContain('shown only this once');
      expect(created.status).toBe(0);
      const key = created.stdout.trim();
      expect(key).toMatch(/^sgk_[0-9a-f]{16}_/);
      expect((await call('GET', '/v1/audit?limit=1', { key })).response.status).toBe(200);
      const id = key.split('_')[1]!;
      const listed = await signet(['list'], { SIGNET_API_KEY: keys.admin });
      expect(listed.status).toBe(0);
      expect(listed.stdout).toContain(id);
      // The secret is everything after `sgk_<id>_`; base64url may itself contain '_'.
      const secret = key.slice(`sgk_${id}_`.length);
      expect(secret.length).toBe(43);
      expect(listed.stdout).not.toContain(secret);
      const revoked = await signet(['revoke', id, '--api-key-file', adminKeyFile]);
      expect(revoked.status).toBe(0);
      expect((await call('GET', '/v1/audit?limit=1', { key })).response.status).toBe(401);
    });

    it('exits 1 with the server reason when the key may not manage keys, and 2 on a usage error', async () => {
      const refused = await signet(['list'], { SIGNET_API_KEY: keys.auditor });
      expect(refused.status).toBe(1);
      expect(refused.stderr).toContain('auth.role_forbidden');
      expect((await signet(['create', '--api-key-file', adminKeyFile])).status).toBe(2);
      expect((await signet(['frobnicate'])).status).toBe(2);
    });

    it('finds the server and the admin key from the data folder and SIGNET_PORT, as issue and revoke do', async () => {
      // No --url and no key given (issue #33): signet.yaml says port 0 here, SIGNET_PORT the real one.
      const { SIGNET_API_KEY: _key, ...env } = process.env;
      const listed = await execFileAsync(
        process.execPath,
        ['bin/signet.js', 'apikey', 'list', '--data', dataDir],
        { encoding: 'utf8', timeout: 60_000, env: { ...env, SIGNET_PORT: String(serving.server.port) } },
      );
      expect(listed.stdout).toContain('created by signet init');
    });

    it('prints the fields the server named when it refuses a body (its errors[])', async () => {
      const refused = await signet([
        'create',
        '--role',
        'auditor',
        '--description',
        'x'.repeat(201),
        '--api-key-file',
        adminKeyFile,
      ]);
      expect(refused.status).toBe(1);
      expect(refused.stderr).toMatch(
        /^signet: 400 \[request\.invalid_body\]: The request body does not match the schema\.\n {2}description: .*200/,
      );
    });
  });

  describe('afterwards', () => {
    itClosesCleanly('apikeys', 1);
  });
});
