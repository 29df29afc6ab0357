import type { Alarm } from "@/api/client";

const TITLES: Record<Alarm["kind"], string> = {
  kafka_unreachable: "Kafka",
  store_unreachable: "Database",
  stalled_partitions: "Stalled partitions",
  no_consumer: "No consumer",
  silent_sensors: "Silent sensors",
  dead_letter_rate: "Dead-letter rate",
  disk_floor: "Disk under the floor",
  disk_over_budget: "Disk over budget",
  disk_near_budget: "Disk near budget",
};

/** What needs an operator now, critical first, as the API judges it; a quiet line when nothing does. */
export function AlarmsPanel({ alarms, loaded }: { alarms: Alarm[] | undefined; loaded: boolean }) {
  return (
    <section aria-labelledby="alarms-title" className="alarms" data-testid="alarms">
      <h3 id="alarms-title">Alarms</h3>
      {!loaded ? (
        <p className="muted">Alarms: waiting for the API.</p>
      ) : !alarms || alarms.length === 0 ? (
        <p className="all-clear" data-testid="alarms-clear">
          No alarms: partitions moving, sensors reporting, dead letters rare, disk within budget.
        </p>
      ) : (
        <ul>
          {alarms.map((a) => (
            <li key={a.kind + a.detail} className={`alarm-item alarm-${a.severity}`} data-testid={`alarm-${a.kind}`}
              role={a.severity === "critical" ? "alert" : undefined}>
              <strong>{TITLES[a.kind] ?? a.kind}</strong>
              <span className="alarm-severity">{a.severity}</span>
              <span className="alarm-detail">{a.detail}</span>
            </li>
          ))}
        </ul>
      )}
    </section>
  );
}
