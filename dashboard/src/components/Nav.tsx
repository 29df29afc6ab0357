import type { View } from "@/lib/url";

/** The views in the nav; a sensor's own page is reached from the Sensors view. */
const LABELS: Record<Exclude<View, "sensor">, string> = {
  overview: "Overview",
  explorer: "Metrics explorer",
  sensors: "Sensors",
  deadletters: "Dead letters",
  events: "Event lookup",
  kafka: "Kafka",
  config: "Producer configuration",
};

export function Nav({ view, onChange }: { view: View; onChange: (v: View) => void }) {
  return (
    <nav className="nav" aria-label="Views">
      {(Object.keys(LABELS) as (keyof typeof LABELS)[]).map((v) => (
        <button key={v} type="button" aria-current={v === view || (v === "sensors" && view === "sensor") ? "page" : undefined}
          onClick={() => onChange(v)}>
          {LABELS[v]}
        </button>
      ))}
    </nav>
  );
}
