import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { hasTool } from '../helpers/tools.ts';

/**
 * Issue #9 "The main job": on a fresh clone, the README's first command (`npm ci && npm start`)
 * initialises ./data and serves on 127.0.0.1, printing the URL, where the admin key and unseal
 * secret were written, and an openssl + curl example that issues under web-server — run here as a
 * new user would, from a clone of the committed tree (HEAD) in a temporary folder. Issue #33: the
 * example is printed once the server listens, for the port it took (from signet.yaml after a
 * restart), with absolute paths, so it runs as printed from another folder; a second start on the
 * same folder fails on the database lock without printing one.
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

/** `npm start` in the clone, as a new user runs it (its own process group, like a terminal's). */
function startServer(cwd: string, env: NodeJS.ProcessEnv): { child: ChildProcess; output: () => string } {
  const child = spawn('npm', ['start', '--silent'], {
    cwd,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  let output = '';
  child.stdout!.on('data', (chunk) => {
    output += chunk;
  });
  child.stderr!.on('data', (chunk) => {
    output += chunk;
  });
  return { child, output: () => output };
}

/** Waits until the printed example is complete (it follows the "serving" line). */
async function waitForExample(server: { child: ChildProcess; output: () => string }): Promise<string> {
  const deadline = Date.now() + 120_000;
  while (!server.output().includes("If curl fails, www.pem holds the server's problem document")) {
    if (Date.now() > deadline || server.child.exitCode !== null)
      throw new Error(`npm start did not serve:\n${server.output()}`);
    await new Promise((r) => setTimeout(r, 250));
  }
  return server.output();
}

/** Ctrl-C in the terminal: SIGINT to the whole process group; resolves once npm has exited. */
async function stopServer(child: ChildProcess | undefined): Promise<void> {
  if (!child?.pid || child.exitCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  process.kill(-child.pid, 'SIGINT');
  await exited;
}

/** The example's commands as printed: the indented lines after "Try it". */
const exampleCommands = (output: string) =>
  output
    .slice(output.indexOf('Try it'))
    .split('\n')
    .slice(1)
    .join('\n')
    .split(/\n(?=\S|\s*$)/)[0]!
    .replace(/^ {2}/gm, '');

describe.skipIf(!haveTools)('the quick start on a fresh clone', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'signet-quickstart-'));
  const clone = path.join(dir, 'signet');
  let server: ChildProcess | undefined;

  afterAll(async () => {
    await stopServer(server);
    rmSync(dir, { recursive: true, force: true });
  });

  it('npm ci && npm start serves a CA whose printed example, run as printed after a restart from another folder, issues a certificate openssl verifies', async () => {
    execFileSync('git', ['clone', '--quiet', '--no-local', path.resolve('.'), clone]);
    execFileSync('npm', ['ci', '--prefer-offline', '--no-audit', '--no-fund'], {
      cwd: clone,
      stdio: 'ignore',
    });

    // npm ci ran `prepare`, which compiled the sources: npm start runs dist/, not TypeScript.
    expect(existsSync(path.join(clone, 'dist', 'cli', 'main.js'))).toBe(true);

    const port = await freePort();
    // As a new user's shell has it: no data folder chosen, and not the suites' switch to run sources.
    const { SIGNET_DATA: _ignored, SIGNET_RUN_SOURCES: _sources, SIGNET_PORT: _port, ...env } = process.env;
    // The first start chooses the port (SIGNET_PORT); init writes it into data/signet.yaml.
    const first = startServer(clone, { ...env, SIGNET_PORT: String(port), SIGNET_LOG_LEVEL: 'warn' });
    server = first.child;
    const firstOutput = await waitForExample(first);
    expect(firstOutput).toContain(`serving http://127.0.0.1:${port}`);
    expect(firstOutput).toContain(path.join(clone, 'data', 'secrets', 'admin-api-key'));
    expect(firstOutput).toContain(path.join(clone, 'data', 'secrets', 'unseal-issuing'));
    expect(firstOutput).toContain(`'http://127.0.0.1:${port}/v1/certificates?policy=web-server'`);
    // Init says what it is doing through its longest step rather than going quiet.
    expect(firstOutput).toContain('signet init: creating the database in');
    await stopServer(server);

    // Restarted without SIGNET_PORT: the port comes from signet.yaml, and so does the example's.
    const again = startServer(clone, { ...env, SIGNET_LOG_LEVEL: 'warn' });
    server = again.child;
    const output = await waitForExample(again);
    expect(output).toContain(`serving http://127.0.0.1:${port}`);
    expect(output).not.toContain('signet init');

    // A second start on the same folder fails on the database lock, and prints no example first.
    const second = spawnSync(process.execPath, ['bin/signet.js', 'start'], {
      cwd: clone,
      env,
      encoding: 'utf8',
      timeout: 60_000,
    });
    expect(second.status).toBe(1);
    expect(second.stdout).toBe('');
    expect(second.stderr).toMatch(/^signet: the database is in use: process \d+ holds it/);

    // Run the printed example as printed, "in another terminal": a shell in another folder.
    const elsewhere = path.join(dir, 'elsewhere');
    mkdirSync(elsewhere);
    const script = path.join(dir, 'example.sh');
    writeFileSync(script, `set -e\n${exampleCommands(output)}\n`);
    const run = spawnSync('bash', [script], { cwd: elsewhere, encoding: 'utf8', timeout: 60_000 });
    expect(run.stdout + run.stderr).toContain('www.pem: OK');
    expect(run.status).toBe(0);
    const pem = readFileSync(path.join(elsewhere, 'www.pem'), 'utf8');
    expect(pem.match(/BEGIN CERTIFICATE/g)?.length).toBe(2);
  }, 400_000);
});
