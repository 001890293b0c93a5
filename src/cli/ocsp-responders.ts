import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import type { IssuerSet, LoadedIssuer } from '../ca/issuers.ts';
import type { CertificatesRepository } from '../db/certificates.repository.ts';
import type { OcspRespondersRepository } from '../db/ocsp-responders.repository.ts';
import { getCryptoKey } from '../hsm/webcrypto.ts';
import { createResponderCertificate } from '../issuance/ocsp-responder-certificate.ts';
import type { Clock } from '../lib/clock.ts';
import { readCertificateSpki } from '../revocation/issuer.ts';
import {
  createOcspIssuerDirectory,
  type OcspIssuer,
  type OcspIssuerDirectory,
} from '../revocation/ocsp-responder.ts';
import { partitionSigner } from '../revocation/partition-signer.ts';

/**
 * Delegated OCSP responders (RFC 6960 §4.2.2.2, issue #27). `signet ocsp-responder rotate` (an
 * officer makes the key) and `signet init` call `issueResponder`; the server's directory signs
 * each issuer's responses with its active responder's key (its certificate in `certs`), or with
 * the issuer's own key when it has none, and re-issues the responder certificate for the same key
 * once half its validity has passed, on whichever node holds the lock: no operator, no officer.
 */

export interface IssueResponderOptions {
  issuer: Pick<LoadedIssuer, 'id' | 'context' | 'crypto' | 'keys'>;
  /** The responder key (in the issuer's partition) and its SubjectPublicKeyInfo. */
  keyUri: string;
  publicKey: Uint8Array;
  responders: Pick<OcspRespondersRepository, 'create' | 'listForIssuer' | 'setStatus'>;
  /** The responder certificate is stored like any certificate this CA signs (reconcile, revocation). */
  certificates: Pick<CertificatesRepository, 'reservePending' | 'markIssued'>;
  clock: Clock;
  validitySeconds: number;
}

/** Issues a responder certificate, records it as the issuer's active responder and retires the others. */
export async function issueResponder(options: IssueResponderOptions) {
  const { issuer, responders } = options;
  const certificate = await createResponderCertificate({
    issuer: issuer.context,
    crypto: issuer.crypto,
    signingKey: issuer.keys.certificate,
    publicKey: options.publicKey,
    clock: options.clock,
    validitySeconds: options.validitySeconds,
    commonName: `${issuer.id} OCSP responder`,
    beforeSign: (tbs, facts) =>
      options.certificates.reservePending({
        serial: facts.serialNumber,
        issuerId: issuer.id,
        policy: 'ocsp-responder',
        requester: 'signet:ocsp-responder',
        subject: `CN=${issuer.id} OCSP responder`,
        sans: [],
        notBefore: facts.notBefore,
        notAfter: facts.notAfter,
        tbsSha256: new Uint8Array(createHash('sha256').update(tbs).digest()),
      }),
  });
  await options.certificates.markIssued(certificate.serialNumber, certificate.der);
  const previous = await responders.listForIssuer(issuer.id);
  const record = await responders.create({
    id: `${issuer.id.slice(0, 40)}-ocsp-${certificate.serialNumber.slice(0, 16)}`,
    issuerId: issuer.id,
    certificateDer: certificate.der,
    keyUri: options.keyUri,
    notBefore: certificate.notBefore,
    notAfter: certificate.notAfter,
  });
  // The old certificate stays valid until its notAfter: responses it signed still verify.
  for (const old of previous) if (old.status === 'active') await responders.setStatus(old.id, 'retired');
  return record;
}

export interface ResponderDirectory extends OcspIssuerDirectory {
  /** Reads each issuer's active responder again (after a renewal here or on another node). */
  reload(): Promise<void>;
  /** Re-issues every responder certificate past half its validity (under the lock). */
  renewDue(): Promise<number>;
  start(): Promise<void>;
  stop(): void;
}

export function createResponderDirectory(options: {
  issuers: IssuerSet;
  responders: OcspRespondersRepository;
  certificates: IssueResponderOptions['certificates'];
  clock: Clock;
  validitySeconds: number;
  lock: <T>(name: string, fn: () => Promise<T>) => Promise<{ acquired: boolean }>;
  logger: Pick<Logger, 'info' | 'warn'>;
  /** Between checks. Default 1 h. */
  intervalMs?: number;
}): ResponderDirectory {
  const { issuers, responders, clock } = options;
  let directory = createOcspIssuerDirectory([]);
  let timer: NodeJS.Timeout | undefined;

  async function ocspIssuer(issuer: LoadedIssuer): Promise<OcspIssuer> {
    const own: OcspIssuer = {
      id: issuer.id,
      certificate: issuer.certificateDer,
      signer: partitionSigner(issuer.crypto, issuer.keys.ocsp, 'ocsp'),
    };
    const active = await responders.findActive(issuer.id, clock.now());
    if (!active) return own;
    try {
      const key = await getCryptoKey(issuer.keyManager, { uri: active.keyUri }, { purpose: 'ocsp' });
      return {
        ...own,
        signer: partitionSigner(issuer.crypto, key, 'ocsp'),
        responderCertificate: active.certificateDer,
      };
    } catch (error) {
      // A responder key the partition does not hold (a member restored from an old backup): the
      // issuer answers for itself rather than not at all.
      options.logger.warn(
        { err: error, issuer: issuer.id, responder: active.id },
        'OCSP responder key unusable',
      );
      return own;
    }
  }

  async function reload(): Promise<void> {
    const list = await Promise.all(issuers.list().map(ocspIssuer));
    directory = createOcspIssuerDirectory(list);
  }

  async function renewDue(): Promise<number> {
    let renewed = 0;
    await options.lock('ocsp-responder-renewal', async () => {
      const now = clock.now().getTime();
      for (const issuer of issuers.list()) {
        const active = await responders.findActive(issuer.id, clock.now());
        if (!active) continue;
        const half =
          active.notBefore.getTime() + (active.notAfter.getTime() - active.notBefore.getTime()) / 2;
        if (now < half) continue;
        const record = await issueResponder({
          issuer,
          keyUri: active.keyUri,
          publicKey: readCertificateSpki(active.certificateDer),
          responders,
          certificates: options.certificates,
          clock,
          validitySeconds: options.validitySeconds,
        });
        options.logger.info(
          { issuer: issuer.id, responder: record.id, notAfter: record.notAfter },
          'OCSP responder certificate renewed',
        );
        renewed += 1;
      }
    });
    await reload();
    return renewed;
  }

  return {
    find: (lookup) => directory.find(lookup),
    reload,
    renewDue,
    async start() {
      await renewDue();
      const tick = () => {
        renewDue()
          .catch((error) => options.logger.warn({ err: error }, 'OCSP responder renewal failed; will retry'))
          .finally(() => {
            if (timer) timer = setTimeout(tick, options.intervalMs ?? 3_600_000).unref();
          });
      };
      timer = setTimeout(tick, options.intervalMs ?? 3_600_000).unref();
    },
    stop() {
      if (timer) clearTimeout(timer);
      timer = undefined;
    },
  };
}
