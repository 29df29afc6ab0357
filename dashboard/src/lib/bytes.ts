/** Bytes as a short binary-unit text, like the CLI prints them: 1.5 GiB, 320.0 MiB. */
export function bytes(n: number | null | undefined): string {
  if (n === null || n === undefined) return "–";
  const units: [string, number][] = [
    ["TiB", 2 ** 40],
    ["GiB", 2 ** 30],
    ["MiB", 2 ** 20],
    ["KiB", 2 ** 10],
  ];
  for (const [unit, size] of units) {
    if (Math.abs(n) >= size) return `${(n / size).toFixed(1)} ${unit}`;
  }
  return `${Math.round(n)} B`;
}

/** Used as a share of a budget, 0-100, for a meter; 0 when there is no budget. */
export function share(used: number, of: number): number {
  return of > 0 ? Math.min(100, Math.round((used / of) * 100)) : 0;
}
