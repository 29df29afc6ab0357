"use client";

import { useMemo, useState } from "react";
import { Pager } from "@/components/Pager";
import { Sparkline } from "@/components/Sparkline";
import { useSparklines } from "@/hooks/useSensorReport";
import { useSensors, type Sort } from "@/hooks/useSensors";
import { num, seconds, time } from "@/lib/format";

const COLUMNS: [Sort, string][] = [
  ["quiet", "Status"], ["sensor_id", "Sensor"], ["last_value", "Last value"], ["last_seen", "Last seen"], ["events", "Count"],
  ["seq_gaps", "seq gaps"], ["order_violations", "Order violations"],
];

export function Sensors({ onOpen }: { onOpen: (sensorId: string) => void }) {
  const [q, setQ] = useState("");
  // worst first: the sensors quiet the longest against their usual interval
  const [sort, setSort] = useState<Sort>("quiet");
  const [order, setOrder] = useState<"asc" | "desc">("desc");
  const [cursors, setCursors] = useState<(string | null)[]>([null]);
  const { data } = useSensors(q, sort, order, cursors[cursors.length - 1] ?? null);
  const ids = useMemo(() => (data?.data ?? []).map((s) => s.sensor_id), [data]);
  const sparks = useSparklines(ids);
  const sortBy = (col: Sort) => {
    setCursors([null]);
    if (col === sort) setOrder(order === "asc" ? "desc" : "asc");
    else {
      setSort(col);
      setOrder(col === "sensor_id" ? "asc" : "desc");
    }
  };
  return (
    <section aria-labelledby="sensors-title">
      <h2 id="sensors-title">Sensors</h2>
      <label>
        Filter by id <input type="search" value={q} data-testid="sensor-filter"
          onChange={(e) => { setCursors([null]); setQ(e.target.value.replace(/[^A-Za-z0-9._:@/+=-]/g, "")); }} />
      </label>
      <div className="table-wrap">
        <table data-testid="sensors">
          <thead>
            <tr>
              {COLUMNS.map(([col, label]) => (
                <th key={col} scope="col" aria-sort={col === sort ? (order === "asc" ? "ascending" : "descending") : "none"}>
                  <button type="button" onClick={() => sortBy(col)}>{label}{col === sort ? (order === "asc" ? " ▲" : " ▼") : ""}</button>
                </th>
              ))}
              <th scope="col">Last hour</th>
            </tr>
          </thead>
          <tbody>
            {(data?.data ?? []).map((s) => (
              <tr key={s.sensor_id} data-status={s.status}>
                <td>
                  <span className={`status status-${s.status}`} title={`quiet ${seconds(s.quiet_s)}; usual interval ${seconds(s.interval_s)}`}>
                    {s.status}
                  </span>
                </td>
                <td><button type="button" className="link" onClick={() => onOpen(s.sensor_id)}>{s.sensor_id}</button></td>
                <td>{num(s.last_value, 3)}</td><td>{time(s.last_seen)}</td><td>{num(s.count)}</td>
                <td className={s.seq_gaps ? "warn" : undefined}>{num(s.seq_gaps)}</td>
                <td className={s.order_violations ? "alarm-text" : undefined}>{num(s.order_violations)}</td>
                <td><Sparkline values={sparks.data?.data[s.sensor_id] ?? []} label={`${s.sensor_id}, last hour`} /></td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {sort === "quiet" ? (
        <p className="muted">The {num(data?.data.length)} quietest against their usual interval; sort by another column to page through all.</p>
      ) : null}
      <Pager cursors={cursors} next={data?.next_cursor} onChange={setCursors} />
    </section>
  );
}
