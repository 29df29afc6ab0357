/** Bucket sizes the API accepts, smallest first; whole minutes come from the rollup. */
export const BUCKETS: ReadonlyArray<readonly [string, number]> = [
  ["1s", 1], ["5s", 5], ["10s", 10], ["30s", 30], ["1m", 60], ["5m", 300], ["15m", 900],
  ["1h", 3600], ["6h", 21600], ["1d", 86400],
];

/** The smallest bucket that keeps a chart at or under `maxPoints` points. */
export function autoBucket(rangeSeconds: number, maxPoints = 300): string {
  for (const [name, secs] of BUCKETS) {
    if (rangeSeconds / secs <= maxPoints) return name;
  }
  return "1d";
}
