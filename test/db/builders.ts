/** Test data with sane defaults; each test changes the one field it is about. */
import { createHash, randomBytes } from 'node:crypto';
import type { CertificateReservation } from '../../src/db/certificates.repository.ts';
import type { Db } from '../../src/db/database.ts';
import { createIssuersRepository, type IssuerInput } from '../../src/db/issuers.repository.ts';
import { generateSerial } from '../../src/lib/serial.ts';

export function sha256(text: string | Uint8Array): Uint8Array {
  return Uint8Array.from(createHash('sha256').update(text).digest());
}

export function randomDigest(): Uint8Array {
  return Uint8Array.from(randomBytes(32));
}

export function issuerInput(overrides: Partial<IssuerInput> = {}): IssuerInput {
  return {
    id: 'dev-intermediate',
    name: 'Signet Dev Intermediate',
    certificateDer: Uint8Array.from([0x30, 0x03, 0x02, 0x01, 0x01]),
    keyUri: 'hsm:partition=issuing;label=intermediate-2026',
    crlUrls: ['http://ca.example.com/crl/dev-intermediate.crl'],
    ocspUrls: ['http://ca.example.com/ocsp'],
    caIssuersUrls: ['http://ca.example.com/v1/issuers/dev-intermediate/certificate'],
    ...overrides,
  };
}

export async function seedIssuer(db: Db, overrides: Partial<IssuerInput> = {}) {
  return createIssuersRepository({ db }).upsert(issuerInput(overrides));
}

export function reservation(overrides: Partial<CertificateReservation> = {}): CertificateReservation {
  const serial = overrides.serial ?? generateSerial();
  return {
    serial,
    issuerId: 'dev-intermediate',
    policy: 'web-server',
    requester: 'k_test',
    subject: 'CN=www.example.com',
    sans: [{ type: 'dns', value: 'www.example.com' }],
    notBefore: new Date('2026-03-01T00:00:00.000Z'),
    notAfter: new Date('2026-06-01T00:00:00.000Z'),
    tbsSha256: sha256(`tbs:${serial}:${randomBytes(8).toString('hex')}`),
    csrSha256: randomDigest(),
    ...overrides,
  };
}

/** A stand-in for a certificate's DER: the tests store and compare bytes, they do not parse them. */
export function fakeDer(serial: string): Uint8Array {
  return Uint8Array.from(
    Buffer.concat([Buffer.from([0x30, 0x82]), Buffer.from(`cert:${serial}`), randomBytes(64)]),
  );
}

/** A clock the test moves by hand. */
export function manualClock(start = '2026-03-01T12:00:00.000Z') {
  let now = new Date(start).getTime();
  return {
    now: () => new Date(now),
    advance(ms: number) {
      now += ms;
    },
    set(iso: string) {
      now = new Date(iso).getTime();
    },
  };
}
