import type { Series } from "@/components/Chart";
import { withBreaks } from "@/lib/gaps";

export interface Bucket {
  bucket: string;
  avg: number | null;
  min: number | null;
  max: number | null;
}

/** One sensor's buckets as a chart's avg, min and max lines: the axis spans the range asked
 *  for (its two ends are empty points), and a gap in the data is a break. */
export function bucketSeries(
  rows: Bucket[],
  name: string,
  color: string,
  start: string,
  end: string,
  bucketS: number,
): { times: number[]; series: Series[] } {
  const lo = Date.parse(start) / 1000;
  const hi = Date.parse(end) / 1000;
  const at = rows.map((r) => Date.parse(r.bucket) / 1000);
  const head = at.length === 0 || (at[0] ?? lo) > lo ? [lo] : [];
  const tail = at.length === 0 || (at[at.length - 1] ?? hi) < hi ? [hi] : [];
  const times = [...head, ...at, ...tail];
  const cols = [rows.map((r) => r.avg), rows.map((r) => r.min), rows.map((r) => r.max)].map((c) => [
    ...head.map(() => null),
    ...c,
    ...tail.map(() => null),
  ]);
  const broken = withBreaks(times, cols, bucketS);
  const [avg = [], min = [], max = []] = broken.columns;
  return {
    times: broken.times,
    series: [
      { label: `${name} avg`, values: avg, color },
      { label: `${name} min`, values: min, color, dash: [4, 4] },
      { label: `${name} max`, values: max, color, dash: [4, 4] },
    ],
  };
}
