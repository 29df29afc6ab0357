/**
 * Breaks a series where data is missing, so that a chart draws a gap instead of a line
 * across it: after each point followed by none for more than 1.5 buckets, a null point is
 * added one bucket later (uPlot does not join across nulls).
 */
export function withBreaks(
  times: number[],
  columns: (number | null)[][],
  bucketS: number,
): { times: number[]; columns: (number | null)[][] } {
  const outT: number[] = [];
  const outC: (number | null)[][] = columns.map(() => []);
  times.forEach((t, i) => {
    outT.push(t);
    columns.forEach((c, k) => outC[k]?.push(c[i] ?? null));
    const next = times[i + 1];
    if (next !== undefined && next - t > 1.5 * bucketS) {
      outT.push(t + bucketS);
      outC.forEach((c) => c.push(null));
    }
  });
  return { times: outT, columns: outC };
}
