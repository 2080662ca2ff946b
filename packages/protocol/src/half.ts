/*
 * IEEE 754 half floats: how a float16 vector travels and is cached, and how a head holds it in
 * memory when its job asked for float16 (`--vector-dtype float16`). One codec for both, so a
 * vector held for training is bit for bit what the cache stores.
 */

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** The half-float bits nearest a number (round to nearest; overflow to infinity, NaN kept NaN). */
export function toHalf(x: number): number {
  f32[0] = x;
  const b = u32[0];
  const sign = (b >>> 16) & 0x8000;
  const exp = (b >>> 23) & 0xff;
  let mant = b & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0); // inf / nan
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00; // overflow -> inf
  if (e <= 0) {
    if (e < -10) return sign; // underflow -> 0
    mant |= 0x800000;
    const shift = 14 - e;
    let half = mant >>> shift;
    if ((mant >>> (shift - 1)) & 1) half += 1; // round half up
    return sign | half;
  }
  let half = sign | (e << 10) | (mant >>> 13);
  if (mant & 0x1000) half += 1; // round to nearest; carry into the exponent is correct
  return half;
}

function fromHalf(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant ? NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

let table: Float32Array | undefined;

/** Every half float's value, by its bits (256 KB, made on first use): decoding a row is then a lookup per value. */
function halfTable(): Float32Array {
  if (!table) {
    table = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) table[h] = fromHalf(h);
  }
  return table;
}

/** A vector's half-float bits (a new array). */
export function encodeHalf(v: ArrayLike<number>): Uint16Array {
  const out = new Uint16Array(v.length);
  for (let i = 0; i < v.length; i++) out[i] = toHalf(v[i]);
  return out;
}

/** Half-float bits as floats, into `out` (a new array when not given). */
export function decodeHalf(bits: Uint16Array, out: Float32Array = new Float32Array(bits.length)): Float32Array {
  const t = halfTable();
  for (let i = 0; i < bits.length; i++) out[i] = t[bits[i]];
  return out;
}
