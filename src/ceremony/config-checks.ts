import type {
  CeremonyConfig,
  CertificateProfile,
  CrlProfile,
  CrossProfile,
  KeyConfig,
  NameSet,
  OfflinePartitionConfig,
  PartitionConfig,
} from './config.ts';
import { outputPaths } from './config-paths.ts';
import type { ConfigProblem } from './errors.ts';

/**
 * The ceremony configuration's cross-field checks, each naming the path it found wrong (the
 * schemas in config.ts check each field alone).
 */

export function keyProblems(key: KeyConfig, at: string): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  if (key.type === 'rsa' && key['rsa-mod-length'] === undefined) {
    problems.push({
      path: `${at}.rsa-mod-length`,
      code: 'ceremony.config.required',
      message: 'is required with key type rsa',
    });
  }
  if (key.type !== 'rsa' && key['rsa-mod-length'] !== undefined) {
    problems.push({
      path: `${at}.rsa-mod-length`,
      code: 'ceremony.config.rsa_size_without_rsa',
      message: `is only allowed with key type rsa, not ${key.type}`,
    });
  }
  if (key.type === 'ecdsa' && key['ecdsa-curve'] === undefined) {
    problems.push({
      path: `${at}.ecdsa-curve`,
      code: 'ceremony.config.required',
      message: 'is required with key type ecdsa',
    });
  }
  if (key.type !== 'ecdsa' && key['ecdsa-curve'] !== undefined) {
    problems.push({
      path: `${at}.ecdsa-curve`,
      code: 'ceremony.config.curve_without_ecdsa',
      message: `is only allowed with key type ecdsa, not ${key.type}`,
    });
  }
  return problems;
}

/**
 * Checks of a CA certificate profile that need no other file. `signerAlgorithm` is the key
 * algorithm that will sign the certificate when the configuration alone says it.
 */
export function profileProblems(profile: CertificateProfile | CrossProfile, at: string): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  if (Date.parse(profile['not-after']) <= Date.parse(profile['not-before'])) {
    problems.push({
      path: `${at}.not-after`,
      code: 'ceremony.config.validity_empty',
      message: 'must be after not-before',
    });
  }
  // RFC 5280 §4.2.1.3 / §4.2.1.9: a CA certificate asserts keyCertSign.
  if (!profile['key-usages'].includes('keyCertSign')) {
    problems.push({
      path: `${at}.key-usages`,
      code: 'ceremony.config.ca_without_key_cert_sign',
      message: 'must include keyCertSign for a CA certificate (RFC 5280 §4.2.1.3)',
    });
  }
  const seen = new Set<string>();
  for (const usage of profile['key-usages']) {
    if (seen.has(usage)) {
      problems.push({
        path: `${at}.key-usages`,
        code: 'ceremony.config.duplicate',
        message: `lists ${usage} twice`,
      });
    }
    seen.add(usage);
  }
  const nc = profile['name-constraints'];
  if (nc && !hasNames(nc.permitted) && !hasNames(nc.excluded)) {
    // RFC 5280 §4.2.1.10: at least one of permittedSubtrees or excludedSubtrees MUST be present.
    problems.push({
      path: `${at}.name-constraints`,
      code: 'ceremony.config.name_constraints_empty',
      message: 'must list at least one permitted or excluded name (RFC 5280 §4.2.1.10)',
    });
  }
  return problems;
}

export function hasNames(set: NameSet | undefined): boolean {
  return !!set && set.dns.length + set.ip.length + set.email.length + set.uri.length > 0;
}

/** A `crl` ceremony's CRL follows an earlier one; a hierarchy's is its new root's first. */
export function crlProblems(profile: CrlProfile, at: string, { first = false } = {}): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  if (first && profile['previous-crl-path'] !== undefined) {
    problems.push({
      path: `${at}.previous-crl-path`,
      code: 'ceremony.config.invalid_value',
      message:
        'is not allowed in a hierarchy: its root is new, so its first CRL follows none (number defaults to 1)',
    });
  }
  if (!first && profile.number === undefined && profile['previous-crl-path'] === undefined) {
    problems.push({
      path: `${at}.number`,
      code: 'ceremony.config.required',
      message:
        'is required without previous-crl-path: give the CRL published before (its number + 1 is used) or the number itself',
    });
  }
  if (Date.parse(profile['next-update']) <= Date.parse(profile['this-update'])) {
    problems.push({
      path: `${at}.next-update`,
      code: 'ceremony.config.validity_empty',
      message: 'must be after this-update',
    });
  }
  // RFC 5280 §5.2.3: CRL numbers are at most 20 octets.
  if (profile.number !== undefined && BigInt(profile.number) >= 2n ** 159n) {
    problems.push({
      path: `${at}.number`,
      code: 'ceremony.config.invalid_value',
      message: 'must fit in 20 octets',
    });
  }
  profile['revoked-certificates'].forEach((entry, i) => {
    const here = `${at}.revoked-certificates.${i}`;
    if ((entry['certificate-path'] === undefined) === (entry.serial === undefined)) {
      problems.push({
        path: here,
        code: 'ceremony.config.exactly_one',
        message: 'must give exactly one of certificate-path and serial',
      });
    }
    if (Date.parse(entry['revocation-date']) > Date.parse(profile['this-update'])) {
      problems.push({
        path: `${here}.revocation-date`,
        code: 'ceremony.config.revoked_after_this_update',
        message: 'must not be after this-update',
      });
    }
  });
  return problems;
}

export function partitionProblems(p: PartitionConfig & { create?: unknown }, at: string): ConfigProblem[] {
  if ((p.dir === undefined) === (p.socket === undefined)) {
    return [
      { path: at, code: 'ceremony.config.exactly_one', message: 'must give exactly one of dir and socket' },
    ];
  }
  if (p.create !== undefined && p.dir === undefined) {
    return [
      {
        path: `${at}.create`,
        code: 'ceremony.config.create_needs_dir',
        message: 'needs dir: a served partition already exists',
      },
    ];
  }
  return [];
}

export function custodianProblems(p: OfflinePartitionConfig, at: string): ConfigProblem[] {
  if (!p.create) return [];
  const problems: ConfigProblem[] = [];
  const { threshold, custodians } = p.create;
  if (threshold > custodians.length) {
    problems.push({
      path: `${at}.create.threshold`,
      code: 'ceremony.config.threshold_above_shares',
      message: `must not exceed the number of custodians (${custodians.length})`,
    });
  }
  const names = new Set<string>();
  custodians.forEach((c, i) => {
    if (names.has(c.name)) {
      problems.push({
        path: `${at}.create.custodians.${i}.name`,
        code: 'ceremony.config.duplicate',
        message: `${c.name} is listed twice`,
      });
    }
    names.add(c.name);
  });
  return problems;
}

export function subjectKeyProblems(
  k: { 'public-key-path'?: string; 'csr-path'?: string; key?: KeyConfig },
  at: string,
): ConfigProblem[] {
  const given = [k['public-key-path'], k['csr-path'], k.key].filter((v) => v !== undefined).length;
  if (given !== 1) {
    const options =
      'key' in k || at.startsWith('intermediates')
        ? 'public-key-path, csr-path and key'
        : 'public-key-path and csr-path';
    return [
      { path: at, code: 'ceremony.config.exactly_one', message: `must give exactly one of ${options}` },
    ];
  }
  return k.key ? keyProblems(k.key, `${at}.key`) : [];
}

/**
 * Problems with the transcript's signer that the configuration alone shows. The signer must be
 * allowed to sign (RFC 5280 §4.2.1.3 digitalSignature): by default the root (or issuer) key,
 * whose profile must then carry digitalSignature; otherwise `transcript.signing-key` names another
 * key: one this ceremony creates, or one already in the signing partition (checked when run).
 */
export function transcriptSignerProblems(config: CeremonyConfig): ConfigProblem[] {
  const named = config.transcript['signing-key'];
  const at = 'transcript.signing-key';
  const type = config['ceremony-type'];
  if (type !== 'root' && type !== 'hierarchy') return [];
  const root = type === 'root' ? config : config.root;
  const rootSigns = root['certificate-profile']['key-usages'].includes('digitalSignature');
  if (named === undefined) {
    return rootSigns
      ? []
      : [
          {
            path: at,
            code: 'ceremony.config.transcript_signer_missing',
            message:
              'is required when the root profile omits digitalSignature: the root key may not sign the transcript (RFC 5280 §4.2.1.3); name another key',
          },
        ];
  }
  if (named === root.key.label && !rootSigns) {
    return [
      {
        path: at,
        code: 'ceremony.config.transcript_signer_not_allowed',
        message: 'names the root key, whose profile omits digitalSignature (RFC 5280 §4.2.1.3)',
      },
    ];
  }
  if (type === 'hierarchy') {
    const owner = config.intermediates.find((i) => i['subject-key'].key?.label === named);
    if (owner && !owner['certificate-profile']['key-usages'].includes('digitalSignature')) {
      return [
        {
          path: at,
          code: 'ceremony.config.transcript_signer_not_allowed',
          message: `names ${named}, whose profile omits digitalSignature (RFC 5280 §4.2.1.3)`,
        },
      ];
    }
    if (owner) return [];
  }
  if (named !== root.key.label && config['offline-partition'].create) {
    return [
      {
        path: at,
        code: 'ceremony.config.transcript_signer_unknown',
        message: 'names no key of this ceremony, and the offline partition is created empty',
      },
    ];
  }
  return [];
}

// biome-ignore lint/complexity/noExcessiveLinesPerFunction: a flat list of independent cross-field checks, one paragraph each, in the order of the file
export function crossFieldProblems(config: CeremonyConfig): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  switch (config['ceremony-type']) {
    case 'root': {
      const p = config['offline-partition'];
      problems.push(
        ...partitionProblems(p, 'offline-partition'),
        ...custodianProblems(p, 'offline-partition'),
      );
      problems.push(...keyProblems(config.key, 'key'));
      problems.push(...profileProblems(config['certificate-profile'], 'certificate-profile'));
      break;
    }
    case 'key':
      problems.push(...partitionProblems(config.partition, 'partition'), ...keyProblems(config.key, 'key'));
      break;
    case 'intermediate':
      problems.push(...partitionProblems(config['offline-partition'], 'offline-partition'));
      problems.push(...subjectKeyProblems(config['subject-key'], 'subject-key'));
      problems.push(...profileProblems(config['certificate-profile'], 'certificate-profile'));
      break;
    case 'cross-certificate':
      problems.push(...partitionProblems(config['offline-partition'], 'offline-partition'));
      problems.push(...profileProblems(config['certificate-profile'], 'certificate-profile'));
      break;
    case 'crl':
      problems.push(...partitionProblems(config['offline-partition'], 'offline-partition'));
      problems.push(...crlProblems(config['crl-profile'], 'crl-profile'));
      break;
    case 'hierarchy': {
      const p = config['offline-partition'];
      problems.push(
        ...partitionProblems(p, 'offline-partition'),
        ...custodianProblems(p, 'offline-partition'),
      );
      if (config['online-partition'])
        problems.push(...partitionProblems(config['online-partition'], 'online-partition'));
      problems.push(...keyProblems(config.root.key, 'root.key'));
      const rootProfile = config.root['certificate-profile'];
      problems.push(...profileProblems(rootProfile, 'root.certificate-profile'));
      const labels = new Map<string, string>([[config.root.key.label, 'root.key.label']]);
      config.intermediates.forEach((inter, i) => {
        const at = `intermediates.${i}`;
        problems.push(...subjectKeyProblems(inter['subject-key'], `${at}.subject-key`));
        const profile = inter['certificate-profile'];
        problems.push(...profileProblems(profile, `${at}.certificate-profile`));
        problems.push(
          ...validityInsideProblems(profile, `${at}.certificate-profile`, rootProfile, 'the root'),
        );
        problems.push(
          ...pathLengthProblems(profile, `${at}.certificate-profile`, rootProfile['path-length']),
        );
        const key = inter['subject-key'].key;
        if (key) {
          if (!config['online-partition']) {
            problems.push({
              path: `${at}.subject-key.key`,
              code: 'ceremony.config.online_partition_missing',
              message: 'needs online-partition: the partition the key is created in',
            });
          }
          const first = labels.get(key.label);
          if (first) {
            problems.push({
              path: `${at}.subject-key.key.label`,
              code: 'ceremony.config.duplicate',
              message: `repeats the label at ${first}`,
            });
          }
          labels.set(key.label, `${at}.subject-key.key.label`);
        } else if (inter.outputs['public-key-path'] !== undefined) {
          problems.push({
            path: `${at}.outputs.public-key-path`,
            code: 'ceremony.config.public_key_output_without_key',
            message: 'is only written for a key this ceremony creates (subject-key.key)',
          });
        }
      });
      const crl = config.crl['crl-profile'];
      problems.push(...crlProblems(crl, 'crl.crl-profile', { first: true }));
      if (!rootProfile['key-usages'].includes('cRLSign')) {
        problems.push({
          path: 'root.certificate-profile.key-usages',
          code: 'ceremony.config.crl_without_crl_sign',
          message: 'must include cRLSign: this ceremony signs a CRL with the root key (RFC 5280 §4.2.1.3)',
        });
      }
      if (Date.parse(crl['this-update']) < Date.parse(rootProfile['not-before'])) {
        problems.push({
          path: 'crl.crl-profile.this-update',
          code: 'ceremony.config.crl_before_issuer',
          message: "must not be before the root's not-before",
        });
      }
      crl['revoked-certificates'].forEach((entry, i) => {
        if (entry['certificate-path'] !== undefined) {
          problems.push({
            path: `crl.crl-profile.revoked-certificates.${i}.certificate-path`,
            code: 'ceremony.config.invalid_value',
            message: "is not allowed in a hierarchy's first CRL: revoke by serial",
          });
        }
      });
      break;
    }
  }
  problems.push(...transcriptSignerProblems(config));
  // Two outputs at one path would make the second write fail halfway through the ceremony.
  const seen = new Map<string, string>();
  for (const { at, path } of outputPaths(config)) {
    const first = seen.get(path);
    if (first !== undefined && first !== at) {
      problems.push({
        path: at,
        code: 'ceremony.config.duplicate_output',
        message: `is the same file as ${first}`,
      });
    }
    seen.set(path, at);
  }
  return problems;
}

/** RFC 5280 §6.1.3(a)(2): a certificate is valid only while its issuer is; require it by construction. */
export function validityInsideProblems(
  profile: { 'not-before': string; 'not-after': string },
  at: string,
  issuer: { 'not-before': string; 'not-after': string },
  issuerName: string,
): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  if (Date.parse(profile['not-before']) < Date.parse(issuer['not-before'])) {
    problems.push({
      path: `${at}.not-before`,
      code: 'ceremony.config.validity_outside_issuer',
      message: `must not be before ${issuerName}'s not-before (${issuer['not-before']})`,
    });
  }
  if (Date.parse(profile['not-after']) > Date.parse(issuer['not-after'])) {
    problems.push({
      path: `${at}.not-after`,
      code: 'ceremony.config.validity_outside_issuer',
      message: `must not be after ${issuerName}'s not-after (${issuer['not-after']})`,
    });
  }
  return problems;
}

/** RFC 5280 §4.2.1.9: pathLenConstraint bounds the CA certificates that may follow. */
export function pathLengthProblems(
  profile: { 'path-length'?: number | undefined },
  at: string,
  issuerPathLength: number | undefined,
): ConfigProblem[] {
  if (issuerPathLength === undefined) return [];
  if (issuerPathLength === 0) {
    return [
      {
        path: at,
        code: 'ceremony.config.path_length_exceeded',
        message: "cannot be a CA certificate: the issuer's path-length is 0 (RFC 5280 §4.2.1.9)",
      },
    ];
  }
  const own = profile['path-length'];
  if (own !== undefined && own > issuerPathLength - 1) {
    return [
      {
        path: `${at}.path-length`,
        code: 'ceremony.config.path_length_exceeded',
        message: `must be at most ${issuerPathLength - 1}, one less than the issuer's path-length (RFC 5280 §4.2.1.9)`,
      },
    ];
  }
  return [];
}
