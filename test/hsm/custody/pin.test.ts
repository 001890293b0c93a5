import { describe, expect, it, test } from 'vitest';
import { hashPin, parsePinHash, verifyPin } from '../../../src/hsm/custody/pin.ts';
import { HsmError } from '../../../src/hsm/types.ts';

const cheap = { ln: 10, r: 8, p: 1 };

describe('PIN hashes', () => {
  it('are self-describing scrypt strings with their own salt', async () => {
    const a = await hashPin('correct horse', cheap);
    const b = await hashPin('correct horse', cheap);
    expect(a).toMatch(/^\$scrypt\$ln=10,r=8,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$/);
    expect(a).not.toBe(b);
  });

  it('verify the right PIN only', async () => {
    const user = { pinHash: await hashPin('correct horse', cheap) };
    expect(await verifyPin(user, 'correct horse')).toBe(true);
    expect(await verifyPin(user, 'correct horsf')).toBe(false);
    expect(await verifyPin(user, Buffer.from('correct horse'))).toBe(true);
  });

  it('keep verifying a hash made with other parameters', async () => {
    const user = { pinHash: await hashPin('correct horse', { ln: 11, r: 4, p: 2 }) };
    expect(await verifyPin(user, 'correct horse')).toBe(true);
  });

  it('never match for a user without a PIN or an unknown user', async () => {
    expect(await verifyPin({ pinHash: '' }, '')).toBe(false);
    expect(await verifyPin(undefined, 'anything-at-all')).toBe(false);
  });

  test.each([
    ['too short', '1234567'],
    ['too long', 'x'.repeat(257)],
    ['too many octets', 'é'.repeat(129)],
  ])('refuse a PIN that is %s with CKR_PIN_LEN_RANGE', async (_name, pin) => {
    const error = await hashPin(pin, cheap).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(HsmError);
    expect((error as HsmError).rv).toBe('CKR_PIN_LEN_RANGE');
  });

  test.each([
    ['an unknown algorithm', '$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2g'],
    ['a cost that needs gigabytes', `$scrypt$ln=20,r=32,p=1$${'A'.repeat(22)}$${'A'.repeat(43)}`],
    ['a short hash', `$scrypt$ln=10,r=8,p=1$${'A'.repeat(22)}$AAAA`],
    ['garbage', 'not a hash'],
  ])('treat %s as no PIN (never a match, never a huge allocation)', async (_name, pinHash) => {
    expect(parsePinHash(pinHash)).toBeUndefined();
    expect(await verifyPin({ pinHash }, 'whatever-pin')).toBe(false);
  });
});
