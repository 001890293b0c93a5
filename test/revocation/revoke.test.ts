import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { fixedClock } from '../../src/lib/clock.ts';
import { createCrlScheduler } from '../../src/revocation/crl-scheduler.ts';
import {
  createRevokeUseCase,
  parseInvalidityDate,
  type RevokeResult,
} from '../../src/revocation/revoke.usecase.ts';
import { hasTool } from '../helpers/tools.ts';
import { manualTimers, memoryCertificates, memoryCrlStore } from './helpers/memory.ts';
import { openssl, scratch } from './helpers/openssl.ts';
import {
  createIntermediate,
  createLeaf,
  createRoot,
  crlPem,
  type TestCa,
  type TestLeaf,
} from './helpers/pki.ts';

const NOW = '2026-03-01T12:00:00.600Z';
const DAY = 86_400_000;

function setup() {
  const clock = fixedClock(NOW);
  const certificates = memoryCertificates();
  certificates.add({
    serial: '00c0ffee',
    issuerId: 'dev-intermediate',
    notAfter: new Date(Date.parse(NOW) + DAY),
  });
  const heard: RevokeResult[] = [];
  const useCase = createRevokeUseCase({
    certificates,
    clock,
    listeners: [(result) => void heard.push(result)],
  });
  return { clock, certificates, heard, useCase };
}

describe('the revoke rule', () => {
  test('revokes a good certificate now, in whole seconds, and tells the listeners', async () => {
    const { useCase, heard } = setup();
    const result = await useCase.revoke({ serial: 'C0:FF:EE', reason: 'superseded' });
    expect(result.outcome).toBe('revoked');
    expect(result.revocation).toEqual({
      serial: '00c0ffee',
      issuerId: 'dev-intermediate',
      revokedAt: new Date('2026-03-01T12:00:00Z'),
      reason: 'superseded',
      invalidityDate: null,
    });
    expect(heard).toEqual([result]);
  });

  test('answers an existing revocation unchanged when revoked again for another reason', async () => {
    const { useCase, heard, clock } = setup();
    const first = await useCase.revoke({ serial: '00c0ffee', reason: 'superseded' });
    clock.advance(60_000);
    const again = await useCase.revoke({ serial: '00c0ffee', reason: 'cessationOfOperation' });
    expect(again.outcome).toBe('unchanged');
    expect(again.revocation).toEqual(first.revocation);
    expect(heard).toHaveLength(1);
  });

  test('moves an existing revocation to keyCompromise, keeping its date, once', async () => {
    const { useCase, heard, clock } = setup();
    const first = await useCase.revoke({ serial: '00c0ffee', reason: 'superseded' });
    clock.advance(60_000);
    const upgraded = await useCase.revoke({
      serial: '00c0ffee',
      reason: 'keyCompromise',
      invalidityDate: '2026-02-27T00:00:00Z',
    });
    expect(upgraded.outcome).toBe('reason_updated');
    expect(upgraded.revocation.reason).toBe('keyCompromise');
    expect(upgraded.revocation.revokedAt).toEqual(first.revocation.revokedAt);
    expect(upgraded.revocation.invalidityDate).toEqual(new Date('2026-02-27T00:00:00Z'));
    const again = await useCase.revoke({ serial: '00c0ffee', reason: 'keyCompromise' });
    expect(again.outcome).toBe('unchanged');
    expect(heard.map((r) => r.outcome)).toEqual(['revoked', 'reason_updated']);
  });

  test.each([
    {
      name: 'certificateHold',
      input: { reason: 'certificateHold' },
      code: 'revocation.reason_invalid',
      message: /permanent/,
    },
    {
      name: 'removeFromCRL',
      input: { reason: 'removeFromCRL' },
      code: 'revocation.reason_invalid',
      message: /certificateHold/,
    },
    {
      name: 'a wrongly cased reason',
      input: { reason: 'keycompromise' },
      code: 'revocation.reason_invalid',
      message: /did you mean "keyCompromise"/,
    },
    {
      name: 'an unknown reason',
      input: { reason: 'stolen' },
      code: 'revocation.reason_invalid',
      message: /use one of unspecified, keyCompromise/,
    },
    {
      name: 'a reason that is not a string',
      input: { reason: 1 },
      code: 'revocation.reason_invalid',
      message: /number/,
    },
    {
      name: 'a serial that is not hex',
      input: { serial: 'xyz' },
      code: 'revocation.serial_invalid',
      message: /hexadecimal/,
    },
    {
      name: 'a zero serial',
      input: { serial: '00' },
      code: 'revocation.serial_invalid',
      message: /positive/,
    },
    {
      name: 'a future invalidity date',
      input: { invalidityDate: '2026-03-02T00:00:00Z' },
      code: 'revocation.invalidity_date_invalid',
      message: /future/,
    },
    {
      name: 'an invalidity date without a zone',
      input: { invalidityDate: '2026-02-01T00:00:00' },
      code: 'revocation.invalidity_date_invalid',
      message: /RFC 3339/,
    },
    {
      name: 'an invalidity date in year 1 (read back as 2001 before issue #19)',
      input: { invalidityDate: '0001-01-01T00:00:00Z' },
      code: 'revocation.invalidity_date_invalid',
      message: /before 1950/,
    },
    {
      name: 'an invalidity date in year 99',
      input: { invalidityDate: '0099-06-01T00:00:00Z' },
      code: 'revocation.invalidity_date_invalid',
      message: /before 1950/,
    },
    {
      name: 'an invalidity date one second before 1950',
      input: { invalidityDate: '1949-12-31T23:59:59Z' },
      code: 'revocation.invalidity_date_invalid',
      message: /before 1950/,
    },
    {
      name: 'a 1950 local time that is 1949 in UTC',
      input: { invalidityDate: '1950-01-01T00:30:00+01:00' },
      code: 'revocation.invalidity_date_invalid',
      message: /before 1950/,
    },
    {
      name: 'February 30th',
      input: { invalidityDate: '2026-02-30T00:00:00Z' },
      code: 'revocation.invalidity_date_invalid',
      message: /not a valid/,
    },
  ])('refuses $name with $code', async ({ input, code, message }) => {
    const { useCase, heard } = setup();
    const error = await useCase
      .revoke({ serial: '00c0ffee', reason: 'superseded', ...input } as never)
      .catch((e: unknown) => e);
    expect(error).toMatchObject({ code, category: 'invalid' });
    expect((error as Error).message).toMatch(message);
    expect(heard).toEqual([]);
  });

  test('lets the repository answer for a serial never issued', async () => {
    const { useCase } = setup();
    await expect(useCase.revoke({ serial: '0bad', reason: 'superseded' })).rejects.toMatchObject({
      code: 'certificate.not_found',
    });
  });

  test('keeps a revocation whose listener fails', async () => {
    const failures: unknown[] = [];
    const { certificates, clock } = setup();
    const useCase = createRevokeUseCase({
      certificates,
      clock,
      listeners: [
        () => {
          throw new Error('scheduler gone');
        },
      ],
      onListenerError: (error) => failures.push(error),
    });
    const result = await useCase.revoke({ serial: '00c0ffee', reason: 'keyCompromise' });
    expect(result.outcome).toBe('revoked');
    expect(failures).toHaveLength(1);
  });

  test.each([
    { text: '2026-02-28T10:20:30Z', expected: '2026-02-28T10:20:30.000Z' },
    { text: '2026-02-28T10:20:30.999Z', expected: '2026-02-28T10:20:30.000Z' },
    { text: '2026-02-28T12:20:30+02:00', expected: '2026-02-28T10:20:30.000Z' },
    { text: '2026-02-28t10:20:30z', expected: '2026-02-28T10:20:30.000Z' },
  ])('parses the invalidity date $text', ({ text, expected }) => {
    expect(parseInvalidityDate(text, new Date(NOW)).toISOString()).toBe(expected);
  });
});

describe.runIf(hasTool('openssl', ['version']))('a revocation reaches the CRL', () => {
  const dir = scratch();
  let root: TestCa;
  let ca: TestCa;
  let revoked: TestLeaf;
  let good: TestLeaf;

  beforeAll(async () => {
    root = await createRoot();
    ca = await createIntermediate(root);
    revoked = await createLeaf(ca);
    good = await createLeaf(ca);
  });
  afterAll(() => dir.cleanup());

  test('the CRL published after the debounce lists it: openssl rejects the revoked leaf and accepts the good one', async () => {
    // A minute in the past, so the CRL made 5 s later is already valid for openssl's real clock.
    const clock = fixedClock(new Date(Date.now() - 60_000));
    const timers = manualTimers(clock);
    const store = memoryCrlStore();
    const certificates = memoryCertificates();
    for (const leaf of [revoked, good]) {
      certificates.add({ serial: leaf.serial, issuerId: 'ca', notAfter: leaf.certificate.notAfter });
    }
    const scheduler = createCrlScheduler({
      issuers: {
        listCrlIssuers: async () => [
          { id: 'ca', certificate: ca.der, signer: ca.signer, issuing: true, lastCertificateExpiry: null },
        ],
      },
      entries: certificates,
      store,
      clock,
      timers,
      debounceMs: 5_000,
    });
    const useCase = createRevokeUseCase({
      certificates,
      clock,
      listeners: [({ revocation }) => scheduler.notifyRevocation(revocation.issuerId)],
    });
    await scheduler.start();
    timers.advance(0);
    await scheduler.idle();
    const before = (await store.getLatest('ca', 0, 'full'))!;

    await useCase.revoke({ serial: revoked.serial, reason: 'keyCompromise' });
    timers.advance(4_999);
    await scheduler.idle();
    expect((await store.getLatest('ca', 0, 'full'))!.crlNumber).toBe(before.crlNumber);
    timers.advance(1);
    await scheduler.idle();
    const served = (await store.getLatest('ca', 0, 'full'))!;
    expect(served.crlNumber).toBeGreaterThan(before.crlNumber);
    await scheduler.stop();

    const files = {
      root: dir.write('root.pem', root.pem),
      ca: dir.write('ca.pem', ca.pem),
      crl: dir.write('served.crl.pem', crlPem(served.der)),
    };
    const verifyCrl = await openssl(['crl', '-in', files.crl, '-CAfile', files.ca, '-noout', '-verify']);
    expect(verifyCrl.output).toContain('verify OK');
    const rejected = await openssl([
      'verify',
      '-crl_check',
      '-CAfile',
      files.root,
      '-untrusted',
      files.ca,
      '-CRLfile',
      files.crl,
      dir.write('revoked.pem', revoked.pem),
    ]);
    expect(rejected.code).not.toBe(0);
    expect(rejected.output).toContain('certificate revoked');
    const accepted = await openssl([
      'verify',
      '-crl_check',
      '-CAfile',
      files.root,
      '-untrusted',
      files.ca,
      '-CRLfile',
      files.crl,
      dir.write('good.pem', good.pem),
    ]);
    expect(accepted.code).toBe(0);
    expect(accepted.output).toContain(': OK');
  });
});
