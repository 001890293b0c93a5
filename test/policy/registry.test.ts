import { mkdtemp, rm, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { PolicyLoadError } from '../../src/policy/load.ts';
import { createPolicyRegistry } from '../../src/policy/registry.ts';
import { policyYaml } from './builders.ts';

describe('the policy registry', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'signet-registry-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test('starts with every policy in the folder', async () => {
    await writeFile(join(dir, 'web-server.yaml'), policyYaml());
    await writeFile(join(dir, 'api.yaml'), policyYaml());
    const registry = await createPolicyRegistry({ dir });
    expect(registry.list().map((p) => p.name)).toEqual(['api', 'web-server']);
    expect(registry.get('web-server')?.issuer).toBe('dev-intermediate');
    expect(registry.get('missing')).toBeUndefined();
  });

  test('refuses to start on an invalid policy, naming the file, line and key', async () => {
    await writeFile(join(dir, 'good.yaml'), policyYaml());
    await writeFile(join(dir, 'bad.yaml'), policyYaml({ sans: { ip: { allow: ['0.0.0.0/0'] } } }));
    const error = await createPolicyRegistry({ dir }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(PolicyLoadError);
    expect((error as PolicyLoadError).code).toBe('policy.load_failed');
    expect((error as PolicyLoadError).message).toMatch(
      /bad\.yaml:\d+ sans\.ip\.allow\[0\]: '0\.0\.0\.0\/0' allows every IPv4 address/,
    );
  });

  test('reloads a changed folder as a whole', async () => {
    await writeFile(join(dir, 'one.yaml'), policyYaml());
    const registry = await createPolicyRegistry({ dir });
    await writeFile(join(dir, 'one.yaml'), policyYaml({ issuer: 'other-issuer' }));
    await writeFile(join(dir, 'two.yaml'), policyYaml());
    expect(await registry.reload()).toEqual({ ok: true, policies: ['one', 'two'] });
    expect(registry.get('one')?.issuer).toBe('other-issuer');
    await unlink(join(dir, 'two.yaml'));
    expect(await registry.reload()).toEqual({ ok: true, policies: ['one'] });
    expect(registry.get('two')).toBeUndefined();
  });

  test('keeps the old set in force when a reload finds a bad file, and says why', async () => {
    await writeFile(join(dir, 'one.yaml'), policyYaml());
    await writeFile(join(dir, 'two.yaml'), policyYaml());
    const registry = await createPolicyRegistry({ dir });
    const before = registry.list();
    await writeFile(join(dir, 'one.yaml'), policyYaml({ issuer: 'changed' }));
    await writeFile(join(dir, 'two.yaml'), `${policyYaml()}unknown_key: 1\n`);
    const result = await registry.reload();
    expect(result.ok).toBe(false);
    if (!result.ok) {
      expect(result.errors).toEqual([
        expect.objectContaining({ file: join(dir, 'two.yaml'), path: 'unknown_key', message: 'unknown key' }),
      ]);
    }
    // Not even the valid change to one.yaml is applied: the set changes atomically or not at all.
    expect(registry.list()).toEqual(before);
    expect(registry.get('one')?.issuer).toBe('dev-intermediate');
  });

  test('applies concurrent reloads in the order they were asked for', async () => {
    await writeFile(join(dir, 'one.yaml'), policyYaml());
    const registry = await createPolicyRegistry({ dir });
    const first = registry.reload();
    await writeFile(join(dir, 'one.yaml'), policyYaml({ issuer: 'latest' }));
    const second = registry.reload();
    await Promise.all([first, second]);
    expect(registry.get('one')?.issuer).toBe('latest');
  });
});
