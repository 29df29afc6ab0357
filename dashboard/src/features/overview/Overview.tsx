"use client";

import { Chart } from "@/components/Chart";
import { StatTile } from "@/components/StatTile";
import { DiskPanel } from "@/features/disk/DiskPanel";
import { AlarmsPanel } from "@/features/overview/AlarmsPanel";
import { LagHeatmap } from "@/features/overview/LagHeatmap";
import { usePipeline } from "@/hooks/usePipeline";
import { useAlarms, usePipelineHistory } from "@/hooks/usePipelineHistory";
import { useSummary } from "@/hooks/useSummary";
import { num, seconds } from "@/lib/format";

export function Overview() {
  const pipeline = usePipeline();
  const summary = useSummary();
  const history = usePipelineHistory();
  const alarms = useAlarms();
  const h = history.data;
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
      <AlarmsPanel alarms={alarms.data?.alarms} loaded={alarms.isSuccess} />
      <h3>Throughput, last 15 minutes (per second)</h3>
      <Chart
        x={h?.at ?? []}
        series={[
          { label: "produced", values: h?.produced_per_s ?? [], color: "#1f6feb" },
          { label: "stored", values: h?.stored_per_s ?? [], color: "#2da44e" },
          { label: "duplicates ignored", values: h?.duplicates_per_s ?? [], color: "#b54708", dash: [4, 3] },
          { label: "dead-lettered", values: h?.dead_lettered_per_s ?? [], color: "#c0392b" },
        ]}
        label="Throughput"
        summary={h ? `${h.at.length} points of ${h.step_s} s; now produced ${num(last(h.produced_per_s))}/s, stored ${num(last(h.stored_per_s))}/s` : "no data"}
        height={200}
      />
      <h3>Freshness: event time to stored (ms)</h3>
      <Chart
        x={h?.at ?? []}
        series={[
          { label: "p50", values: h?.freshness_p50_ms ?? [], color: "#2da44e" },
          { label: "p99", values: h?.freshness_p99_ms ?? [], color: "#8250df" },
        ]}
        label="Freshness"
        summary={h ? `now p50 ${num(last(h.freshness_p50_ms))} ms, p99 ${num(last(h.freshness_p99_ms))} ms` : "no data"}
        height={180}
      />
      <h3>Lag per partition</h3>
      <LagHeatmap at={h?.at ?? []} partitions={h?.partitions ?? []} lag={h?.lag ?? []}
        lagSeconds={h?.lag_seconds ?? []} drainSeconds={p?.drain_seconds} />
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

/** The newest known value of a series. */
function last(values: (number | null)[]): number | null {
  for (let i = values.length - 1; i >= 0; i--) {
    const v = values[i];
    if (v !== null && v !== undefined) return v;
  }
  return null;
}
