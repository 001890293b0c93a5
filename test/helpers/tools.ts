import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';

/**
 * Whether an external tool (openssl, certtool, pg_ctl...) is on this machine.
 * Locally a missing tool skips the tests that need it; under CI=true (set by .ci/run,
 * which installs every tool) a missing tool fails the run instead of skipping silently.
 */
export function hasTool(command: string, args: string[] = ['--version']): boolean {
  try {
    execFileSync(command, args, { stdio: 'ignore' });
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
      if (process.env.CI === 'true') {
        throw new Error(`${command} is required under CI=true but is not installed`);
      }
      console.warn(`skipping tests that need ${command}: not installed`);
      return false;
    }
    // The tool exists but rejected the probe arguments: it is present.
    return true;
  }
}

/**
 * Whether a file a test needs (a PKCS#11 module, an OpenSSL engine) is on this machine. Missing,
 * it skips locally and fails under CI=true, like a missing tool; `from` names the Debian package.
 */
export function hasFile(path: string, from: string): boolean {
  if (existsSync(path)) return true;
  if (process.env.CI === 'true')
    throw new Error(`${path} (Debian ${from}) is required under CI=true but is missing`);
  console.warn(`skipping tests that need ${path} (Debian ${from}): not installed`);
  return false;
}
