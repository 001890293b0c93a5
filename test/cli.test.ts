import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

const signet = (args: string[]) =>
  spawnSync(process.execPath, ['bin/signet.js', ...args], { encoding: 'utf8', timeout: 30_000 });

describe('the signet command', () => {
  it('prints its usage with --help and exits 0', () => {
    const out = execFileSync(process.execPath, ['bin/signet.js', '--help'], { encoding: 'utf8' });
    expect(out).toContain('usage: signet <command>');
  });

  it('exits 2 with a clear message for an unknown command', () => {
    const result = signet(['frobnicate']);
    expect(result.status).toBe(2);
    expect(result.stderr).toContain("unknown command 'frobnicate'");
  });

  it('prints the version of package.json with --version and exits 0', () => {
    const { version } = JSON.parse(readFileSync('package.json', 'utf8')) as { version: string };
    const result = signet(['--version']);
    expect(result.status).toBe(0);
    expect(result.stdout).toBe(`signet ${version}\n`);
  });
});
