import { readFileSync } from 'node:fs';
import { verifyIntermediateForActivation } from '../../ceremony/activation.ts';
import { loadConfig, resolveDataDir } from '../../config/config.ts';
import { DatabaseLockedError } from '../../db/errors.ts';
import { isIssuerId } from '../../db/issuers.repository.ts';
import { partitionOfKeyUri, tokenPartitions } from '../../hsm/key-uri.ts';
import { equalBytes } from '../../x509/der.ts';
import { readCertificateFields } from '../../x509/issuer.ts';
import { decodeName } from '../../x509/names.ts';
import { decodePemBlocks } from '../../x509/pem.ts';
import { CliError, EXIT, parseCommandArgs, UsageError } from '../args.ts';
import { quietLogger } from '../logging.ts';
import { openRuntime, type Runtime } from '../runtime.ts';

export const USAGE = `usage: signet issuer add --id ID --certificate FILE --key URI [--data DIR]
       signet issuer list [--data DIR] [--json]

add   activates an intermediate made by a ceremony: the certificate's public key must be the
      partition key's (URI hsm:partition=NAME;label=LABEL), and its chain (FILE may carry the
      certificates between it and the root after it) must reach a root listed in signet.yaml.
list  lists the issuers with their status and key URIs.
With the embedded database, stop the server first.`;

async function withRuntime<T>(dataDir: string, body: (runtime: Runtime) => Promise<T>): Promise<T> {
  let runtime: Runtime;
  try {
    runtime = await openRuntime({ dataDir, logger: quietLogger() });
  } catch (error) {
    if (error instanceof DatabaseLockedError) {
      throw new CliError(
        `${error.message}\nsignet issuer: stop the server first (the embedded database serves one process at a time).`,
      );
    }
    throw error;
  }
  try {
    return await body(runtime);
  } finally {
    await runtime.close();
  }
}

function commonName(der: Uint8Array): string | undefined {
  const fields = readCertificateFields(der);
  for (const rdn of decodeName(fields.subject)) {
    for (const attribute of rdn) if (attribute.oid === '2.5.4.3') return attribute.value;
  }
  return undefined;
}

// biome-ignore lint/complexity/noExcessiveLinesPerFunction: the command's sub-commands in one switch, each a few lines
export async function run(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === '--help' || sub === '-h') {
    console.log(USAGE);
    return EXIT.ok;
  }
  if (!sub) throw new UsageError('a subcommand is required: add or list');
  const { values } = parseCommandArgs(rest, {
    id: { type: 'string' },
    certificate: { type: 'string' },
    key: { type: 'string' },
    data: { type: 'string' },
    json: { type: 'boolean' },
    help: { type: 'boolean', short: 'h' },
  });
  if (values.help) {
    console.log(USAGE);
    return EXIT.ok;
  }
  const dataDir = resolveDataDir(values.data);

  if (sub === 'list') {
    return withRuntime(dataDir, async (runtime) => {
      const issuers = await runtime.repositories.issuers.list();
      if (values.json) {
        console.log(
          JSON.stringify(
            issuers.map((i) => ({
              id: i.id,
              name: i.name,
              status: i.status,
              keyUri: i.keyUri,
              parentId: i.parentId,
            })),
            null,
            2,
          ),
        );
      } else {
        for (const i of issuers)
          console.log(`${i.id.padEnd(24)} ${i.status.padEnd(9)} ${i.keyUri}  (${i.name})`);
      }
      return EXIT.ok;
    });
  }
  if (sub !== 'add') throw new UsageError(`unknown issuer command '${sub}'`);

  if (!values.id || !values.certificate || !values.key)
    throw new UsageError('--id, --certificate and --key are required');
  if (!isIssuerId(values.id)) throw new UsageError(`--id ${values.id}: an issuer id is a slug (a-z, 0-9, -)`);
  let blocks: Uint8Array[];
  try {
    const text = readFileSync(values.certificate);
    blocks = text.includes('-----BEGIN')
      ? decodePemBlocks(text.toString('utf8'))
          .filter((b) => b.label === 'CERTIFICATE')
          .map((b) => b.der)
      : [new Uint8Array(text)];
  } catch (error) {
    throw new CliError(`cannot read ${values.certificate}: ${(error as Error).message}`);
  }
  const [certificate, ...intermediates] = blocks;
  if (!certificate) throw new CliError(`${values.certificate} holds no certificate`);
  const keyUri = values.key;
  const config = loadConfig(dataDir);
  const publicUrl = config.server.publicUrl.replace(/\/$/, '');

  return withRuntime(dataDir, async (runtime) => {
    // hsm: URIs name their partition; pkcs11: URIs name a token that one partition keeps keys on.
    let partitionName: string | undefined;
    try {
      partitionName = partitionOfKeyUri(keyUri, await tokenPartitions(runtime.partitions));
    } catch (error) {
      throw new CliError(`--key ${keyUri}: ${(error as Error).message}`);
    }
    const partition = partitionName ? runtime.partitions.get(partitionName) : undefined;
    if (!partition) throw new CliError(`the key ${keyUri} is in no partition listed in signet.yaml`);
    const key = await partition.findKey({ uri: keyUri });
    if (!key) throw new CliError(`no key ${keyUri} in partition ${partitionName}`);
    let chain: Uint8Array[];
    try {
      ({ chain } = await verifyIntermediateForActivation({
        certificate,
        keyPublicKey: key.publicKey,
        roots: runtime.trustedRoots,
        intermediates,
        clock: runtime.clock,
      }));
    } catch (error) {
      throw new CliError(`refused: ${(error as Error).message}`);
    }

    // Make sure every certificate above the new issuer is known, root first, so its chain can be
    // served and checked at load; a CA already present is matched by its DER.
    const known = await runtime.repositories.issuers.list();
    let parentId: string | null = null;
    for (const der of chain.slice(1).reverse()) {
      const existing = known.find((i) => equalBytes(i.certificateDer, der));
      if (existing) {
        parentId = existing.id;
        continue;
      }
      const name = commonName(der) ?? 'CA';
      const id = `${
        name
          .toLowerCase()
          .replace(/[^a-z0-9]+/g, '-')
          .replace(/^-|-$/g, '')
          .slice(0, 48) || 'ca'
      }-${Buffer.from(der.subarray(der.length - 4)).toString('hex')}`;
      await runtime.repositories.issuers.create({
        id,
        name,
        parentId,
        certificateDer: der,
        // Its key is offline (a ceremony's root partition): served read-only, never signed with here.
        keyUri: `hsm:partition=offline;label=${id}`,
        status: 'active',
      });
      console.log(`signet: recorded CA ${id} (${name}) from the chain; its key stays offline`);
      parentId = id;
    }
    if (known.some((i) => i.id === values.id)) throw new CliError(`an issuer with id ${values.id} exists`);
    await runtime.repositories.issuers.create({
      id: values.id!,
      name: commonName(certificate) ?? values.id!,
      parentId,
      certificateDer: certificate,
      keyUri,
      status: 'active',
      crlUrls: [`${publicUrl}/crl/${values.id}.crl`],
      ocspUrls: [`${publicUrl}/ocsp`],
      caIssuersUrls: [`${publicUrl}/v1/issuers/${values.id}/certificate`],
    });
    console.log(`signet: issuer ${values.id} is active with key ${keyUri}`);
    return EXIT.ok;
  });
}
