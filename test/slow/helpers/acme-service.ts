import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { createLogger } from '../../../src/api/logger.ts';
import { initDataDir } from '../../../src/cli/init.ts';
import { openRuntime, type Runtime } from '../../../src/cli/runtime.ts';
import { type Serving, serveDataDir } from '../../../src/cli/serve.ts';
import { newKeyAndCsr } from '../../helpers/openssl-csr.ts';

const TLS_POLICY = `# The CA's own TLS certificate for the ACME client tests: 127.0.0.1 only.
description: Signet's own HTTPS certificate in the ACME client tests.
issuer: dev-intermediate
validity: { default: P30D, max: P30D, min: PT1H, backdate: PT1M }
key_algorithms: [ecdsa-p256]
sans:
  min: 1
  max: 1
  ip:
    allow: [127.0.0.1/32]
extensions: { passthrough: [], others: refuse }
key_usage: [digitalSignature]
extended_key_usage: [serverAuth]
`;

export interface AcmeServiceOptions {
  dir: string;
  port: number;
  /** acme.validation values. */
  httpPort: number;
  tlsPort: number;
  dnsResolver?: string;
  /** Extra signet.yaml `acme` keys (rate limits for a benchmark). */
  acme?: Record<string, unknown>;
  /** Serve HTTPS with Signet's own certificate (default true). */
  https?: boolean;
  /** Runs on the initialised data folder before the server starts (files signet.yaml will name). */
  prepare?: (runtime: Runtime, dataDir: string) => Promise<void>;
}

export interface StartedAcmeService {
  serving: Serving;
  dataDir: string;
  directoryUrl: string;
  baseUrl: string;
  /** The dev root, PEM file: the trust anchor clients are given. */
  rootFile: string;
}

export async function startAcmeService(options: AcmeServiceOptions): Promise<StartedAcmeService> {
  const https = options.https ?? true;
  const dataDir = path.join(options.dir, 'data');
  const baseUrl = `${https ? 'https' : 'http'}://127.0.0.1:${options.port}`;
  const init = await initDataDir({ dataDir, port: options.port, publicUrl: baseUrl, log: () => {} });
  const configFile = path.join(dataDir, 'signet.yaml');
  const config = parseYaml(readFileSync(configFile, 'utf8')) as Record<string, Record<string, unknown>>;

  if (https) {
    writeFileSync(path.join(dataDir, 'policies', 'signet-tls.yaml'), TLS_POLICY);
    const keyFile = path.join(dataDir, 'secrets', 'tls.key');
    const csr = newKeyAndCsr({ keyFile, subject: '/', sans: ['IP:127.0.0.1'], format: 'PEM' }).toString();
    const runtime = await openRuntime({ dataDir, logger: createLogger({ level: 'silent' }) });
    try {
      const issued = await runtime.ca.issue({
        csr,
        policy: 'signet-tls',
        requester: { id: 'cli:test', kind: 'cli', policies: '*' },
      });
      writeFileSync(
        path.join(dataDir, 'certs', 'tls.pem'),
        `${issued.certificatePem}${issued.chainPem.join('')}`,
      );
      await options.prepare?.(runtime, dataDir);
    } finally {
      await runtime.close();
    }
    config.server = { ...config.server, tls: { cert: 'certs/tls.pem', key: 'secrets/tls.key' } };
  } else if (options.prepare) {
    const runtime = await openRuntime({ dataDir, logger: createLogger({ level: 'silent' }) });
    try {
      await options.prepare(runtime, dataDir);
    } finally {
      await runtime.close();
    }
  }
  config.acme = {
    ...config.acme,
    ...options.acme,
    validation: {
      httpPort: options.httpPort,
      tlsPort: options.tlsPort,
      ...(options.dnsResolver ? { dnsResolver: options.dnsResolver } : {}),
    },
  };
  config.log = { level: 'warn' };
  writeFileSync(configFile, stringifyYaml(config));
  process.env.SIGNET_LOG_LEVEL = 'silent';
  const serving = await serveDataDir({ dataDir });
  return {
    serving,
    dataDir,
    baseUrl,
    directoryUrl: `${baseUrl}/acme/dev/directory`,
    rootFile: init.rootCertificateFile,
  };
}
