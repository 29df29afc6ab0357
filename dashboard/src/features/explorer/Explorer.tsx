"use client";

import { useMemo, useState } from "react";
import { Chart } from "@/components/Chart";
import { Pager } from "@/components/Pager";
import { useAggregate, useReadings } from "@/hooks/useReadings";
import { useSensors } from "@/hooks/useSensors";
import { autoBucket, BUCKETS } from "@/lib/bucket";
import { num, time, timeMs } from "@/lib/format";
import { bucketSeries } from "@/lib/series";
import { PRESETS, resolveRange, type Preset, type UrlState } from "@/lib/url";

const COLORS = ["#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b"];

interface Props {
  state: UrlState;
  onChange: (s: UrlState) => void;
}

/** The retention tier a range was served from: raw rows are kept for days, rollups longer. */
const RESOLUTION: Record<string, string> = { raw: "raw readings", "1m": "1-minute rollups", "1h": "1-hour rollups" };

export function Explorer({ state, onChange }: Props) {
  const [now] = useState(() => new Date());
  const { start, end } = useMemo(() => resolveRange(state, now), [state, now]);
  const rangeS = (Date.parse(end) - Date.parse(start)) / 1000;
  const bucket = autoBucket(rangeS);
  const agg = useAggregate(state.sensors, start, end, bucket);
  const [cursors, setCursors] = useState<(string | null)[]>([null]);
  const page = cursors[cursors.length - 1] ?? null;
  const readings = useReadings(state.sensors, start, end, page);
  const [search, setSearch] = useState("");
  const found = useSensors(search, "sensor_id", "asc", null, 20);

  const setPreset = (preset: Preset) => {
    setCursors([null]);
    onChange({ ...state, preset, start: undefined, end: undefined });
  };
  const setCustom = (which: "start" | "end", value: string) => {
    if (!value) return;
    const iso = new Date(value).toISOString();
    setCursors([null]);
    onChange({ ...state, preset: "custom", start: state.start ?? start, end: state.end ?? end, [which]: iso });
  };
  const toggleSensor = (id: string) => {
    setCursors([null]);
    const sensors = state.sensors.includes(id) ? state.sensors.filter((s) => s !== id) : [...state.sensors, id];
    onChange({ ...state, sensors });
  };

  // One chart per selected sensor (small multiples), each on its own scale; gaps are breaks.
  const charts = useMemo(() => {
    const rows = agg.data?.data ?? [];
    const bucketS = BUCKETS.find(([name]) => name === bucket)?.[1] ?? 60;
    const groups = state.sensors.length ? state.sensors : [null];
    return groups.map((sid, k) => {
      const mine = rows.filter((r) => (r.sensor_id ?? null) === sid);
      const name = sid ?? "all sensors";
      const color = COLORS[k % COLORS.length] ?? "#333";
      return { name, rows: mine, ...bucketSeries(mine, name, color, start, end, bucketS) };
    });
  }, [agg.data, state.sensors, bucket, start, end]);

  const csvHref = useMemo(() => {
    const p = new URLSearchParams({ start, end });
    for (const id of state.sensors) p.append("sensor_id", id);
    return `/api/readings.csv?${p.toString()}`;
  }, [start, end, state.sensors]);

  const toLocal = (iso: string) => new Date(iso).toISOString().slice(0, 16);

  return (
    <section aria-labelledby="explorer-title">
      <h2 id="explorer-title">Metrics explorer</h2>
      <div className="controls">
        <fieldset>
          <legend>Time range</legend>
          {(Object.keys(PRESETS) as Preset[]).map((p) => (
            <button key={p} type="button" aria-pressed={state.preset === p} onClick={() => setPreset(p)}>
              {p}
            </button>
          ))}
          <label>
            From (UTC) <input type="datetime-local" data-testid="range-start" value={toLocal(start)}
              onChange={(e) => setCustom("start", `${e.target.value}Z`)} />
          </label>
          <label>
            To (UTC) <input type="datetime-local" data-testid="range-end" value={toLocal(end)}
              onChange={(e) => setCustom("end", `${e.target.value}Z`)} />
          </label>
        </fieldset>
        <fieldset>
          <legend>Sensors</legend>
          <label>
            Search sensors <input type="search" value={search} placeholder="e.g. 00042" data-testid="sensor-search"
              onChange={(e) => setSearch(e.target.value.replace(/[^A-Za-z0-9._:@/+=-]/g, ""))} />
          </label>
          <ul className="chips" aria-label="Matching sensors">
            {(found.data?.data ?? []).map((s) => (
              <li key={s.sensor_id}>
                <label>
                  <input type="checkbox" checked={state.sensors.includes(s.sensor_id)} onChange={() => toggleSensor(s.sensor_id)} />
                  {s.sensor_id}
                </label>
              </li>
            ))}
          </ul>
          <p>Selected: {state.sensors.length ? state.sensors.join(", ") : "all sensors (one series)"}</p>
        </fieldset>
      </div>
      <div className={charts.length > 1 ? "multiples" : undefined}>
        {charts.map((c) => (
          <Chart
            key={c.name}
            x={c.times}
            series={c.series}
            label={`Values per ${bucket} bucket: ${c.name}`}
            summary={`${c.rows.length} buckets of ${bucket} from ${time(start)} to ${time(end)}; ` +
              c.rows.slice(-5).map((r) => `${time(r.bucket)} avg ${num(r.avg, 2)} min ${num(r.min, 2)} max ${num(r.max, 2)}`).join("; ")}
            height={charts.length > 1 ? 180 : undefined}
          />
        ))}
      </div>
      <p className="muted" data-testid="resolution">
        Bucket {bucket} (automatic), resolution {RESOLUTION[agg.data?.resolution ?? ""] ?? "–"} (from{" "}
        {agg.data?.source ?? "–"}). Drag on the chart to zoom; double-click to reset.
      </p>
      <div className="table-wrap">
        <table data-testid="readings">
          <caption>Raw readings</caption>
          <thead>
            <tr><th scope="col">Time (UTC)</th><th scope="col">Sensor</th><th scope="col">Value</th><th scope="col">seq</th><th scope="col">Event id</th></tr>
          </thead>
          <tbody>
            {(readings.data?.data ?? []).map((r) => (
              <tr key={r.event_id}>
                <td data-col="timestamp"><time dateTime={r.timestamp}>{timeMs(r.timestamp)}</time></td><td data-col="sensor">{r.sensor_id}</td>
                <td>{num(r.value, 3)}</td><td>{r.seq}</td><td className="mono">{r.event_id}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      <div className="row">
        <Pager cursors={cursors} next={readings.data?.next_cursor} onChange={setCursors} />
        <a className="button" href={csvHref} download data-testid="csv">Download CSV of the range</a>
      </div>
    </section>
  );
}
