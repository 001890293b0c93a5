import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { Pkcs11Token } from '../../src/hsm/pkcs11/token.ts';
import { createSoftHsmToken, type SoftHsmToken, softHsmAvailable } from '../helpers/softhsm.ts';
import { hasTool } from '../helpers/tools.ts';
import { EXAMPLES, openssl, pinFiles, signet, tempDir } from './helpers.ts';

/**
 * The root ceremony with the root key on a PKCS#11 token (issue #25): the example root.yaml with
 * `offline-partition.create.pkcs11` added, run by the real CLI against SoftHSM2. The custodian
 * shares unseal the partition folder (users, audit log); the key is the token's.
 */
describe.runIf(softHsmAvailable() && hasTool('openssl', ['version']))(
  'a root ceremony on a SoftHSM2 token',
  () => {
    let token: SoftHsmToken;
    let dir: string;
    const saved = { conf: process.env.SOFTHSM2_CONF, pin: process.env.SIGNET_PKCS11_PIN };

    beforeAll(() => {
      token = createSoftHsmToken('root-token');
      dir = tempDir('ceremony-pkcs11');
      // The ceremony's partition process inherits these (the token PIN never sits in the YAML).
      process.env.SOFTHSM2_CONF = token.conf;
      process.env.SIGNET_PKCS11_PIN = token.pin;
    });

    afterAll(() => {
      for (const [name, value] of [
        ['SOFTHSM2_CONF', saved.conf],
        ['SIGNET_PKCS11_PIN', saved.pin],
      ] as const) {
        if (value === undefined) delete process.env[name];
        else process.env[name] = value;
      }
      token?.cleanup();
    });

    it('creates the root key on the token and self-signs the root certificate through it', async () => {
      const config = parse(readFileSync(join(EXAMPLES, 'root.yaml'), 'utf8'));
      config['offline-partition'].create.pkcs11 = { module: token.module, 'token-label': 'root-token' };
      const file = join(dir, 'root-on-token.yaml');
      writeFileSync(file, stringify(config));
      const pins = pinFiles(dir);
      const run = signet([
        'ceremony',
        'run',
        file,
        '--output-dir',
        dir,
        '--allow-network',
        '--officer-pin-file',
        pins.officer,
        '--pin-file',
        pins.user,
      ]);
      expect(run.output).toContain('Ceremony completed');
      expect(run.status).toBe(0);
      expect(
        openssl(['verify', '-attime', '1767225600', '-CAfile', join(dir, 'root.pem'), join(dir, 'root.pem')])
          .status,
      ).toBe(0);
      const transcript = JSON.parse(readFileSync(join(dir, 'transcripts/root.json'), 'utf8'));
      expect(transcript.keys[0]).toMatchObject({
        role: 'root',
        uri: 'pkcs11:token=root-token;object=example-root-r1',
        created: true,
      });
      expect(JSON.parse(readFileSync(join(dir, 'root-partition', 'pkcs11.json'), 'utf8'))).toEqual({
        module: token.module,
        tokenLabel: 'root-token',
      });
      // The key is on the token, and it is the certificate's key.
      const keys = await Pkcs11Token.open({ module: token.module, tokenLabel: 'root-token', pin: token.pin });
      try {
        const [key] = (await keys.list()).filter((k) => k.label === 'example-root-r1');
        expect(key).toMatchObject({ algorithm: 'ecdsa-p384', extractable: false });
        const certificateKey = openssl(['x509', '-in', join(dir, 'root.pem'), '-noout', '-pubkey']).output;
        const tokenKey = openssl([
          'pkey',
          '-pubin',
          '-inform',
          'DER',
          '-in',
          writeDer(key!.publicKey),
        ]).output;
        expect(tokenKey).toBe(certificateKey);
      } finally {
        await keys.close();
      }
    }, 120_000);

    function writeDer(bytes: Uint8Array): string {
      const path = join(dir, 'token-key.der');
      writeFileSync(path, bytes);
      return path;
    }
  },
);
