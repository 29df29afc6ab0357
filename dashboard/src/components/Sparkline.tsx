/** A line of the last minutes, scaled to its own range; missing minutes are breaks. An SVG
 *  path: dozens of them in a table cost less than a canvas chart each. */
export function Sparkline({ values, label, width = 120, height = 24 }: {
  values: (number | null)[];
  label: string;
  width?: number;
  height?: number;
}) {
  const path = sparkPath(values, width, height);
  const known = values.filter((v): v is number => v !== null);
  const last = known[known.length - 1];
  return (
    <svg className="spark" width={width} height={height} viewBox={`0 0 ${width} ${height}`} role="img"
      aria-label={known.length ? `${label}: ${known.length} of ${values.length} minutes, last ${last?.toFixed(2)}` : `${label}: no readings`}>
      <path d={path} fill="none" stroke="currentColor" strokeWidth={1.2} strokeLinecap="round" />
    </svg>
  );
}

/** The SVG path of a sparkline: one subpath per run of known values (M starts each run). */
export function sparkPath(values: (number | null)[], width: number, height: number): string {
  const known = values.filter((v): v is number => v !== null);
  if (!known.length) return "";
  const lo = Math.min(...known);
  const span = Math.max(...known) - lo || 1;
  const step = values.length > 1 ? width / (values.length - 1) : 0;
  let d = "";
  let run = 0; // points in the current run of known values
  values.forEach((v, i) => {
    if (v === null) {
      if (run === 1) d += "h1"; // a lone minute: a dot, not nothing
      run = 0;
      return;
    }
    const x = (i * step).toFixed(1);
    const y = (height - 1 - ((v - lo) / span) * (height - 2)).toFixed(1);
    d += `${run ? "L" : "M"}${x} ${y}`;
    run += 1;
  });
  return run === 1 ? `${d}h1` : d;
}
