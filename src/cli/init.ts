import { randomBytes, type webcrypto } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, copyFile, mkdir, readdir, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createApiKey } from '../api/auth/api-keys.ts';
import type { LoadedIssuer } from '../ca/issuers.ts';
import { resolveIn } from '../config/config.ts';
import { createApiKeysRepository } from '../db/api-keys.repository.ts';
import { createCertificatesRepository } from '../db/certificates.repository.ts';
import { createCrlsRepository } from '../db/crls.repository.ts';
import { openDatabase } from '../db/database.ts';
import { createIssuersRepository } from '../db/issuers.repository.ts';
import { createOcspRespondersRepository } from '../db/ocsp-responders.repository.ts';
import { RemotePartition } from '../hsm/client.ts';
import { initPartition } from '../hsm/custody/index.ts';
import { parseLinkUrl } from '../hsm/link.ts';
import { writePkcs11Spec } from '../hsm/pkcs11/folder.ts';
import { Pkcs11Token } from '../hsm/pkcs11/token.ts';
import { startPartitionProcess } from '../hsm/process.ts';
import type { KeyAlgorithm } from '../hsm/types.ts';
import { createPartitionCrypto, getCryptoKey } from '../hsm/webcrypto.ts';
import { createIntermediateCertificate, createRootCertificate } from '../issuance/ca-certificates.ts';
import { type Clock, systemClock } from '../lib/clock.ts';
import { buildCrl } from '../revocation/crl-builder.ts';
import { createCrlImport } from '../revocation/crl-import.ts';
import { partitionSigner } from '../revocation/partition-signer.ts';
import { createIssuerContext } from '../x509/issuer.ts';
import { writeLinkCertificates } from './link-certs.ts';
import { issueResponder } from './ocsp-responders.ts';

/**
 * `signet init`: a data folder with everything the embedded default needs (DESIGN.md "Data
 * folder"): signet.yaml, the `issuing` and `root` partitions, the PGlite database, the dev-root
 * and dev-intermediate issuers, the shipped policies, and secrets (mode 0600) under secrets/.
 * The officers' PINs go to secrets/offline/: the running server never reads them.
 */
export interface InitOptions {
  dataDir: string;
  publicUrl: string;
  port: number;
  clock?: Clock;
  /** DATABASE_URL: initialise PostgreSQL instead of the embedded PGlite. */
  databaseUrl?: string;
  rootAlgorithm?: KeyAlgorithm;
  intermediateAlgorithm?: KeyAlgorithm;
  /**
   * tls://HOST:PORT (issue #22): the spawned issuing partition also listens there with mutual TLS,
   * and the node reaches it that way; a link CA and both certificates go to secrets/link/.
   */
  partitionListen?: string;
  log?: (line: string) => void;
  /**
   * Keep both partitions' keys on PKCS#11 tokens (issue #25): the issuing key on `tokenLabel`,
   * the dev root's on `rootTokenLabel` (default the same token). Users, PINs and audit logs stay
   * in the partition folders as usual.
   */
  pkcs11?: {
    module: string;
    tokenLabel: string;
    rootTokenLabel?: string;
    /** The tokens' user PIN; checked before anything is created. */
    pin: string;
    /** Where the PIN lives, written into signet.yaml as tokenPinFile; else the server needs SIGNET_PKCS11_PIN. */
    pinFile?: string;
  };
}

export interface InitResult {
  configFile: string;
  adminKeyFile: string;
  unsealSecretFile: string;
  rootCertificateFile: string;
}

const REPO_POLICIES = fileURLToPath(new URL('../../policies', import.meta.url));
const DAY = 24 * 60 * 60;
/** The dev root's first CRL lasts a year: the crl ceremony makes the next (README "Root CRLs"). */
const ROOT_CRL_VALIDITY_SECONDS = 365 * DAY;

export class AlreadyInitialisedError extends Error {}

const pin = () => randomBytes(18).toString('base64url');

async function writeSecret(file: string, content: string): Promise<void> {
  // 'wx': a secret is written once and never overwritten.
  await writeFile(file, content, { mode: 0o600, flag: 'wx' });
  await chmod(file, 0o600);
}

// biome-ignore lint/complexity/noExcessiveLinesPerFunction: a straight line of init steps in the order they must happen (each writes what the next reads)
export async function initDataDir(options: InitOptions): Promise<InitResult> {
  const { dataDir, publicUrl } = options;
  const clock = options.clock ?? systemClock;
  const log = options.log ?? (() => {});
  const configFile = path.join(dataDir, 'signet.yaml');
  if (existsSync(configFile))
    throw new AlreadyInitialisedError(`${configFile} exists: ${dataDir} is already initialised`);

  // The folder is private whether init creates it or finds it (issue #17): mkdir's mode applies
  // only to folders it creates.
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  await chmod(dataDir, 0o700);
  const secrets = path.join(dataDir, 'secrets');
  const offline = path.join(secrets, 'offline');
  await mkdir(offline, { recursive: true, mode: 0o700 });
  await chmod(secrets, 0o700);
  await mkdir(path.join(dataDir, 'hsm'), { recursive: true, mode: 0o700 });
  await mkdir(path.join(dataDir, 'certs'), { recursive: true });

  // Both tokens answer before anything is written: a wrong PIN or label leaves no folder behind.
  const tokenOf = (name: string) =>
    options.pkcs11 && {
      module: options.pkcs11.module,
      tokenLabel:
        name === 'root'
          ? (options.pkcs11.rootTokenLabel ?? options.pkcs11.tokenLabel)
          : options.pkcs11.tokenLabel,
    };
  if (options.pkcs11) {
    for (const name of new Set([
      options.pkcs11.tokenLabel,
      options.pkcs11.rootTokenLabel ?? options.pkcs11.tokenLabel,
    ])) {
      const token = await Pkcs11Token.open({
        module: options.pkcs11.module,
        tokenLabel: name,
        pin: options.pkcs11.pin,
      });
      await token.close();
    }
  }

  if (options.partitionListen !== undefined) {
    const { host } = parseLinkUrl(options.partitionListen);
    const link = await writeLinkCertificates({
      dir: path.join(secrets, 'link'),
      hosts: [host],
      now: clock.now(),
    });
    log(`wrote a link CA and the partition's and this node's certificates in ${link.dir}`);
  }

  // The partitions: `issuing` (online, the CA's signing keys) and `root` (the dev root's key).
  const partitions: Record<
    string,
    { socket: string; secretFile: string; caPinFile: string; caPin: string; officerPin: string }
  > = {};
  log(`creating the partitions root and issuing in ${path.join(dataDir, 'hsm')}, sealed`);
  for (const name of ['root', 'issuing']) {
    const officerPin = pin();
    const caPin = pin();
    const secretFile = path.join(secrets, `unseal-${name}`);
    const caPinFile = path.join(secrets, `pin-${name}-ca`);
    await initPartition({
      dir: path.join(dataDir, 'hsm', name),
      name,
      sealing: { kind: 'secret' },
      officerPin,
      userPin: caPin,
      clock,
      saveSecrets: async (material) => writeSecret(secretFile, material.secret!),
    });
    const token = tokenOf(name);
    if (token) {
      await writePkcs11Spec(path.join(dataDir, 'hsm', name), token);
      log(`partition ${name} keeps its keys on token ${token.tokenLabel} (${token.module})`);
    }
    await writeSecret(path.join(offline, `pin-${name}-officer`), `${officerPin}\n`);
    await writeSecret(caPinFile, `${caPin}\n`);
    partitions[name] = {
      socket: path.join(dataDir, 'hsm', `${name}.sock`),
      secretFile,
      caPinFile,
      caPin,
      officerPin,
    };
    log(`created partition ${name} in ${path.join(dataDir, 'hsm', name)}`);
  }

  // Start both partitions, make the keys, sign the dev hierarchy through them.
  log('starting both partitions to generate the dev root and intermediate keys inside them');
  const started = [];
  const clients: RemotePartition[] = [];
  try {
    const open = async (name: string, user: 'officer' | 'ca') => {
      const p = partitions[name]!;
      const { readFile } = await import('node:fs/promises');
      const secret = new Uint8Array(await readFile(p.secretFile));
      const client = await RemotePartition.connect({
        socketPath: p.socket,
        onConnect: async (conn) => {
          if ((await conn.status()).state === 'sealed') await conn.unseal({ secret });
          await conn.login({ user, pin: user === 'officer' ? p.officerPin : p.caPin });
        },
      });
      clients.push(client);
      return client;
    };
    for (const name of ['root', 'issuing']) {
      started.push(
        await startPartitionProcess({
          dir: path.join(dataDir, 'hsm', name),
          socketPath: partitions[name]!.socket,
          name,
          ...(options.pkcs11 ? { env: { ...process.env, SIGNET_PKCS11_PIN: options.pkcs11.pin } } : {}),
        }),
      );
    }
    const rootOfficer = await open('root', 'officer');
    const issuingOfficer = await open('issuing', 'officer');
    const rootKey = await rootOfficer.createKey({
      label: 'dev-root',
      algorithm: options.rootAlgorithm ?? 'ecdsa-p384',
      purposes: ['certificate', 'crl', 'ocsp', 'other'],
    });
    const intermediateKey = await issuingOfficer.createKey({
      label: 'dev-intermediate',
      algorithm: options.intermediateAlgorithm ?? 'ecdsa-p256',
    });
    // The key EAB HMAC keys are sealed under (acme.eabKey, src/acme/eab.ts): Ed25519 of purpose
    // 'other' only, which the PKCS#11 front end does not expose.
    const eabKey = await issuingOfficer.createKey({
      label: 'acme-eab',
      algorithm: 'ed25519',
      purposes: ['other'],
    });
    // dev-intermediate's delegated OCSP responder (issue #27): its own key, purpose ocsp only;
    // the server re-issues its certificate before it expires (`signet ocsp-responder rotate`
    // makes a new key).
    const responderKey = await issuingOfficer.createKey({
      label: 'dev-intermediate-ocsp',
      algorithm: 'ecdsa-p256',
      purposes: ['ocsp'],
    });
    log(`created keys ${rootKey.uri}, ${intermediateKey.uri}, ${responderKey.uri} and ${eabKey.uri}`);

    const rootUser = await open('root', 'ca');
    const rootCrypto = createPartitionCrypto(rootUser);
    const rootSigningKey = await getCryptoKey(rootUser, { id: rootKey.id }, { purpose: 'certificate' });
    const urls = (id: string) => ({
      crlUrl: `${publicUrl}/crl/${id}.crl`,
      ocspUrl: `${publicUrl}/ocsp`,
      caIssuersUrl: `${publicUrl}/v1/issuers/${id}/certificate`,
    });
    const root = await createRootCertificate({
      id: 'dev-root',
      crypto: rootCrypto,
      signingKey: rootSigningKey as unknown as webcrypto.CryptoKey,
      publicKey: rootKey.publicKey,
      subject: [
        { type: 'O', value: 'Signet development' },
        { type: 'CN', value: 'Signet Dev Root' },
      ],
      clock,
      validitySeconds: 10 * 365 * DAY,
      pathLength: 1,
    });
    const rootContext = createIssuerContext({ id: 'dev-root', certificate: root.der, ...urls('dev-root') });
    const intermediate = await createIntermediateCertificate({
      issuer: rootContext,
      crypto: rootCrypto,
      signingKey: rootSigningKey as unknown as webcrypto.CryptoKey,
      publicKey: intermediateKey.publicKey,
      subject: [
        { type: 'O', value: 'Signet development' },
        { type: 'CN', value: 'Signet Dev Intermediate' },
      ],
      clock,
      validitySeconds: 5 * 365 * DAY,
      pathLength: 0,
      // The intermediate signs its own OCSP responses (RFC 6960 §4.2.2.2: the CA itself).
      digitalSignature: true,
    });
    // The root's first CRL (issue #18), while its partition is open: the online CA serves it at the
    // URL the intermediate names, so revocation checks along the whole chain succeed from the start.
    // Later ones come from the crl ceremony (ceremonies/README.md) and `signet crl import`.
    const rootCrl = await buildCrl({
      issuer: root.der,
      signer: partitionSigner(
        rootCrypto,
        await getCryptoKey(rootUser, { id: rootKey.id }, { purpose: 'crl' }),
        'crl',
      ),
      number: 1n,
      thisUpdate: clock.now(),
      nextUpdate: new Date(clock.now().getTime() + ROOT_CRL_VALIDITY_SECONDS * 1000),
      // RFC 5280 §5.2.5: a root revokes only CA certificates. No distributionPoint name: with one,
      // the root itself would fall outside the CRL's scope for `openssl verify -crl_check_all`.
      issuingDistributionPoint: { onlyContainsCACerts: true },
    });
    const rootCertificateFile = path.join(dataDir, 'certs', 'dev-root.pem');
    await writeFile(rootCertificateFile, root.pem, { flag: 'wx' });
    await writeFile(path.join(dataDir, 'certs', 'dev-intermediate.pem'), intermediate.pem, { flag: 'wx' });
    log('signed the dev-root and dev-intermediate certificates');

    // Policies: a copy of the shipped examples, for the operator to edit.
    const policiesDir = path.join(dataDir, 'policies');
    await mkdir(policiesDir, { recursive: true });
    for (const file of await readdir(REPO_POLICIES)) {
      if (file.endsWith('.yaml') || file === 'README.md') {
        await copyFile(path.join(REPO_POLICIES, file), path.join(policiesDir, file));
      }
    }

    // The database: issuers and the first admin API key. Creating PGlite's cluster and applying
    // the migrations is init's longest step (issue #33: say so rather than go quiet).
    log(
      options.databaseUrl
        ? 'applying the migrations to the PostgreSQL database (DATABASE_URL)'
        : `creating the database in ${path.join(dataDir, 'db')} (PGlite) and applying the migrations; this takes several seconds`,
    );
    const database = await openDatabase(options.databaseUrl ? { url: options.databaseUrl } : { dataDir });
    log('database ready; recording the issuers');
    const adminKeyFile = path.join(secrets, 'admin-api-key');
    try {
      const issuers = createIssuersRepository({ db: database.db, clock });
      await issuers.upsert({
        id: 'dev-root',
        name: 'Signet Dev Root',
        certificateDer: root.der,
        keyUri: rootKey.uri,
        status: 'active',
        crlUrls: [urls('dev-root').crlUrl],
        ocspUrls: [],
        caIssuersUrls: [],
      });
      await issuers.upsert({
        id: 'dev-intermediate',
        name: 'Signet Dev Intermediate',
        parentId: 'dev-root',
        certificateDer: intermediate.der,
        keyUri: intermediateKey.uri,
        status: 'active',
        crlUrls: [urls('dev-intermediate').crlUrl],
        ocspUrls: [urls('dev-intermediate').ocspUrl],
        caIssuersUrls: [urls('dev-intermediate').caIssuersUrl],
      });
      const issuingUser = await open('issuing', 'ca');
      const responder = await issueResponder({
        issuer: {
          id: 'dev-intermediate',
          context: createIssuerContext({
            id: 'dev-intermediate',
            certificate: intermediate.der,
            ...urls('dev-intermediate'),
          }),
          crypto: createPartitionCrypto(issuingUser),
          keys: {
            certificate: await getCryptoKey(
              issuingUser,
              { id: intermediateKey.id },
              { purpose: 'certificate' },
            ),
          } as LoadedIssuer['keys'],
        },
        keyUri: responderKey.uri,
        publicKey: responderKey.publicKey,
        responders: createOcspRespondersRepository({ db: database.db, clock }),
        certificates: createCertificatesRepository({ db: database.db, clock }),
        clock,
        validitySeconds: 7 * DAY,
      });
      log(
        `issued the dev-intermediate OCSP responder certificate (${responder.id}, valid for 7 days, renewed by the server)`,
      );
      await createCrlImport({
        issuers: {
          get: async (id) =>
            id === 'dev-root' ? { id, certificateDer: root.der, signsCrlsOnline: false } : null,
        },
        store: createCrlsRepository({ db: database.db }),
        clock,
      }).importCrl({ issuerId: 'dev-root', der: rootCrl.der, source: 'signet init' });
      log('published the first dev-root CRL (number 1, valid for a year)');
      const admin = await createApiKey(createApiKeysRepository({ db: database.db, clock }), {
        roles: ['admin'],
        description: 'created by signet init',
        createdBy: 'cli:init',
      });
      await writeSecret(adminKeyFile, `${admin.key}\n`);
    } finally {
      await database.close();
    }
    if (!options.databaseUrl) await makePrivate(path.join(dataDir, 'db'));

    await writeFile(configFile, configYaml(options), { flag: 'wx', mode: 0o600 });
    await chmod(configFile, 0o600);
    log(`wrote ${configFile}`);
    return {
      configFile,
      adminKeyFile,
      unsealSecretFile: partitions.issuing!.secretFile,
      rootCertificateFile: resolveIn(dataDir, rootCertificateFile),
    };
  } finally {
    for (const client of clients) await client.close().catch(() => {});
    for (const child of started) await child.stop().catch(() => {});
  }
}

/**
 * Removes group and other access under `dir`. PGlite creates its files with the process umask;
 * the folder itself is 0700 (src/db/database.ts), and its files are made owner-only as well so
 * that a copy or backup that keeps modes stays private.
 */
async function makePrivate(dir: string): Promise<void> {
  for (const entry of await readdir(dir, { recursive: true, withFileTypes: true })) {
    const file = path.join(entry.parentPath, entry.name);
    if (entry.isSymbolicLink()) continue;
    const { mode } = await stat(file);
    if (mode & 0o077) await chmod(file, mode & 0o700);
  }
  await chmod(dir, 0o700);
}

/** signet.yaml lines for a partition whose keys live on a PKCS#11 token. */
function tokenLines(options: InitOptions): string {
  if (!options.pkcs11) return '';
  const where = `token ${options.pkcs11.tokenLabel}, module ${options.pkcs11.module} (hsm/issuing/pkcs11.json)`;
  return options.pkcs11.pinFile
    ? `\n    # Its keys live on ${where}; the token's own PIN:\n    tokenPinFile: ${options.pkcs11.pinFile}`
    : `\n    # Its keys live on ${where}; the token's own PIN comes from SIGNET_PKCS11_PIN.`;
}

/** The issuing partition's one member: on its socket, or (--partition-listen) over mutual TLS too. */
function issuingMembers(listen: string | undefined): string {
  if (listen === undefined)
    return `    dir: hsm/issuing
    socket: hsm/issuing.sock
    spawn: true
`;
  return `    # One member, started and supervised by signet serve. It listens on its socket and at url with
    # mutual TLS (certificates from the link CA in secrets/link/), and the node reaches it at url.
    # Add members cloned with 'signet hsm backup'/'restore' as { url, cert, key, ca } or { socket };
    # 'signet hsm cluster add-member' makes them keep themselves in sync (README).
    members:
      - dir: hsm/issuing
        socket: hsm/issuing.sock
        spawn: true
        url: ${listen}
        cert: secrets/link/client.crt
        key: secrets/link/client.key
        ca: secrets/link/ca.crt
        listen: { cert: secrets/link/server.crt, key: secrets/link/server.key, clientCa: secrets/link/ca.crt }
`;
}

function configYaml(options: InitOptions): string {
  return `# Signet service configuration, written by 'signet init'. Every key is documented in
# README.md ("Configuration"). Relative paths are relative to this folder.

server:
  host: 127.0.0.1
  port: ${options.port}
  # The base URL clients reach this CA at; CRL, OCSP and caIssuers URLs derive from it.
  publicUrl: ${options.publicUrl}
  bodyLimit: 65536

# The embedded default keeps its database (PGlite) in db/. Set DATABASE_URL=postgres://...
# (or database.url) to use PostgreSQL, which production deployments use.
database: {}

# The online partition the server signs with. The unseal secret next to the data is fine for a
# laptop, not for production: there, unseal with 'signet hsm unseal' and remove unsealSecretFile.
partitions:
  issuing:
${issuingMembers(options.partitionListen)}    unsealSecretFile: secrets/unseal-issuing
    user: ca
    pinFile: secrets/pin-issuing-ca${tokenLines(options)}
    # p11Socket: hsm/issuing-p11.sock   # PKCS#11 for programs (p11-kit), keys of purpose other only
# The dev root's key lives in the separate partition hsm/root, which the server never opens.

policies:
  dir: policies

trustedRoots:
  - certs/dev-root.pem

issuance:
  backdate: PT1M

crl:
  validity: P1D
  debounce: PT0.1S
  # shards: { dev-intermediate: 4 }   # CRL shards for new certificates (/crl/{id}/{shard}.crl)
  # deltaInterval: PT1H               # delta CRLs (/crl/{id}/delta.crl), at least this often

ocsp:
  validity: PT4H

rateLimit:
  perMinute: 6000

# The ACME server (RFC 8555): certbot, lego, cert-manager... at ${options.publicUrl}/acme/dev/directory.
# Validation connects to port 80 (http-01) and 443 (tls-alpn-01) of the names ordered; use HTTPS
# (server.tls) for clients on other machines.
acme:
  directories:
    - name: dev
      policy: web-server
      challenges: [http-01, dns-01, tls-alpn-01]

log:
  level: info
`;
}
