/**
 * The index of the largest of `length` values from `offset` (a row of a row-major matrix), the first
 * on ties. graft's one argmax: for a top-1, nothing is sorted.
 */
export function argmax(values: ArrayLike<number>, offset = 0, length = values.length - offset): number {
  let best = 0;
  for (let c = 1; c < length; c++) if (values[offset + c] > values[offset + best]) best = c;
  return best;
}

/** How many of a row's values are larger than its value at `index` (0: it is the largest): its rank, without a sort. */
export function rankOf(values: ArrayLike<number>, index: number, offset = 0, length = values.length - offset): number {
  let above = 0;
  for (let c = 0; c < length; c++) if (values[offset + c] > values[offset + index]) above++;
  return above;
}
