/** The explorer's filters live in the URL, so a view can be shared. */
export type View = "overview" | "explorer" | "sensors" | "sensor" | "deadletters" | "events" | "kafka" | "config";
export const VIEWS: View[] = ["overview", "explorer", "sensors", "sensor", "deadletters", "events", "kafka", "config"];
export const PRESETS = { "5m": 300, "1h": 3600, "24h": 86400, "7d": 604800 } as const;
export type Preset = keyof typeof PRESETS;

export interface UrlState {
  view: View;
  sensors: string[];
  preset: Preset | "custom";
  start?: string; // ISO, only with preset "custom"
  end?: string;
}

export function parseState(search: string): UrlState {
  const p = new URLSearchParams(search);
  const view = (VIEWS as string[]).includes(p.get("view") ?? "") ? (p.get("view") as View) : "overview";
  const sensors = p.getAll("sensor").filter((s) => /^[A-Za-z0-9._:@/+=-]{1,64}$/.test(s));
  const preset = p.get("range") ?? "1h";
  if (preset === "custom") {
    const start = p.get("start") ?? undefined;
    const end = p.get("end") ?? undefined;
    if (start && end && !Number.isNaN(Date.parse(start)) && !Number.isNaN(Date.parse(end))) {
      return { view, sensors, preset: "custom", start, end };
    }
  }
  return { view, sensors, preset: preset in PRESETS ? (preset as Preset) : "1h" };
}

export function serializeState(s: UrlState): string {
  const p = new URLSearchParams();
  p.set("view", s.view);
  for (const id of s.sensors) p.append("sensor", id);
  p.set("range", s.preset);
  if (s.preset === "custom" && s.start && s.end) {
    p.set("start", s.start);
    p.set("end", s.end);
  }
  return `?${p.toString()}`;
}

/** The concrete [start, end) of a state, as ISO strings with a zone. */
export function resolveRange(s: UrlState, now: Date = new Date()): { start: string; end: string } {
  if (s.preset === "custom" && s.start && s.end) {
    return { start: new Date(s.start).toISOString(), end: new Date(s.end).toISOString() };
  }
  const secs = PRESETS[s.preset === "custom" ? "1h" : s.preset];
  return { start: new Date(now.getTime() - secs * 1000).toISOString(), end: now.toISOString() };
}
