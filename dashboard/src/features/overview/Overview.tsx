"use client";

import { Chart } from "@/components/Chart";
import { StatTile } from "@/components/StatTile";
import { DiskPanel } from "@/features/disk/DiskPanel";
import { usePipeline } from "@/hooks/usePipeline";
import { useSummary } from "@/hooks/useSummary";
import { num, seconds } from "@/lib/format";

export function Overview() {
  const pipeline = usePipeline();
  const summary = useSummary();
  const p = pipeline.data;
  const s = summary.data;
  const dlq = s ? Object.entries(s.dlq_by_reason) : [];
  const trendX = p ? p.trend.map((t) => t.at) : [];
  const trendY = p ? p.trend.map((t) => t.lag) : [];
  return (
    <section aria-labelledby="overview-title">
      <h2 id="overview-title">Overview</h2>
      {p && p.stalled_partitions.length > 0 ? (
        <div className="alarm" role="alert" data-testid="stalled-alarm">
          Stalled partitions: {p.stalled_partitions.join(", ")} (committed offset frozen while messages wait)
        </div>
      ) : null}
      <div className="tiles">
        <StatTile testId="produced-rate" label="Produced / s" value={num(p?.produced_per_s)} />
        <StatTile testId="stored-rate" label="Stored / s" value={num(p?.stored_per_s)} />
        <StatTile testId="stored-total" label="Total stored" value={num(s?.stored_total)} />
        <StatTile testId="duplicates" label="Duplicates ignored" value={num(s?.duplicates_ignored)}
          hint={s ? `${num(s.redeliveries)} redeliveries` : undefined} />
        <StatTile testId="conflicts" label="Conflicts" value={num(s?.conflicts)} tone={s && s.conflicts > 0 ? "warn" : "normal"} />
        <StatTile testId="dlq" label="Dead-lettered" value={num(dlq.reduce((a, [, n]) => a + n, 0))}
          hint={dlq.map(([r, n]) => `${r}: ${n}`).join(", ") || "none"} />
        <StatTile testId="lag" label="Consumer lag" value={num(p?.total_lag)}
          hint={p ? (p.drain_seconds !== null ? `drains in ${seconds(p.drain_seconds)}` : p.total_lag ? "not draining" : "caught up") : undefined}
          tone={p && p.total_lag > 100000 ? "warn" : "normal"} />
        <StatTile testId="group-state" label="Consumer group" value={p?.group_state ?? "–"}
          hint={p ? `${p.members.length} member(s)` : undefined} />
      </div>
      <h3>Total consumer lag, last 10 minutes</h3>
      <Chart
        x={trendX}
        series={[{ label: "lag (messages)", values: trendY, color: "#c0392b" }]}
        label="Consumer lag trend"
        summary={p ? `current lag ${p.total_lag} messages; ${trendY.length} samples; maximum ${Math.max(0, ...trendY)}` : "no data"}
        height={200}
      />
      <DiskPanel disk={p?.disk} />
    </section>
  );
}
