import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';

/**
 * Issue #33: `signet policy lint | head -0` died with an EPIPE stack trace. A closed standard
 * output (or error) now ends the output quietly and the command exits with its own code. The
 * reading end is closed before the command writes anything, so every write meets EPIPE.
 */
function withClosed(
  args: string[],
  closed: ('stdout' | 'stderr')[],
): Promise<{ status: number | null; signal: string | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['bin/signet.js', ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: withoutData(),
    });
    const out = { stdout: '', stderr: '' };
    for (const name of ['stdout', 'stderr'] as const) {
      if (closed.includes(name)) child[name].destroy();
      else
        child[name].on('data', (chunk) => {
          out[name] += chunk;
        });
    }
    const timer = setTimeout(() => child.kill(), 60_000);
    child.on('error', reject);
    child.on('close', (status, signal) => {
      clearTimeout(timer);
      resolve({ status, signal, ...out });
    });
  });
}

describe('a closed pipe ends the output, not with a stack trace', () => {
  it.each([
    ['policy lint', ['policy', 'lint'], 0],
    ['--help', ['--help'], 0],
    ['hsm keys --help', ['hsm', 'keys', '--help'], 0],
  ])(
    'signet %s | head -0 says nothing on standard error and exits with its own code',
    async (_name, args, code) => {
      const result = await withClosed(args as string[], ['stdout']);
      expect(result.stderr).toBe('');
      expect(result.status).toBe(code);
    },
  );

  it('keeps the exit code of a command that fails, with both outputs closed', async () => {
    const result = await withClosed(['policy', 'lint', 'no-such-folder'], ['stdout', 'stderr']);
    expect([result.status, result.signal]).toEqual([1, null]);
  });

  it('keeps a usage mistake a usage mistake when standard error is closed', async () => {
    const result = await withClosed(['issue', '--bogus'], ['stderr']);
    expect([result.status, result.signal, result.stdout]).toEqual([2, null, '']);
  });
});

/** The suite's environment without a data folder or API key chosen, as a new user's shell has it. */
function withoutData(): NodeJS.ProcessEnv {
  const { SIGNET_DATA: _data, SIGNET_API_KEY: _key, ...env } = process.env;
  return env;
}
