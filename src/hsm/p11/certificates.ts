import { createPublicKey, X509Certificate } from 'node:crypto';
import { z } from 'zod';
import { KEY_LABEL } from '../key-uri.ts';
import type { EmulatedPartition } from '../partition.ts';
import { definePartitionOp, keyRef, type PartitionOp } from '../server.ts';
import type { AuditEvent, StoredCertificate } from '../store.ts';
import { HsmError, type KeyRef } from '../types.ts';
import { readCertificateFields, tlv } from './cert-fields.ts';
import { isExposed } from './objects.ts';

/**
 * Certificates stored beside keys (issue #26): `signet hsm certificate import` reaches them
 * through the partition socket (the operations below, officer only), PKCS#11 clients see them as
 * CKO_CERTIFICATE objects sharing the key's CKA_ID. The partition checks only what it must: the
 * octets are one DER X.509 certificate, and its public key is the key's own. Whether it is a
 * good certificate is the business of whoever relies on it.
 */

/** A certificate is a few kilobytes; this bounds what one stored object may hold. */
const MAX_CERTIFICATE = 64 * 1024;

/** Checks that `der` is one X.509 certificate for this public key; returns its octets. */
export function checkCertificate(der: Uint8Array, spki: Uint8Array): Buffer {
  const bytes = Buffer.from(der);
  if (bytes.length === 0 || bytes.length > MAX_CERTIFICATE) {
    throw new HsmError('CKR_ARGUMENTS_BAD', `a certificate is 1 to ${MAX_CERTIFICATE} octets of DER`);
  }
  let certificate: X509Certificate;
  try {
    certificate = new X509Certificate(bytes);
    readCertificateFields(bytes);
    if (tlv(bytes, 0).end !== bytes.length) throw new Error('trailing octets');
  } catch (error) {
    throw new HsmError('CKR_ARGUMENTS_BAD', 'not one DER X.509 certificate', { cause: error });
  }
  const own = createPublicKey({ key: Buffer.from(spki), format: 'der', type: 'spki' });
  if (!certificate.publicKey.equals(own)) {
    throw new HsmError('CKR_ATTRIBUTE_VALUE_INVALID', "the certificate's public key is not this key's");
  }
  return bytes;
}

export interface StoreCertificateRequest {
  key: KeyRef;
  /** CKA_LABEL of the certificate object; default the key's label. */
  label?: string;
  der: Uint8Array;
}

/** Stores (or replaces) the certificate of an exposed key; the caller audits (inside perform). */
export async function storeCertificate(
  partition: EmulatedPartition,
  request: StoreCertificateRequest,
  event: AuditEvent,
): Promise<StoredCertificate> {
  const store = partition.requireStore();
  if (!store.putCertificate)
    throw new HsmError('CKR_FUNCTION_NOT_SUPPORTED', 'this partition store keeps no certificates');
  const key = partition.require(request.key);
  Object.assign(event, { keyId: key.info.id, keyLabel: key.info.label });
  if (!isExposed(key.info)) {
    throw new HsmError(
      'CKR_KEY_FUNCTION_NOT_PERMITTED',
      `key ${key.info.label} is not one PKCS#11 clients use (purposes exactly 'other', not Ed25519): no certificate is stored beside it`,
    );
  }
  const label = request.label ?? key.info.label;
  if (!KEY_LABEL.test(label))
    throw new HsmError('CKR_ARGUMENTS_BAD', 'label must match [A-Za-z0-9][A-Za-z0-9._-]{0,63}');
  const der = checkCertificate(request.der, key.info.publicKey);
  const stored: StoredCertificate = { keyId: key.info.id, label, der, storedAt: partition.isoNow() };
  await store.putCertificate(stored);
  event.detail = `certificate ${label}`;
  // The other members of its cluster store it beside their copy of the key (issue #23).
  await partition.replication?.changed();
  return stored;
}

export async function listCertificates(partition: EmulatedPartition): Promise<StoredCertificate[]> {
  const store = partition.requireStore();
  return store.listCertificates ? store.listCertificates() : [];
}

const wire = (c: StoredCertificate, partition: EmulatedPartition) => {
  const key = partition.lookup({ id: c.keyId });
  return {
    keyId: c.keyId,
    keyLabel: key?.info.label ?? null,
    label: c.label,
    der: Buffer.from(c.der).toString('base64'),
    storedAt: c.storedAt,
  };
};

/** The partition socket's certificate operations, registered as server extensions by `signet hsm serve`. */
export function createCertificateOps(partition: EmulatedPartition): Record<string, PartitionOp<never>> {
  return {
    storeCertificate: definePartitionOp({
      access: 'officer',
      args: z.strictObject({
        key: keyRef,
        label: z.string().max(64).optional(),
        der: z.base64().max(2 * MAX_CERTIFICATE),
      }),
      run: async (_session, args, event = { time: '', op: '', result: '' }) => {
        const request: StoreCertificateRequest = { key: args.key, der: Buffer.from(args.der, 'base64') };
        if (args.label !== undefined) request.label = args.label;
        return wire(await storeCertificate(partition, request, event), partition);
      },
    }),
    listCertificates: definePartitionOp({
      access: 'any',
      args: z.strictObject({}).optional(),
      run: async () => (await listCertificates(partition)).map((c) => wire(c, partition)),
    }),
  };
}
