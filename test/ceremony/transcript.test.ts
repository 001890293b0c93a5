import { execFileSync, spawnSync } from 'node:child_process';
import {
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  type KeyObject,
  sign,
} from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it, test } from 'vitest';
import { checkNetwork, type InterfaceObservation } from '../../src/ceremony/network.ts';
import {
  renderTranscriptMarkdown,
  TRANSCRIPT_FORMAT,
  type Transcript,
  transcriptBytes,
} from '../../src/ceremony/transcript.ts';
import { verifyTranscript } from '../../src/ceremony/transcript-signature.ts';
import { canonicalJson } from '../../src/lib/canonical-json.ts';
import { ecdsaP1363ToDer as p1363ToDer } from '../../src/x509/algorithms.ts';
import { hasTool } from '../helpers/tools.ts';

const haveOpenssl = hasTool('openssl', ['version']);

function sampleTranscript(signer: { publicKeySha256: string; algorithm: string }): Transcript {
  return {
    format: TRANSCRIPT_FORMAT,
    ceremony: {
      type: 'root',
      configFile: 'root.yaml',
      configSha256: 'ab'.repeat(32),
      policyUrl: 'https://example.com/cps#6.1',
    },
    participants: [{ name: 'Alice Example', role: 'ceremony administrator' }],
    startedAt: '2026-01-01T00:00:00Z',
    finishedAt: '2026-01-01T00:05:00Z',
    result: 'completed',
    network: { allowed: false, interfaces: [], up: [] },
    steps: [{ n: 1, time: '2026-01-01T00:00:00Z', name: 'Check the network', result: 'ok' }],
    keys: [],
    outputs: [{ path: 'root.pem', kind: 'certificate', sha256: 'cd'.repeat(32), bytes: 700 }],
    lint: [],
    custodians: [],
    signer: { role: 'root', label: 'root', uri: 'hsm:partition=root;label=root', ...signer },
  };
}

const spkiSha = (key: KeyObject) =>
  createHash('sha256')
    .update(key.export({ type: 'spki', format: 'der' }))
    .digest('hex');

interface Fixture {
  name: string;
  algorithm: string;
  keys: () => { publicKey: KeyObject; privateKey: KeyObject };
  /** Signs the way the partition does (ECDSA in P1363), then converts as the ceremony does. */
  signLikePartition: (data: Buffer, key: KeyObject) => Uint8Array;
  opensslVerify: (pub: string, sig: string, file: string) => string[];
}

const fixtures: Fixture[] = [
  {
    name: 'ECDSA P-384',
    algorithm: 'ecdsa-sha384',
    keys: () => generateKeyPairSync('ec', { namedCurve: 'P-384' }),
    signLikePartition: (data, key) => p1363ToDer(sign('sha384', data, { key, dsaEncoding: 'ieee-p1363' })),
    opensslVerify: (pub, sig, file) => ['dgst', '-sha384', '-verify', pub, '-signature', sig, file],
  },
  {
    name: 'ECDSA P-256',
    algorithm: 'ecdsa-sha256',
    keys: () => generateKeyPairSync('ec', { namedCurve: 'P-256' }),
    signLikePartition: (data, key) => p1363ToDer(sign('sha256', data, { key, dsaEncoding: 'ieee-p1363' })),
    opensslVerify: (pub, sig, file) => ['dgst', '-sha256', '-verify', pub, '-signature', sig, file],
  },
  {
    name: 'RSA 2048',
    algorithm: 'rsa-pkcs1-sha256',
    keys: () => generateKeyPairSync('rsa', { modulusLength: 2048 }),
    signLikePartition: (data, key) => sign('sha256', data, key),
    opensslVerify: (pub, sig, file) => ['dgst', '-sha256', '-verify', pub, '-signature', sig, file],
  },
  {
    name: 'Ed25519',
    algorithm: 'ed25519',
    keys: () => generateKeyPairSync('ed25519'),
    signLikePartition: (data, key) => sign(null, data, key),
    opensslVerify: (pub, sig, file) => [
      'pkeyutl',
      '-verify',
      '-pubin',
      '-inkey',
      pub,
      '-rawin',
      '-in',
      file,
      '-sigfile',
      sig,
    ],
  },
];

describe('a signed transcript', () => {
  test.each(fixtures)(
    'signed with $name verifies with signet and with openssl, and fails both once tampered',
    (f) => {
      const { publicKey, privateKey } = f.keys();
      const transcript = sampleTranscript({ publicKeySha256: spkiSha(publicKey), algorithm: f.algorithm });
      const bytes = transcriptBytes(transcript);
      const signature = f.signLikePartition(bytes, privateKey);
      const anchor = Buffer.from(publicKey.export({ type: 'spki', format: 'pem' }));

      expect(verifyTranscript({ transcript: bytes, signature, anchor }).transcript).toEqual(transcript);

      const tampered = Buffer.from(bytes.toString('utf8').replace('"completed"', '"completeD"'));
      expect(() => verifyTranscript({ transcript: tampered, signature, anchor })).toThrow(
        expect.objectContaining({ code: 'ceremony.transcript_signature_invalid' }),
      );

      if (!haveOpenssl) return;
      const dir = mkdtempSync(join(tmpdir(), 'signet-transcript-'));
      const pub = join(dir, 'pub.pem');
      const sig = join(dir, 't.json.sig');
      const good = join(dir, 't.json');
      const bad = join(dir, 'bad.json');
      writeFileSync(pub, anchor);
      writeFileSync(sig, signature);
      writeFileSync(good, bytes);
      writeFileSync(bad, tampered);
      const ok = spawnSync('openssl', f.opensslVerify(pub, sig, good), { encoding: 'utf8' });
      expect(ok.stdout + ok.stderr).toContain('Verified');
      expect(ok.status).toBe(0);
      const refused = spawnSync('openssl', f.opensslVerify(pub, sig, bad), { encoding: 'utf8' });
      expect(refused.status).not.toBe(0);
    },
  );

  it('refuses a transcript signed by another key than the anchor', () => {
    const signer = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const other = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const bytes = transcriptBytes(
      sampleTranscript({ publicKeySha256: spkiSha(signer.publicKey), algorithm: 'ecdsa-sha256' }),
    );
    const signature = p1363ToDer(
      sign('sha256', bytes, { key: signer.privateKey, dsaEncoding: 'ieee-p1363' }),
    );
    expect(() =>
      verifyTranscript({
        transcript: bytes,
        signature,
        anchor: other.publicKey.export({ type: 'spki', format: 'der' }),
      }),
    ).toThrow(expect.objectContaining({ code: 'ceremony.transcript_signature_invalid' }));
  });

  it('refuses a transcript that names an algorithm the anchor key cannot verify', () => {
    const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const bytes = transcriptBytes(
      sampleTranscript({ publicKeySha256: spkiSha(publicKey), algorithm: 'ecdsa-sha384' }),
    );
    const signature = p1363ToDer(sign('sha384', bytes, { key: privateKey, dsaEncoding: 'ieee-p1363' }));
    expect(() =>
      verifyTranscript({
        transcript: bytes,
        signature,
        anchor: Buffer.from(publicKey.export({ type: 'spki', format: 'pem' })),
      }),
    ).toThrow(expect.objectContaining({ code: 'ceremony.transcript_algorithm_mismatch' }));
  });

  it('refuses a signed transcript that is not in canonical form', () => {
    const { publicKey, privateKey } = generateKeyPairSync('ed25519');
    const transcript = sampleTranscript({ publicKeySha256: spkiSha(publicKey), algorithm: 'ed25519' });
    const bytes = Buffer.from(JSON.stringify(transcript, null, 2));
    expect(() =>
      verifyTranscript({
        transcript: bytes,
        signature: sign(null, bytes, privateKey),
        anchor: Buffer.from(publicKey.export({ type: 'spki', format: 'pem' })),
      }),
    ).toThrow(expect.objectContaining({ code: 'ceremony.transcript_malformed' }));
  });

  it('refuses a transcript whose recorded signer is not the anchor', () => {
    const { publicKey, privateKey } = generateKeyPairSync('ed25519');
    const bytes = transcriptBytes(
      sampleTranscript({ publicKeySha256: '00'.repeat(32), algorithm: 'ed25519' }),
    );
    expect(() =>
      verifyTranscript({
        transcript: bytes,
        signature: sign(null, bytes, privateKey),
        anchor: Buffer.from(publicKey.export({ type: 'spki', format: 'pem' })),
      }),
    ).toThrow(expect.objectContaining({ code: 'ceremony.transcript_signer_mismatch' }));
  });

  it.skipIf(!haveOpenssl)(
    'refuses an anchor certificate whose key usage omits digitalSignature (RFC 5280 §4.2.1.3)',
    () => {
      const dir = mkdtempSync(join(tmpdir(), 'signet-anchor-'));
      const key = join(dir, 'key.pem');
      const cert = join(dir, 'cert.pem');
      execFileSync('openssl', ['genpkey', '-algorithm', 'ed25519', '-out', key]);
      execFileSync('openssl', [
        'req',
        '-x509',
        '-key',
        key,
        '-out',
        cert,
        '-subj',
        '/CN=Example Root',
        '-days',
        '30',
        '-addext',
        'basicConstraints=critical,CA:TRUE',
        '-addext',
        'keyUsage=critical,keyCertSign,cRLSign',
      ]);
      const privateKey = createPrivateKey(readFileSync(key));
      const publicKey = createPublicKey(privateKey);
      const bytes = transcriptBytes(
        sampleTranscript({ publicKeySha256: spkiSha(publicKey), algorithm: 'ed25519' }),
      );
      expect(() =>
        verifyTranscript({
          transcript: bytes,
          signature: sign(null, bytes, privateKey),
          anchor: readFileSync(cert),
        }),
      ).toThrow(expect.objectContaining({ code: 'ceremony.transcript_anchor_not_allowed' }));
    },
  );

  it('refuses an anchor that is neither a certificate nor a public key', () => {
    expect(() =>
      verifyTranscript({
        transcript: Buffer.from('{}'),
        signature: Buffer.alloc(64),
        anchor: Buffer.from('hello'),
      }),
    ).toThrow(expect.objectContaining({ code: 'ceremony.anchor_invalid' }));
  });

  it('renders every key, output and step in its markdown', () => {
    const t = sampleTranscript({ publicKeySha256: 'ef'.repeat(32), algorithm: 'ecdsa-sha384' });
    const md = renderTranscriptMarkdown(t, { jsonFile: 't.json', signatureFile: 't.json.sig' });
    expect(md).toContain('ab'.repeat(32));
    expect(md).toContain('| root.pem | certificate | 700 |');
    expect(md).toContain('Check the network');
    expect(md).toContain('openssl dgst -sha384 -verify signer-pub.pem -signature t.json.sig t.json');
  });
});

describe('canonical JSON (RFC 8785)', () => {
  test.each([
    [{ b: 1, a: [true, null, 'x'] }, '{"a":[true,null,"x"],"b":1}'],
    [{ é: 1, z: 2, A: 3 }, '{"A":3,"z":2,"é":1}'],
    [{ s: 'line\nbreak "quoted"' }, '{"s":"line\\nbreak \\"quoted\\""}'],
    [{ skip: undefined, keep: 0 }, '{"keep":0}'],
  ])('%j is written as %s', (value, expected) => {
    expect(canonicalJson(value)).toBe(expected);
  });

  test.each([[1.5], [Number.NaN], [2 ** 60]])('refuses the number %d', (n) => {
    expect(() => canonicalJson({ n })).toThrow();
  });
});

describe('the network check', () => {
  const iface = (
    name: string,
    state: string,
    addresses: string[],
    loopback = false,
  ): InterfaceObservation => ({
    name,
    state,
    addresses,
    loopback,
  });

  test.each([
    ['only loopback', [iface('lo', 'unknown', ['127.0.0.1/8'], true)], []],
    ['a down link without addresses', [iface('lo', 'unknown', [], true), iface('eth0', 'down', [])], []],
    ['an up link', [iface('eth0', 'up', [])], ['eth0']],
    ['a link with an address', [iface('wlan0', 'dormant', ['192.0.2.7/24'])], ['wlan0']],
    ['a tunnel in unknown state', [iface('tun0', 'unknown', [])], ['tun0']],
  ])('with %s sees %j up', (_name, interfaces, up) => {
    const probe = () => interfaces;
    if (up.length === 0) {
      expect(checkNetwork({ allowNetwork: false, probe }).up).toEqual([]);
    } else {
      expect(() => checkNetwork({ allowNetwork: false, probe })).toThrow(
        expect.objectContaining({ code: 'ceremony.network_up' }),
      );
      const seen = checkNetwork({ allowNetwork: true, probe });
      expect(seen).toMatchObject({ allowed: true, up });
      expect(seen.interfaces).toEqual(interfaces);
    }
  });
});
