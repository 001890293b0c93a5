import { createPublicKey } from 'node:crypto';
import { AsnConvert } from '@peculiar/asn1-schema';
import { Certificate } from '@peculiar/asn1-x509';
import { REASON_CODES, REVOCATION_REASONS, type RevocationReason } from '../lib/revocation-reasons.ts';
import { normalizeSerial } from '../lib/serial.ts';
import { decodeGeneralNames } from '../x509/names.ts';
import { type AcmeCall, type AcmeContext, actorOf, authenticate } from './context.ts';
import { acmeError } from './errors.ts';
import { authorizationTarget, normaliseIdentifier } from './identifiers.ts';
import type { AcmeResponse } from './types.ts';

/**
 * revokeCert (RFC 8555 §7.6): signed either by the certificate's own key (`jwk`, proof of
 * possession) or by an account (`kid`) that ordered the certificate or holds valid
 * authorisations for every name in it. Reasons are RFC 5280 CRLReason codes; certificateHold (6)
 * and removeFromCRL (8) are refused, as everywhere in Signet.
 */

const SUBJECT_ALT_NAME_OID = '2.5.29.17';

interface CertificateFacts {
  serial: string;
  spki: Uint8Array;
  names: { type: 'dns' | 'ip'; value: string }[];
}

function readCertificate(der: Uint8Array): CertificateFacts {
  let certificate: Certificate;
  try {
    certificate = AsnConvert.parse(der, Certificate);
  } catch (error) {
    throw acmeError('malformed', '"certificate" is not a DER X.509 certificate', { cause: error });
  }
  const tbs = certificate.tbsCertificate;
  const serial = normalizeSerial(Buffer.from(tbs.serialNumber).toString('hex'));
  const spki = new Uint8Array(AsnConvert.serialize(tbs.subjectPublicKeyInfo));
  const san = (tbs.extensions ?? []).find((e) => e.extnID === SUBJECT_ALT_NAME_OID);
  const names = san
    ? decodeGeneralNames(new Uint8Array(san.extnValue.buffer)).filter(
        (n): n is { type: 'dns' | 'ip'; value: string } => n.type === 'dns' || n.type === 'ip',
      )
    : [];
  return { serial, spki, names };
}

export function reasonFromAcme(raw: unknown): RevocationReason {
  if (raw === undefined) return 'unspecified';
  const reason = REVOCATION_REASONS.find((name) => REASON_CODES[name] === raw);
  if (!reason) {
    throw acmeError(
      'badRevocationReason',
      `reason ${JSON.stringify(raw)} is not accepted; use an RFC 5280 CRLReason code: ${REVOCATION_REASONS.map((r) => `${REASON_CODES[r]} (${r})`).join(', ')}`,
    );
  }
  return reason;
}

export async function revokeCert(ctx: AcmeContext, call: AcmeCall): Promise<AcmeResponse> {
  const auth = await authenticate(ctx, call, 'either');
  const { certificates, revoker, repository } = ctx.options;
  if (!revoker)
    throw acmeError('serverInternal', 'revocation is not available on this server', {
      status: 503,
      retryAfter: 5,
    });
  const payload = auth.payload;
  if (typeof payload?.certificate !== 'string' || !/^[A-Za-z0-9_-]+$/.test(payload.certificate)) {
    throw acmeError('malformed', 'revokeCert needs "certificate": the DER certificate in base64url');
  }
  const der = new Uint8Array(Buffer.from(payload.certificate, 'base64url'));
  const facts = readCertificate(der);
  const reason = reasonFromAcme(payload.reason);
  const record = await certificates.findBySerial(facts.serial);
  if (!record?.der || !Buffer.from(record.der).equals(Buffer.from(der))) {
    throw acmeError('malformed', 'this CA did not issue that certificate', { status: 404 });
  }
  if (record.status === 'revoked') throw acmeError('alreadyRevoked', 'the certificate is already revoked');

  let actor: string;
  if (auth.jwk) {
    const certificateKey = createPublicKey({ key: Buffer.from(facts.spki), format: 'der', type: 'spki' });
    const jwsKey = createPublicKey({ key: auth.jwk as never, format: 'jwk' });
    if (!certificateKey.equals(jwsKey)) {
      throw acmeError(
        'unauthorized',
        'the JWS key is not the certificate key; sign with it, or with an authorized account',
      );
    }
    actor = 'acme:certificate-key';
  } else {
    const account = auth.account!;
    const order = await repository.findOrderByCertificate(facts.serial);
    if (order?.accountId !== account.id) {
      const targets = facts.names.map((name) => {
        const normalised = normaliseIdentifier(name);
        return authorizationTarget({ type: name.type, value: normalised.ok ? normalised.value : name.value });
      });
      const held = await repository.findValidAuthorizations(account.id, targets);
      const covered = targets.every((t) =>
        held.some((a) => a.identifierType === t.type && a.identifierValue === t.value),
      );
      if (targets.length === 0 || !covered) {
        throw acmeError(
          'unauthorized',
          'this account neither ordered the certificate nor holds valid authorizations for all its names',
        );
      }
    }
    actor = actorOf(account);
  }
  const result = await revoker.revoke({ serial: facts.serial, reason });
  if (result.outcome === 'unchanged') throw acmeError('alreadyRevoked', 'the certificate is already revoked');
  await ctx.audit({
    actor,
    action: 'certificate.revoke',
    target: `certificate:${facts.serial}`,
    decision: 'allowed',
    details: {
      via: 'acme',
      directory: call.directory.name,
      reason: result.revocation.reason,
      outcome: result.outcome,
    },
  });
  return { status: 200, headers: {}, links: [] };
}
