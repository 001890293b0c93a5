import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { defaultCaLinter } from '../../src/ceremony/lint.ts';
import { writeOutputOnce } from '../../src/ceremony/outputs.ts';
import type { PartitionDriver } from '../../src/ceremony/partition.ts';
import { runCeremony } from '../../src/ceremony/run.ts';
import { verifyTranscript } from '../../src/ceremony/transcript-signature.ts';
import { validateCeremony } from '../../src/ceremony/validate.ts';
import { fixedClock } from '../../src/lib/clock.ts';
import { EXAMPLES, OFFICER_PIN, tempDir, USER_PIN } from './helpers.ts';

const rootYaml = () => readFileSync(join(EXAMPLES, 'root.yaml'));
const secrets = { officerPin: OFFICER_PIN, userPin: USER_PIN };

describe('running a ceremony', () => {
  it('refuses while a network interface is up, before any partition is touched, and records nothing', async () => {
    const dir = tempDir('run-network');
    const validated = await validateCeremony({ text: rootYaml(), file: 'root.yaml', baseDir: dir });
    const calls: string[] = [];
    const driver: PartitionDriver = {
      create: async () => {
        calls.push('create');
      },
      open: async () => {
        calls.push('open');
        throw new Error('not reached');
      },
    };
    await expect(
      runCeremony(validated, {
        secrets,
        partitions: driver,
        log: () => {},
        networkProbe: () => [
          { name: 'lo', state: 'unknown', addresses: ['127.0.0.1/8'], loopback: true },
          { name: 'eth0', state: 'up', addresses: ['192.0.2.7/24'], loopback: false },
        ],
      }),
    ).rejects.toMatchObject({ code: 'ceremony.network_up', message: expect.stringContaining('eth0') });
    expect(calls).toEqual([]);
    expect(readdirSync(dir)).toEqual([]);
  });

  it('refuses before touching a partition when a secret it will need was not given', async () => {
    const dir = tempDir('run-secrets');
    const validated = await validateCeremony({ text: rootYaml(), file: 'root.yaml', baseDir: dir });
    const driver: PartitionDriver = {
      create: async () => {
        throw new Error('the partition was touched');
      },
      open: async () => {
        throw new Error('the partition was touched');
      },
    };
    await expect(
      runCeremony(validated, {
        secrets: { officerPin: OFFICER_PIN },
        partitions: driver,
        allowNetwork: true,
        log: () => {},
      }),
    ).rejects.toMatchObject({ code: 'ceremony.secret_missing', details: { missing: ['--pin-file'] } });
    expect(readdirSync(dir)).toEqual([]);
  });

  it('never overwrites a file that appeared after validation', async () => {
    const dir = tempDir('run-overwrite');
    writeFileSync(join(dir, 'root.pem'), 'precious');
    await expect(writeOutputOnce(dir, 'root.pem', 'new', { kind: 'certificate' })).rejects.toMatchObject({
      code: 'ceremony.output_exists',
    });
    expect(readFileSync(join(dir, 'root.pem'), 'utf8')).toBe('precious');
  });

  it('signs nothing when the lint refuses, and records the refusal in a signed transcript of the failed run', async () => {
    const dir = tempDir('run-lint');
    const validated = await validateCeremony({ text: rootYaml(), file: 'root.yaml', baseDir: dir });
    const lines: string[] = [];
    const refusing = {
      ...defaultCaLinter,
      lintCertificate: () => ({
        passed: false,
        findings: [{ code: 'test.refused', severity: 'error' as const, message: 'refused for the test' }],
      }),
    };
    await expect(
      runCeremony(validated, {
        secrets,
        linter: refusing,
        allowNetwork: true,
        clock: fixedClock('2026-01-02T03:04:05Z'),
        log: (line) => lines.push(line),
      }),
    ).rejects.toMatchObject({ code: 'ceremony.lint_failed' });
    expect(existsSync(join(dir, 'root.pem'))).toBe(false);
    expect(existsSync(join(dir, 'transcripts/root.json'))).toBe(false);
    const failed = join(dir, 'transcripts/root.failed-20260102T030405Z.json');
    const { transcript } = verifyTranscript({
      transcript: readFileSync(failed),
      signature: readFileSync(`${failed}.sig`),
      anchor: readFileSync(join(dir, 'root-pub.pem')),
    });
    expect(transcript).toMatchObject({ result: 'failed', error: { code: 'ceremony.lint_failed' } });
    expect(transcript.lint).toEqual([
      { subject: 'root.pem', passed: false, findings: [expect.objectContaining({ code: 'test.refused' })] },
    ]);
    expect(transcript.steps.find((s) => s.result === 'failed')?.name).toBe(
      'Build and lint the root certificate',
    );
    expect(transcript.steps.some((s) => s.name.startsWith('Sign the root certificate'))).toBe(false);
    expect(lines).toContain('[7] Build and lint the root certificate ...');
  });

  it('refuses to write a certificate whose path does not validate at the time of the ceremony, though it passed lint', async () => {
    const dir = tempDir('run-path');
    const validated = await validateCeremony({ text: rootYaml(), file: 'root.yaml', baseDir: dir });
    // The profile's root ends in 2046: signed in 2047 it is expired before it is written.
    await expect(
      runCeremony(validated, {
        secrets,
        allowNetwork: true,
        clock: fixedClock('2047-01-02T03:04:05Z'),
        log: () => {},
      }),
    ).rejects.toMatchObject({
      code: 'ceremony.path_invalid',
      message: expect.stringContaining('has expired'),
    });
    expect(existsSync(join(dir, 'root.pem'))).toBe(false);
    const failed = join(dir, 'transcripts/root.failed-20470102T030405Z.json');
    const transcript = JSON.parse(readFileSync(failed, 'utf8'));
    expect(transcript.lint).toEqual([expect.objectContaining({ subject: 'root.pem', passed: true })]);
    expect(transcript.steps.find((s: { result: string }) => s.result === 'failed')?.name).toBe(
      "Validate the root certificate's certification path to itself (RFC 5280 §6.1)",
    );
  });
});
