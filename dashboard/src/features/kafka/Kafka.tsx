"use client";

import { usePipeline } from "@/hooks/usePipeline";
import { num, seconds } from "@/lib/format";

/** Our built-in view of what Kafka UI shows for the topic and the consumer group. */
export function Kafka() {
  const { data: p } = usePipeline();
  return (
    <section aria-labelledby="kafka-title">
      <h2 id="kafka-title">Kafka</h2>
      <p>
        Topic <code>{p?.topic ?? "–"}</code>, group <code>{p?.group ?? "–"}</code> ({p?.group_state ?? "–"}), dead-letter
        topic size <strong data-testid="dlq-size">{num(p?.dlq_messages)}</strong>.
      </p>
      <div className="table-wrap">
        <table data-testid="partitions">
          <caption>Partitions</caption>
          <thead>
            <tr><th scope="col">Partition</th><th scope="col">High watermark</th><th scope="col">Committed</th>
              <th scope="col">Lag (messages)</th><th scope="col">Lag (time)</th><th scope="col">State</th></tr>
          </thead>
          <tbody>
            {(p?.partitions ?? []).map((r) => (
              <tr key={r.partition} className={r.stalled ? "row-alarm" : undefined}>
                <td>{r.partition}</td><td>{num(r.high_watermark)}</td><td>{num(r.committed)}</td>
                <td>{num(r.lag)}</td><td>{seconds(r.lag_seconds)}</td><td>{r.stalled ? "stalled" : "ok"}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      <div className="table-wrap">
        <table>
          <caption>Consumer group members</caption>
          <thead><tr><th scope="col">Client</th><th scope="col">Host</th><th scope="col">Partitions</th></tr></thead>
          <tbody>
            {(p?.members ?? []).map((m) => (
              <tr key={m.member_id}><td>{m.client_id}</td><td>{m.host}</td><td>{m.partitions.join(", ")}</td></tr>
            ))}
          </tbody>
        </table>
      </div>
    </section>
  );
}
