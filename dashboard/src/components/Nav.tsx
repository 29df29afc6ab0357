import type { View } from "@/lib/url";

const LABELS: Record<View, string> = {
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
      {(Object.keys(LABELS) as View[]).map((v) => (
        <button key={v} type="button" aria-current={v === view ? "page" : undefined} onClick={() => onChange(v)}>
          {LABELS[v]}
        </button>
      ))}
    </nav>
  );
}
