"use client";

import { useState } from "react";
import { Chart } from "@/components/Chart";
import { useDeadLetter, useDeadLetters, useDeadLetterTimeline } from "@/hooks/useDeadLetters";
import { num, time } from "@/lib/format";
import { Payload } from "./Payload";

type At = { partition: number; offset: number };

function Detail({ at }: { at: At }) {
  const { data: d, error, isPending } = useDeadLetter(at);
  if (isPending) return <p>Loading {at.partition}@{at.offset}…</p>;
  if (error || !d) return <p role="alert">Could not read {at.partition}@{at.offset}.</p>;
  return (
    <section className="panel" aria-label="Dead letter" data-testid="dead-letter">
      <h3>
        {d.partition}@{d.offset}: {d.reason}
      </h3>
      <p data-testid="dead-detail">{d.detail}</p>
      <p>
        Dead-lettered {time(d.dead_at)}; copy on the dead-letter topic at{" "}
        {d.dlq_partition === null ? "an unknown position" : `${d.dlq_partition}@${d.dlq_offset}`}
        {d.redriven_at ? `; redriven ${time(d.redriven_at)} as ${d.redriven_event_id}` : ""}.
      </p>
      {d.payload_error ? <p role="status">Original message: {d.payload_error}</p> : null}
      <Payload label="key" bytes={d.key} />
      <Payload label="value" bytes={d.value} />
      {d.headers.length ? (
        <div className="table-wrap">
          <table data-testid="dead-headers">
            <caption>Headers</caption>
            <thead>
              <tr><th scope="col">Name</th><th scope="col">Value</th></tr>
            </thead>
            <tbody>
              {d.headers.map((h, i) => (
                <tr key={`${h.name}-${i}`}>
                  <td>{h.name}</td>
                  <td>{h.value ? (h.value.text ?? `hex ${h.value.hex}`) : "–"}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      ) : null}
    </section>
  );
}

const REASON_COLORS = ["#c0392b", "#b54708", "#8250df", "#1f6feb", "#2da44e", "#6e7781", "#bf3989", "#0a7b83"];
const WINDOWS: [number, string][] = [[1, "1 h"], [24, "24 h"], [168, "7 days"]];

/** Counts by reason over time, one line per reason. */
function Timeline() {
  const [hours, setHours] = useState(24);
  const { data } = useDeadLetterTimeline(hours);
  const reasons = Object.entries(data?.counts ?? {});
  const sums = reasons.map(([r, c]) => [r, c.reduce((x, y) => x + y, 0)] as const);
  const total = sums.reduce((a, [, n]) => a + n, 0);
  return (
    <section aria-label="Dead letters over time" data-testid="dlq-timeline">
      <div role="group" aria-label="Window">
        {WINDOWS.map(([h, label]) => (
          <button key={h} type="button" aria-pressed={hours === h} onClick={() => setHours(h)}>{label}</button>
        ))}
      </div>
      <Chart
        x={data?.at ?? []}
        series={reasons.map(([r, c], i) => ({ label: r, values: c, color: REASON_COLORS[i % REASON_COLORS.length] ?? "#333" }))}
        label="Dead letters by reason"
        summary={data ? `${num(total)} in the last ${hours} h, in buckets of ${data.step_s / 60} min: ` +
          (sums.map(([r, n]) => `${r} ${num(n)}`).join(", ") || "none") : "no data"}
        height={160}
      />
    </section>
  );
}

/** Dead letters by reason, newest first; one opens with its original message. */
export function DeadLetters() {
  const [reason, setReason] = useState("");
  const [open, setOpen] = useState<At | null>(null);
  const { data } = useDeadLetters(reason);
  return (
    <section aria-labelledby="dlq-title">
      <h2 id="dlq-title">Dead letters</h2>
      <Timeline />
      <label>
        Reason{" "}
        <select data-testid="dlq-reason" value={reason} onChange={(e) => setReason(e.target.value)}>
          <option value="">all</option>
          {(data?.reasons ?? []).map((r) => (
            <option key={r.reason} value={r.reason}>
              {r.reason} ({num(r.count)})
            </option>
          ))}
        </select>
      </label>
      <div className="table-wrap">
        <table data-testid="dead-letters">
          <caption>Newest first</caption>
          <thead>
            <tr>
              <th scope="col">Source</th><th scope="col">Dead at</th><th scope="col">Reason</th>
              <th scope="col">Detail</th><th scope="col">Redriven</th>
            </tr>
          </thead>
          <tbody>
            {(data?.data ?? []).map((d) => (
              <tr key={`${d.partition}@${d.offset}`}>
                <td>
                  <button type="button" onClick={() => setOpen({ partition: d.partition, offset: d.offset })}>
                    {d.partition}@{d.offset}
                  </button>
                </td>
                <td>{time(d.dead_at)}</td>
                <td data-col="reason">{d.reason}</td>
                <td>{d.detail}</td>
                <td>{d.redriven_at ? time(d.redriven_at) : ""}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {open ? <Detail at={open} /> : null}
    </section>
  );
}
