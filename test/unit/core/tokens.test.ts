import { expect } from 'chai';
import fc from 'fast-check';
import { randomBytes } from 'node:crypto';
import { formatPairingToken, newPairingToken, parsePairingToken } from '../../../src/core/pairing-token';
import { newRecoveryKey, parseRecoveryKey } from '../../../src/core/recovery-key';
import { base32Decode, base32Encode } from '../../../src/core/base32';
import { CairnError } from '../../../src/core/errors';

describe('core/pairing-token, recovery-key, base32', () => {
  it('base32 round-trips any bytes', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 64 }), (a) => {
      const b = Buffer.from(a);
      expect(base32Decode(base32Encode(b), b.length)!.equals(b)).to.equal(true);
    }));
  });

  it('a token round-trips, case-insensitively, and carries the key pin', () => {
    const spki = randomBytes(32);
    const { token, parsed } = newPairingToken(spki);
    expect(token.length).to.be.lessThan(64);
    const back = parsePairingToken(` ${token.toLowerCase()} `);
    expect(back.pin.equals(spki.subarray(0, 16))).to.equal(true);
    expect(back.secret.equals(parsed.secret)).to.equal(true);
    expect(formatPairingToken(back)).to.equal(token);
  });

  it('a typo in any character of a token is caught locally', () => {
    const { token } = newPairingToken(randomBytes(32));
    let caught = 0;
    let tried = 0;
    for (let i = 0; i < token.length; i++) {
      if (token[i] === '-') continue;
      const c = token[i] === 'A' ? 'B' : 'A';
      tried++;
      try {
        parsePairingToken(token.slice(0, i) + c + token.slice(i + 1));
      } catch (err) {
        expect((err as CairnError).code).to.equal('CAIRN_TOKEN_INVALID');
        caught++;
      }
    }
    // a 20-bit check misses a single substitution with probability about 1e-6 per try
    expect(caught).to.equal(tried);
  });

  it('rejects garbage tokens with a clear message', () => {
    for (const t of ['', 'hello', 'C1-AAAA', 'C2-' + 'A'.repeat(26) + '-AAAAAAAA-' + 'A'.repeat(16) + '-AAAA', 'C1-!!!!']) {
      expect(() => parsePairingToken(t)).to.throw(CairnError, /not a valid Cairn pairing token/);
    }
  });

  it('recovery keys round-trip in 9 groups of 4 and catch typos', () => {
    const k = newRecoveryKey();
    expect(k.text).to.match(/^([0-9A-Z]{4}-){8}[0-9A-Z]{4}$/);
    expect(parseRecoveryKey(k.text.toLowerCase().replace(/-/g, ' ')).equals(k.raw)).to.equal(true);
    const typo = (k.text[0] === 'X' ? 'Y' : 'X') + k.text.slice(1);
    expect(() => parseRecoveryKey(typo)).to.throw(CairnError, /checksum/);
    expect(() => parseRecoveryKey('short')).to.throw(CairnError, /36 characters/);
  });
});
