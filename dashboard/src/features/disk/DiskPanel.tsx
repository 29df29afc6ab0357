import type { components } from "@/api/schema";
import { bytes, share } from "@/lib/bytes";
import { num, time } from "@/lib/format";

type Disk = components["schemas"]["DiskPublic"];

const COMPONENTS: [string, string][] = [
  ["kafka", "Kafka log"],
  ["postgres", "PostgreSQL"],
  ["logs", "Logs"],
];

/** The disk budget: each component's use against its share, free space against the floor,
 *  the alarms, and what retention has dropped. */
export function DiskPanel({ disk }: { disk: Disk | null | undefined }) {
  if (!disk) return <p className="muted">Disk: no sample yet.</p>;
  const drops = Object.entries(disk.drops);
  return (
    <section aria-labelledby="disk-title" data-testid="disk-panel">
      <h3 id="disk-title">Disk</h3>
      {disk.alarms.map((a) => (
        <div key={a.kind + a.detail} className="alarm" role="alert" data-testid={`disk-alarm-${a.kind}`}>
          {a.detail}
        </div>
      ))}
      {disk.managed ? (
        <>
          <p className="muted" data-testid="disk-budget">
            Budget {bytes(disk.budget_bytes)}; free {bytes(disk.free_bytes)} (floor {bytes(disk.floor_bytes)}: below
            it, consumption pauses)
          </p>
          <div className="meters">
            {COMPONENTS.map(([key, label]) => {
              // PostgreSQL's data folder (WAL included) when it is local, else the database's files
              const used = disk.used[key] || (key === "postgres" ? (disk.store_bytes ?? 0) : 0);
              const of = disk.shares[key] ?? 0;
              return (
                <div className="meter-row" key={key}>
                  <span className="meter-label">{label}</span>
                  <meter min={0} max={100} high={90} optimum={50} value={share(used, of)} aria-label={`${label} use`} />
                  <span className="meter-value">
                    {bytes(used)} of {bytes(of)}
                  </span>
                </div>
              );
            })}
          </div>
        </>
      ) : (
        <p className="muted">
          No disk budget: the store and the broker are external. The store holds {bytes(disk.store_bytes)}.
        </p>
      )}
      <p className="muted" data-testid="disk-drops">
        Retention drops:{" "}
        {drops.length
          ? drops.map(([reason, d]) => `${reason}: ${num(d.days)} day(s), about ${num(d.rows)} rows`).join("; ")
          : "none yet"}
      </p>
      {disk.raw_horizon ? (
        <p className="muted" data-testid="disk-horizon">
          Raw readings are kept from {time(disk.raw_horizon)} on
          {disk.minute_horizon ? `, 1-minute rollups from ${time(disk.minute_horizon)}` : ""}; older ranges are served
          from the coarser rollups.
        </p>
      ) : null}
    </section>
  );
}
