import { execFileSync } from 'node:child_process';
import { createPublicKey } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it, test } from 'vitest';
import { verifyIntermediateForActivation } from '../../src/ceremony/activation.ts';
import { fixedClock } from '../../src/lib/clock.ts';
import { hasTool } from '../helpers/tools.ts';
import { tempDir } from './helpers.ts';

const haveOpenssl = hasTool('openssl', ['version']);

describe.skipIf(!haveOpenssl)('verifyIntermediateForActivation', () => {
  let dir: string;
  const file = (name: string) => join(dir, name);
  const pem = (name: string) => readFileSync(file(name), 'utf8');
  const spki = (name: string) =>
    new Uint8Array(
      createPublicKey(readFileSync(file(`${name}.key`))).export({ type: 'spki', format: 'der' }),
    );

  /** A CA (or leaf) certificate made by openssl, so the check is tried on certificates Signet did not build. */
  function make(name: string, subject: string, ext: string[], issuer?: string, days = 3650) {
    execFileSync('openssl', [
      'genpkey',
      '-algorithm',
      'EC',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-out',
      file(`${name}.key`),
    ]);
    const extfile = file(`${name}.ext`);
    writeFileSync(extfile, `[v3]\n${ext.join('\n')}\nsubjectKeyIdentifier=hash\n`);
    if (!issuer) {
      execFileSync('openssl', [
        'req',
        '-x509',
        '-new',
        '-key',
        file(`${name}.key`),
        '-subj',
        subject,
        '-days',
        String(days),
        '-out',
        file(`${name}.pem`),
        '-extensions',
        'v3',
        '-config',
        extfile,
      ]);
      return;
    }
    execFileSync('openssl', [
      'req',
      '-new',
      '-key',
      file(`${name}.key`),
      '-subj',
      subject,
      '-out',
      file(`${name}.csr`),
    ]);
    execFileSync(
      'openssl',
      [
        'x509',
        '-req',
        '-in',
        file(`${name}.csr`),
        '-CA',
        file(`${issuer}.pem`),
        '-CAkey',
        file(`${issuer}.key`),
        '-CAcreateserial',
        '-days',
        String(days),
        '-out',
        file(`${name}.pem`),
        '-extfile',
        extfile,
        '-extensions',
        'v3',
      ],
      { stdio: 'pipe' },
    );
  }

  const CA = ['basicConstraints=critical,CA:TRUE', 'keyUsage=critical,keyCertSign,cRLSign'];

  beforeAll(() => {
    dir = tempDir('activation');
    make('root', '/CN=Example Root', CA);
    make('other-root', '/CN=Example Other Root', CA);
    make('root0', '/CN=Example Root Zero', [
      'basicConstraints=critical,CA:TRUE,pathlen:0',
      'keyUsage=critical,keyCertSign,cRLSign',
    ]);
    make('inter', '/CN=Example Issuing CA', CA, 'root');
    make('middle', '/CN=Example Middle CA', CA, 'root');
    make('deep', '/CN=Example Deep Issuing CA', CA, 'middle');
    make('under0', '/CN=Example Under Zero', CA, 'root0');
    make(
      'leaf',
      '/CN=www.example.com',
      ['basicConstraints=critical,CA:FALSE', 'keyUsage=critical,digitalSignature'],
      'inter',
    );
    make('short', '/CN=Example Short-lived CA', CA, 'root', 1);
    // An upper CA excludes a name that the CA below it permits and carries (RFC 5280 §6.1.3 (b)).
    make(
      'upper',
      '/CN=Example Upper CA',
      [...CA, 'nameConstraints=critical,excluded;DNS:bad.example.com'],
      'root',
    );
    make(
      'lower',
      '/CN=Example Lower CA',
      [...CA, 'nameConstraints=critical,permitted;DNS:example.com', 'subjectAltName=DNS:bad.example.com'],
      'upper',
    );
  });

  it('accepts an intermediate whose key is the partition key and whose chain reaches a listed root', async () => {
    const result = await verifyIntermediateForActivation({
      certificate: pem('inter.pem'),
      keyPublicKey: spki('inter'),
      roots: [pem('other-root.pem'), pem('root.pem')],
    });
    expect(result.rootIndex).toBe(1);
    expect(result.chain).toHaveLength(2);
  });

  it('reaches the root through the intermediates it is given', async () => {
    const result = await verifyIntermediateForActivation({
      certificate: pem('deep.pem'),
      keyPublicKey: spki('deep'),
      roots: [pem('root.pem')],
      intermediates: [pem('middle.pem')],
    });
    expect(result.chain).toHaveLength(3);
  });

  test.each([
    [
      'a key other than the partition key',
      () => ({ certificate: pem('inter.pem'), keyPublicKey: spki('middle'), roots: [pem('root.pem')] }),
      'activation.key_mismatch',
    ],
    [
      'a chain to a root not listed',
      () => ({ certificate: pem('inter.pem'), keyPublicKey: spki('inter'), roots: [pem('other-root.pem')] }),
      'activation.chain_invalid',
    ],
    [
      'a missing intermediate',
      () => ({ certificate: pem('deep.pem'), keyPublicKey: spki('deep'), roots: [pem('root.pem')] }),
      'activation.chain_invalid',
    ],
    [
      'an end-entity certificate',
      () => ({ certificate: pem('leaf.pem'), keyPublicKey: spki('leaf'), roots: [pem('root.pem')] }),
      'activation.not_ca',
    ],
    [
      'a root whose path length allows no intermediate',
      () => ({ certificate: pem('under0.pem'), keyPublicKey: spki('under0'), roots: [pem('root0.pem')] }),
      'activation.chain_invalid',
    ],
    [
      'a certificate that has expired',
      () => ({
        certificate: pem('short.pem'),
        keyPublicKey: spki('short'),
        roots: [pem('root.pem')],
        clock: fixedClock(new Date(Date.now() + 3 * 86_400_000)),
      }),
      'activation.expired',
    ],
    [
      'an intermediate whose name an upper CA of its chain excludes',
      () => ({
        certificate: pem('lower.pem'),
        keyPublicKey: spki('lower'),
        roots: [pem('root.pem')],
        intermediates: [pem('upper.pem')],
      }),
      'activation.chain_invalid',
    ],
    [
      'something that is not a certificate',
      () => ({ certificate: 'hello', keyPublicKey: spki('inter'), roots: [pem('root.pem')] }),
      'activation.certificate_invalid',
    ],
  ])('refuses %s', async (_name, input, code) => {
    await expect(verifyIntermediateForActivation(input())).rejects.toThrow(expect.objectContaining({ code }));
  });

  it('says which CA of the chain excludes the name', async () => {
    await expect(
      verifyIntermediateForActivation({
        certificate: pem('lower.pem'),
        keyPublicKey: spki('lower'),
        roots: [pem('root.pem')],
        intermediates: [pem('upper.pem')],
      }),
    ).rejects.toThrow(
      /Example Lower CA.*breaks the name constraints of .*Example Upper CA.*bad\.example\.com/,
    );
  });
});

test('a certificate whose extension does not parse is refused as activation.certificate_invalid, not thrown raw', async () => {
  // Found by the parser fuzzer (issue #34): one flipped byte inside the intermediate's basic
  // constraints made the reader throw a bare error from the extension parser.
  const fixture = readFileSync(
    join(import.meta.dirname, '../slow/fuzz/fixtures/parser-certificate/c4e446267d02f019.bin'),
  );
  await expect(
    verifyIntermediateForActivation({
      certificate: new Uint8Array(fixture),
      keyPublicKey: new Uint8Array(91),
      roots: [],
    }),
  ).rejects.toMatchObject({ code: 'activation.certificate_invalid' });
});
