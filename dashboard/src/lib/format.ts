export const num = (n: number | null | undefined, digits = 0): string =>
  n === null || n === undefined ? "–" : n.toLocaleString("en-US", { maximumFractionDigits: digits });

export const seconds = (s: number | null | undefined): string => {
  if (s === null || s === undefined) return "–";
  if (s < 60) return `${s.toFixed(1)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
  return `${(s / 3600).toFixed(1)} h`;
};

export const time = (iso: string | null | undefined): string =>
  iso ? new Date(iso).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z") : "–";

/** A reading's time to the millisecond, readable: 2026-11-29 16:53:35.297Z. */
export const timeMs = (iso: string | null | undefined): string =>
  iso ? new Date(iso).toISOString().replace("T", " ") : "–";
