/**
 * Crockford base32 (0-9, A-Z without I, L, O, U): case-insensitive, easy to read aloud and
 * type. Decoding maps the look-alikes O->0 and I/L->1 so a user's typo of that kind still works.
 */
const ALPHABET = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
const DECODE = new Map<string, number>();
for (let i = 0; i < ALPHABET.length; i++) DECODE.set(ALPHABET[i], i);
DECODE.set('O', 0);
DECODE.set('I', 1);
DECODE.set('L', 1);

export function base32Encode(data: Uint8Array): string {
  let out = '';
  let bits = 0;
  let value = 0;
  for (const byte of data) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += ALPHABET[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += ALPHABET[(value << (5 - bits)) & 31];
  return out;
}

/** Decodes exactly `byteLength` bytes; returns null on any character outside the alphabet. */
export function base32Decode(text: string, byteLength: number): Buffer | null {
  const out = Buffer.alloc(byteLength);
  let bits = 0;
  let value = 0;
  let pos = 0;
  for (const ch of text.toUpperCase()) {
    const v = DECODE.get(ch);
    if (v === undefined) return null;
    value = ((value << 5) | v) & 0xffff;
    bits += 5;
    if (bits >= 8) {
      if (pos >= byteLength) return null;
      out[pos++] = (value >>> (bits - 8)) & 0xff;
      bits -= 8;
    }
  }
  // Leftover bits must be zero: one byte string has exactly one spelling.
  if (bits > 0 && (value & ((1 << bits) - 1)) !== 0) return null;
  return pos === byteLength ? out : null;
}

export function base32Length(byteLength: number): number {
  return Math.ceil((byteLength * 8) / 5);
}
