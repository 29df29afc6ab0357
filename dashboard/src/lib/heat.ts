/** A heatmap's cells: each value scaled to 0..1 against the largest of all, on a log scale so
 *  that a lag of tens shows beside one of a million. `null` (no sample) stays null. */
export function heatScale(rows: (number | null)[][]): { max: number; cells: (number | null)[][] } {
  let max = 0;
  for (const row of rows) for (const v of row) if (v !== null && v > max) max = v;
  const top = Math.log1p(max);
  const cells = rows.map((row) => row.map((v) => (v === null ? null : top > 0 ? Math.log1p(Math.max(0, v)) / top : 0)));
  return { max, cells };
}

/** The row (partition) with the largest last value, for the chart's text alternative. */
export function worstLast(partitions: number[], rows: (number | null)[][]): { partition: number; value: number } | null {
  let best: { partition: number; value: number } | null = null;
  rows.forEach((row, i) => {
    const v = row[row.length - 1] ?? null;
    const partition = partitions[i];
    if (v !== null && partition !== undefined && (best === null || v > best.value)) best = { partition, value: v };
  });
  return best;
}
