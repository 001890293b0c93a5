import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as x509 from '@peculiar/x509';
import * as pkijs from 'pkijs';
import { afterAll, beforeAll, describe, expect, it, test } from 'vitest';
import { SignetCryptoEngine } from '../../src/x509/crypto-engine.ts';
import { contextTag, sequence, tlv } from '../../src/x509/der.ts';
import { encodeName } from '../../src/x509/names.ts';
import { PathValidationError, validateCertificatePath } from '../../src/x509/path-validation.ts';
import { hasTool } from '../helpers/tools.ts';
import { type FixtureAlgorithm, makeCertificate, makeHierarchy, type Node } from './path-fixtures.ts';

const now = () => new Date();
const DAY = 86_400_000;

async function refusal(promise: Promise<unknown>): Promise<PathValidationError> {
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(PathValidationError);
    return error as PathValidationError;
  }
  throw new Error('the path validated');
}

describe.each<FixtureAlgorithm>(['ecdsa-p256', 'ecdsa-p384', 'rsa-2048', 'ed25519'])(
  'a %s hierarchy',
  (algorithm) => {
    let h: Awaited<ReturnType<typeof makeHierarchy>>;
    beforeAll(async () => {
      h = await makeHierarchy(algorithm);
    });

    it('validates leaf -> intermediate -> root, intermediates in any order, and says which anchor', async () => {
      const other = await makeCertificate({ algorithm });
      const result = await validateCertificatePath({
        certificate: h.leaf.der,
        intermediates: [other.der, h.intermediate.der],
        trustAnchors: [other.der, h.root.der],
        time: now(),
      });
      expect(result.path).toEqual([h.leaf.der, h.intermediate.der, h.root.der]);
      expect(result.anchorIndex).toBe(1);
    });

    it('validates an issuing intermediate as a CA that will issue', async () => {
      const result = await validateCertificatePath({
        certificate: h.intermediate.der,
        trustAnchors: [h.root.der],
        time: now(),
        targetIsCa: true,
      });
      expect(result.path).toHaveLength(2);
    });

    it('refuses a path whose signature does not verify', async () => {
      const tampered = Uint8Array.from(h.leaf.der);
      tampered[tampered.length - 3]! ^= 0x01;
      const error = await refusal(
        validateCertificatePath({
          certificate: tampered,
          intermediates: [h.intermediate.der],
          trustAnchors: [h.root.der],
          time: now(),
        }),
      );
      expect(error.reason).toBe('no_path');
    });
  },
);

describe('Ed25519 in pkijs', () => {
  it("needs Signet's engine: pkijs's own cannot verify an Ed25519 certificate (RFC 8410)", async () => {
    const { root, intermediate } = await makeHierarchy('ed25519');
    const child = pkijs.Certificate.fromBER(intermediate.der);
    const parent = pkijs.Certificate.fromBER(root.der);
    const plain = new pkijs.CryptoEngine({ crypto: globalThis.crypto });
    await expect(child.verify(parent, plain)).rejects.toThrow();
    expect(await child.verify(parent, new SignetCryptoEngine())).toBe(true);
    expect(await child.verify(child, new SignetCryptoEngine())).toBe(false);
  });
});

describe('what is checked along the path', () => {
  let root: Node;
  beforeAll(async () => {
    root = await makeCertificate({ subject: 'CN=Example Root,O=Example' });
  });

  const validate = (
    certificate: Node,
    intermediates: Node[],
    extra: { targetIsCa?: boolean; time?: Date } = {},
  ) =>
    validateCertificatePath({
      certificate: certificate.der,
      intermediates: intermediates.map((n) => n.der),
      trustAnchors: [root.der],
      time: extra.time ?? now(),
      ...(extra.targetIsCa ? { targetIsCa: true } : {}),
    });

  test.each<
    [string, () => Promise<{ target: Node; chain: Node[]; targetIsCa?: boolean; time?: Date }>, string]
  >([
    [
      'an intermediate that has expired',
      async () => {
        const inter = await makeCertificate({
          issuer: root,
          notBefore: new Date(Date.now() - 10 * DAY),
          notAfter: new Date(Date.now() - DAY),
        });
        return { target: await makeCertificate({ issuer: inter, ca: false }), chain: [inter] };
      },
      'expired',
    ],
    [
      'a certificate not valid yet',
      async () => ({
        target: await makeCertificate({ issuer: root, notBefore: new Date(Date.now() + DAY) }),
        chain: [],
        targetIsCa: true,
      }),
      'not_yet_valid',
    ],
    [
      'an issuer that is not a CA',
      async () => {
        const notCa = await makeCertificate({ issuer: root, ca: false, keyUsage: null });
        return { target: await makeCertificate({ issuer: notCa, ca: false }), chain: [notCa] };
      },
      'not_ca',
    ],
    [
      'an issuer without keyCertSign',
      async () => {
        const noSign = await makeCertificate({ issuer: root, keyUsage: x509.KeyUsageFlags.cRLSign });
        return { target: await makeCertificate({ issuer: noSign, ca: false }), chain: [noSign] };
      },
      'not_ca',
    ],
    [
      'a target that is to issue but is not a CA',
      async () => ({
        target: await makeCertificate({ issuer: root, ca: false }),
        chain: [],
        targetIsCa: true,
      }),
      'not_ca',
    ],
    [
      'a CA below a pathLenConstraint of 0',
      async () => {
        const zero = await makeCertificate({ issuer: root, pathLength: 0 });
        return { target: await makeCertificate({ issuer: zero }), chain: [zero], targetIsCa: true };
      },
      'path_length',
    ],
    [
      'an issuing CA with a critical extension nobody understands',
      async () => ({
        target: await makeCertificate({
          issuer: root,
          extensions: [new x509.Extension('1.3.6.1.4.1.55555.1', true, new Uint8Array([5, 0]))],
        }),
        chain: [],
        targetIsCa: true,
      }),
      'critical_extension',
    ],
    [
      'a chain with a missing intermediate',
      async () => {
        const inter = await makeCertificate({ issuer: root });
        return { target: await makeCertificate({ issuer: inter, ca: false }), chain: [] };
      },
      'no_path',
    ],
  ])('refuses %s', async (_name, build, reason) => {
    const { target, chain, targetIsCa, time } = await build();
    const error = await refusal(
      validate(target, chain, { ...(targetIsCa ? { targetIsCa } : {}), ...(time ? { time } : {}) }),
    );
    expect(error.reason).toBe(reason);
  });

  it('accepts a leaf below a pathLenConstraint of 0 (a leaf is not counted)', async () => {
    const zero = await makeCertificate({ issuer: root, pathLength: 0 });
    const leaf = await makeCertificate({ issuer: zero, ca: false });
    await expect(validate(leaf, [zero])).resolves.toMatchObject({ path: [leaf.der, zero.der, root.der] });
  });

  it('takes a root that is itself a trust anchor as its own path', async () => {
    const result = await validateCertificatePath({
      certificate: root.der,
      trustAnchors: [root.der],
      time: now(),
      targetIsCa: true,
    });
    expect(result.path).toEqual([root.der]);
  });

  it('refuses garbage as malformed', async () => {
    const error = await refusal(
      validateCertificatePath({
        certificate: new Uint8Array([1, 2, 3]),
        trustAnchors: [root.der],
        time: now(),
      }),
    );
    expect(error.reason).toBe('malformed');
  });
});

test('an ECDSA signature value that is not DER is refused, as openssl refuses it (found by the parser fuzzer)', async () => {
  const root = await makeCertificate({ subject: 'CN=Example Root,O=Example', algorithm: 'ecdsa-p384' });
  const inter = await makeCertificate({ issuer: root, algorithm: 'ecdsa-p256' });
  const validate = (der: Uint8Array) =>
    validateCertificatePath({ certificate: der, trustAnchors: [root.der], time: now(), targetIsCa: true });
  await expect(validate(inter.der)).resolves.toBeDefined();
  // The signature BIT STRING ends the certificate: 03 len 00 | 30 L 02 ... 02 ...; L less two
  // leaves the value's own SEQUENCE length wrong while r and s stay whole.
  const changed = Uint8Array.from(inter.der);
  let value = -1;
  for (let i = changed.length - 4; i > 0 && value < 0; i--) {
    const bitString = changed[i] === 0x03 && changed[i + 1] === changed.length - i - 2;
    if (bitString && changed[i + 2] === 0x00 && changed[i + 3] === 0x30) value = i + 3;
  }
  expect(value).toBeGreaterThan(0);
  changed[value + 1] = (changed[value + 1] as number) - 2;
  // As for any signature that does not verify, no issuer is found for it (pkijs's verdict).
  const refused = await refusal(validate(changed));
  expect(refused.reason).toBe('no_path');
});

describe('name constraints along the whole chain (RFC 5280 §6.1.3 (b), (c), §6.1.4 (g))', () => {
  const haveOpenssl = hasTool('openssl', ['version']);
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'signet-nc-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  /** What OpenSSL 3 says of the same chain: the independent verifier. */
  function opensslAccepts(root: Node, intermediates: Node[], leaf: Node): boolean {
    const write = (name: string, nodes: Node[]) => {
      writeFileSync(join(dir, name), nodes.map((n) => n.pem).join('\n'));
      return join(dir, name);
    };
    const result = spawnSync(
      'openssl',
      [
        'verify',
        '-CAfile',
        write('root.pem', [root]),
        '-untrusted',
        write('chain.pem', intermediates),
        write('leaf.pem', [leaf]),
      ],
      { encoding: 'utf8' },
    );
    return result.status === 0;
  }

  async function chain(
    upper: Parameters<typeof makeCertificate>[0],
    lower: Parameters<typeof makeCertificate>[0],
    leafSans: string[],
  ) {
    const root = await makeCertificate({ subject: 'CN=Example Root,O=Example' });
    const upperCa = await makeCertificate({
      subject: 'CN=Example Upper CA,O=Example',
      issuer: root,
      ...upper,
    });
    const lowerCa = await makeCertificate({
      subject: 'CN=Example Lower CA,O=Example',
      issuer: upperCa,
      ...lower,
    });
    const leaf = await makeCertificate({
      issuer: lowerCa,
      ca: false,
      subject: `CN=${leafSans[0]}`,
      sans: leafSans.map((value) => ({ type: 'dns', value })),
    });
    return { root, upperCa, lowerCa, leaf };
  }

  const validateLeaf = (c: Awaited<ReturnType<typeof chain>>) =>
    validateCertificatePath({
      certificate: c.leaf.der,
      intermediates: [c.lowerCa.der, c.upperCa.der],
      trustAnchors: [c.root.der],
      time: now(),
    });

  it('refuses a name the lower CA permits but an upper CA excludes', async () => {
    const c = await chain(
      { nameConstraints: { excluded: [{ type: 'dns', value: 'bad.example.com' }] } },
      { nameConstraints: { permitted: [{ type: 'dns', value: 'example.com' }] } },
      ['bad.example.com'],
    );
    const error = await refusal(validateLeaf(c));
    expect(error.reason).toBe('name_constraints');
    expect(error.message).toContain('Example Upper CA');
    if (haveOpenssl) expect(opensslAccepts(c.root, [c.lowerCa, c.upperCa], c.leaf)).toBe(false);
  });

  it('holds a name to the permitted subtrees of every CA, not their union (which pkijs alone accepts)', async () => {
    const c = await chain(
      { nameConstraints: { permitted: [{ type: 'dns', value: 'example.com' }] } },
      { nameConstraints: { permitted: [{ type: 'dns', value: 'example.org' }] } },
      ['www.example.org'],
    );
    // pkijs on its own: the union of permitted subtrees lets the name through.
    const engine = new pkijs.CertificateChainValidationEngine({
      trustedCerts: [pkijs.Certificate.fromBER(c.root.der)],
      certs: [c.lowerCa, c.upperCa, c.leaf].map((n) => pkijs.Certificate.fromBER(n.der)),
      checkDate: now(),
    });
    expect((await engine.verify({}, new SignetCryptoEngine())).result).toBe(true);
    const error = await refusal(validateLeaf(c));
    expect(error.reason).toBe('name_constraints');
    expect(error.message).toContain('outside every permitted dns subtree');
    if (haveOpenssl) expect(opensslAccepts(c.root, [c.lowerCa, c.upperCa], c.leaf)).toBe(false);
  });

  it("applies the trust anchor's own name constraints", async () => {
    const root = await makeCertificate({
      subject: 'CN=Example Constrained Root,O=Example',
      nameConstraints: { excluded: [{ type: 'dns', value: 'example.net' }] },
    });
    const inter = await makeCertificate({ issuer: root });
    const leaf = await makeCertificate({
      issuer: inter,
      ca: false,
      sans: [{ type: 'dns', value: 'www.example.net' }],
    });
    const error = await refusal(
      validateCertificatePath({
        certificate: leaf.der,
        intermediates: [inter.der],
        trustAnchors: [root.der],
        time: now(),
      }),
    );
    expect(error.reason).toBe('name_constraints');
    if (haveOpenssl) expect(opensslAccepts(root, [inter], leaf)).toBe(false);
  });

  it('accepts names inside every CA, and reports the constraints above the certificate', async () => {
    const c = await chain(
      { nameConstraints: { permitted: [{ type: 'dns', value: 'example.com' }] } },
      { nameConstraints: { permitted: [{ type: 'dns', value: 'www.example.com' }] } },
      ['www.example.com'],
    );
    const result = await validateLeaf(c);
    expect(result.path).toHaveLength(4);
    expect(
      result.superiorNameConstraints.map((nc) => nc.permitted.map((b) => 'value' in b && b.value)),
    ).toEqual([['www.example.com'], ['example.com']]);
    if (haveOpenssl) expect(opensslAccepts(c.root, [c.lowerCa, c.upperCa], c.leaf)).toBe(true);
  });

  it("refuses an issuing CA whose subject lies outside an upper CA's directoryName subtree", async () => {
    const root = await makeCertificate({ subject: 'CN=Example Root,O=Example' });
    const upper = await makeCertificate({
      issuer: root,
      subject: 'CN=Example Upper CA,O=Example',
      extensions: [
        // permittedSubtrees: directoryName O=Example (RFC 5280 §4.2.1.10)
        new x509.Extension(
          '2.5.29.30',
          true,
          sequence(
            tlv(
              contextTag(0, true),
              sequence(tlv(contextTag(4, true), encodeName([{ type: 'O', value: 'Example' }]))),
            ),
          ),
        ),
      ],
    });
    const stray = await makeCertificate({ issuer: upper, subject: 'CN=Stray CA,O=Other' });
    const good = await makeCertificate({ issuer: upper, subject: 'O=Example,CN=Good CA' });
    const check = (target: Node) =>
      validateCertificatePath({
        certificate: target.der,
        intermediates: [upper.der],
        trustAnchors: [root.der],
        time: now(),
        targetIsCa: true,
      });
    expect((await refusal(check(stray))).reason).toBe('name_constraints');
    await expect(check(good)).resolves.toMatchObject({ path: [good.der, upper.der, root.der] });
    if (haveOpenssl) {
      const leafOf = async (issuer: Node) =>
        makeCertificate({ issuer, ca: false, subject: 'O=Example,CN=leaf' });
      expect(opensslAccepts(root, [stray, upper], await leafOf(stray))).toBe(false);
    }
  });
});

describe.skipIf(!hasTool('openssl', ['version']))('agreement with openssl verify', () => {
  it('accepts the same Ed25519 and P-384 hierarchies openssl accepts', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'signet-pv-'));
    try {
      for (const algorithm of ['ed25519', 'ecdsa-p384'] as const) {
        const { root, intermediate, leaf } = await makeHierarchy(algorithm);
        writeFileSync(join(dir, 'root.pem'), root.pem);
        writeFileSync(join(dir, 'inter.pem'), intermediate.pem);
        writeFileSync(join(dir, 'leaf.pem'), leaf.pem);
        const out = execFileSync(
          'openssl',
          [
            'verify',
            '-CAfile',
            join(dir, 'root.pem'),
            '-untrusted',
            join(dir, 'inter.pem'),
            join(dir, 'leaf.pem'),
          ],
          { encoding: 'utf8' },
        );
        expect(out).toContain('OK');
        await expect(
          validateCertificatePath({
            certificate: leaf.der,
            intermediates: [intermediate.der],
            trustAnchors: [root.der],
            time: now(),
          }),
        ).resolves.toBeDefined();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
