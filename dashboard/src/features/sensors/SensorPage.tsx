"use client";

import { useMemo, useState } from "react";
import { Chart } from "@/components/Chart";
import { useAggregate } from "@/hooks/useReadings";
import { useSensorReport } from "@/hooks/useSensorReport";
import { autoBucket, BUCKETS } from "@/lib/bucket";
import { num, seconds, time, timeMs } from "@/lib/format";
import { bucketSeries } from "@/lib/series";
import { resolveRange, type Preset, type UrlState } from "@/lib/url";

/** The report spans at most a day (the API's bound). */
const RANGES: Preset[] = ["5m", "1h", "24h"];

interface Props {
  state: UrlState;
  onChange: (s: UrlState) => void;
  onExplore: (sensorId: string) => void;
}

/** One sensor: its values (gaps as breaks), its seq gaps and order violations with their
 *  times, the conflicts recorded against it, and its newest events. */
export function SensorPage({ state, onChange, onExplore }: Props) {
  const id = state.sensors[0] ?? "";
  const preset = state.preset === "7d" ? "24h" : state.preset;
  const [now] = useState(() => new Date());
  const { start, end } = useMemo(() => resolveRange({ ...state, preset }, now), [state, preset, now]);
  const bucket = autoBucket((Date.parse(end) - Date.parse(start)) / 1000);
  const bucketS = BUCKETS.find(([name]) => name === bucket)?.[1] ?? 60;
  const agg = useAggregate(id ? [id] : [], start, end, bucket);
  const report = useSensorReport(id, start, end);
  const r = report.data;
  const chart = useMemo(
    () => bucketSeries(agg.data?.data ?? [], id, "#1f77b4", start, end, bucketS),
    [agg.data, id, start, end, bucketS],
  );
  if (!id) return <p>No sensor chosen: open one from the Sensors view.</p>;
  const s = r?.sensor;
  return (
    <section aria-labelledby="sensor-title" data-testid="sensor-page">
      <h2 id="sensor-title">
        {id} {s ? <span className={`status status-${s.status}`} data-testid="sensor-status">{s.status}</span> : null}
      </h2>
      {report.error ? <p role="alert">Could not read {id}: no such sensor, or the API is unavailable.</p> : null}
      {s ? (
        <p className="muted" data-testid="sensor-stats">
          {num(s.count)} events; last value {num(s.last_value, 3)} at {timeMs(s.last_timestamp)}; seq {num(s.last_seq)};
          usual interval {seconds(s.interval_s)}, quiet {seconds(s.quiet_s)}; {num(s.seq_gaps)} seq gaps and{" "}
          {num(s.order_violations)} order violations in all.
        </p>
      ) : null}
      <div className="controls">
        <div role="group" aria-label="Range">
          {RANGES.map((p) => (
            <button key={p} type="button" aria-pressed={preset === p}
              onClick={() => onChange({ ...state, preset: p, start: undefined, end: undefined })}>
              last {p}
            </button>
          ))}
        </div>
        <button type="button" className="link" onClick={() => onExplore(id)}>Open in the explorer</button>
      </div>
      <Chart x={chart.times} series={chart.series} label={`Values per ${bucket} bucket: ${id}`}
        summary={`${agg.data?.data.length ?? 0} buckets of ${bucket} from ${time(start)} to ${time(end)}`} height={200} />
      <Table testId="seq-gaps" caption={`seq gaps in the range (${r?.seq_gaps.length ?? 0})`}
        head={["Time", "seq", "After seq", "Missing", "Event"]}
        rows={(r?.seq_gaps ?? []).map((g) => [timeMs(g.timestamp), num(g.seq), num(g.previous_seq), num(g.missing), g.event_id])} />
      <Table testId="order-violations" caption={`Order violations in the range (${r?.order_violations.length ?? 0})`}
        head={["Time", "seq", "Stored after seq", "Event"]}
        rows={(r?.order_violations ?? []).map((v) => [timeMs(v.timestamp), num(v.seq), num(v.after_seq), v.event_id])} />
      <Table testId="conflicts" caption={`Conflicts: an id sent again with other content (${r?.conflicts.length ?? 0})`}
        head={["Seen", "Event", "From"]}
        rows={(r?.conflicts ?? []).map((c) => [time(c.seen_at), c.event_id, `${c.partition}@${c.offset}`])} />
      <Table testId="last-events" caption="Newest events in the range"
        head={["Time", "Value", "seq", "From", "Stored", "Event"]}
        rows={(r?.last_events ?? []).map((e) => [
          timeMs(e.timestamp), num(e.value, 3), num(e.seq), `${e.partition}@${e.offset}`, timeMs(e.stored_at), e.event_id,
        ])} />
    </section>
  );
}

function Table({ testId, caption, head, rows }: { testId: string; caption: string; head: string[]; rows: string[][] }) {
  return (
    <div className="table-wrap">
      <table data-testid={testId}>
        <caption>{caption}</caption>
        <thead>
          <tr>{head.map((h) => <th key={h} scope="col">{h}</th>)}</tr>
        </thead>
        <tbody>
          {rows.length === 0 ? (
            <tr><td colSpan={head.length} className="muted">none</td></tr>
          ) : (
            rows.map((row, i) => <tr key={i}>{row.map((c, j) => <td key={j}>{c}</td>)}</tr>)
          )}
        </tbody>
      </table>
    </div>
  );
}
