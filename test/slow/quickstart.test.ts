import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { hasTool } from '../helpers/tools.ts';

/**
 * Issue #9 "The main job": on a fresh clone, the README's first command (`npm ci && npm start`)
 * initialises ./data and serves on 127.0.0.1, printing the URL, where the admin key and unseal
 * secret were written, and an openssl + curl example that issues under web-server — run here as a
 * new user would, from a clone of the committed tree (HEAD) in a temporary folder.
 */
const haveTools =
  hasTool('openssl', ['version']) && hasTool('git', ['--version']) && hasTool('curl', ['--version']);

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer();
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

describe.skipIf(!haveTools)('the quick start on a fresh clone', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'signet-quickstart-'));
  const clone = path.join(dir, 'signet');
  let server: ChildProcess | undefined;

  afterAll(async () => {
    if (server?.pid && server.exitCode === null) {
      // npm runs signet in its own process group: Ctrl-C reaches the whole group, as in a terminal.
      const exited = new Promise((r) => server!.once('exit', r));
      process.kill(-server.pid, 'SIGINT');
      await exited;
    }
    rmSync(dir, { recursive: true, force: true });
  });

  it('npm ci && npm start serves a CA whose printed example issues a certificate openssl verifies', async () => {
    execFileSync('git', ['clone', '--quiet', '--no-local', path.resolve('.'), clone]);
    execFileSync('npm', ['ci', '--prefer-offline', '--no-audit', '--no-fund'], {
      cwd: clone,
      stdio: 'ignore',
    });

    // npm ci ran `prepare`, which compiled the sources: npm start runs dist/, not TypeScript.
    expect(existsSync(path.join(clone, 'dist', 'cli', 'main.js'))).toBe(true);

    const port = await freePort();
    // As a new user's shell has it: no data folder chosen, and not the suites' switch to run sources.
    const { SIGNET_DATA: _ignored, SIGNET_RUN_SOURCES: _sources, ...env } = process.env;
    server = spawn('npm', ['start', '--silent'], {
      cwd: clone,
      env: { ...env, SIGNET_PORT: String(port), SIGNET_LOG_LEVEL: 'warn' },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    let output = '';
    server.stdout!.on('data', (chunk) => {
      output += chunk;
    });
    server.stderr!.on('data', (chunk) => {
      output += chunk;
    });
    const deadline = Date.now() + 120_000;
    while (!output.includes(`serving http://127.0.0.1:${port}`)) {
      if (Date.now() > deadline || server.exitCode !== null)
        throw new Error(`npm start did not serve:\n${output}`);
      await new Promise((r) => setTimeout(r, 250));
    }
    expect(output).toContain(path.join(clone, 'data', 'secrets', 'admin-api-key'));
    expect(output).toContain(path.join(clone, 'data', 'secrets', 'unseal-issuing'));

    // Run the printed example as printed, in a shell in the clone.
    const example = output.slice(output.indexOf('Try it'));
    const commands = example
      .split('\n')
      .slice(1)
      .join('\n')
      .split(/\n(?=\S|\s*$)/)[0]!;
    const script = path.join(dir, 'example.sh');
    writeFileSync(script, `set -e\n${commands.replace(/^ {2}/gm, '')}\n`);
    const run = spawnSync('bash', [script], { cwd: clone, encoding: 'utf8', timeout: 60_000 });
    expect(run.stdout + run.stderr).toContain('www.pem: OK');
    expect(run.status).toBe(0);
    const pem = readFileSync(path.join(clone, 'www.pem'), 'utf8');
    expect(pem.match(/BEGIN CERTIFICATE/g)?.length).toBe(2);
  }, 400_000);
});
