import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

/**
 * Issue #21: the production install is the attack surface. Every package in `dependencies` is
 * imported by src/ (and src/ imports nothing else; .dependency-cruiser.cjs refuses a dev
 * dependency there), and `allowScripts` names only packages that the lock file installs.
 */
const pkg = JSON.parse(readFileSync('package.json', 'utf8')) as {
  dependencies: Record<string, string>;
  devDependencies: Record<string, string>;
  allowScripts: Record<string, boolean>;
};
const lock = JSON.parse(readFileSync('package-lock.json', 'utf8')) as { packages: Record<string, unknown> };

function importedPackages(): Set<string> {
  const found = new Set<string>();
  const files = (readdirSync('src', { recursive: true }) as string[]).filter(
    (f) => f.endsWith('.ts') && !f.endsWith('.test.ts'),
  );
  for (const file of files) {
    const text = readFileSync(join('src', file), 'utf8');
    const specifiers = [
      ...text.matchAll(/^\s*(?:import|export|\})[^'\n]*?\bfrom\s+'([^']+)'/gm),
      ...text.matchAll(/^\s*import\s+'([^']+)'/gm),
      ...text.matchAll(/\bimport\(\s*'([^']+)'\s*\)/g),
    ];
    for (const match of specifiers) {
      const specifier = match[1]!;
      if (specifier.startsWith('node:') || specifier.startsWith('.')) continue;
      const parts = specifier.split('/');
      found.add(specifier.startsWith('@') ? `${parts[0]}/${parts[1]}` : parts[0]!);
    }
  }
  return found;
}

describe('package.json', () => {
  const imported = importedPackages();

  it('declares as dependencies exactly the packages src/ imports', () => {
    expect(Object.keys(pkg.dependencies).filter((name) => !imported.has(name))).toEqual([]);
    expect([...imported].filter((name) => !(name in pkg.dependencies))).toEqual([]);
  });

  it('allows install scripts only for packages the lock file installs', () => {
    for (const name of Object.keys(pkg.allowScripts)) {
      expect(lock.packages[`node_modules/${name}`], name).toBeDefined();
    }
  });

  it('keeps the test and build tools out of the production dependencies', () => {
    for (const tool of [
      'tsx',
      'typescript',
      'vitest',
      '@peculiar/x509',
      'reflect-metadata',
      '@peculiar/asn1-csr',
    ]) {
      expect(pkg.dependencies[tool], tool).toBeUndefined();
    }
    expect(Object.keys(pkg.dependencies).filter((name) => name.startsWith('@scalar/'))).toEqual([]);
  });
});
